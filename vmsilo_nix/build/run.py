"""`vmsilo build`: evaluate the VMs' guest systems, build them, report per VM.

1. Evaluate the build units of ``REF#nixosConfigurations.HOST.config.programs.vmsilo.package``
   through ``exprs/builds.nix``: nix-eval-jobs when installed (parallel workers), else one
   ``nix eval``. Results are keyed by attribute path, never by order.
2. Plan (``planner.py``): the units (the base system, own guest systems, program images,
   packages), each built once, and which VMs use each.
3. Build: one ``nix build --keep-going`` of every derivation, its log shown as progress. A
   failure does not stop the others; each failed unit names the derivation and its log's end,
   and every VM that uses it fails with it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import attrs

from vmsilo_nix.build.planner import BuildPlan, Unit, VmTargets
from vmsilo_nix.build.progress import Event, Progress
from vmsilo_nix.config.paths import format_path
from vmsilo_nix.errors import NixError, VmsiloError
from vmsilo_nix.nixeval import nix, nix_eval_jobs
from vmsilo_nix.nixeval.nix import AttrPath, DrvResult, FlakeRef, NixExpr, NixOptions
from vmsilo_nix.nixeval.source import FlakeSource

Status = Literal["built", "substituted", "present", "failed"]
OnEvent = Callable[[Event | None, Progress], None]


class BuildError(VmsiloError):
    """What to build could not be worked out (the host, its module, its guest systems)."""


def package(src: FlakeSource) -> FlakeRef:
    """The host's ``programs.vmsilo.package``: its guestSystems are what is built."""
    return FlakeRef(f"{src.installable}.package")


#: vmsilo's NixOS host module, in the checkout this engine runs from.
HOST_MODULE = Path(__file__).resolve().parents[2] / "nix" / "module.nix"


@attrs.frozen
class FileHost:
    """``--file F.nix --nixpkgs P``: the file's ``programs.vmsilo`` in a NixOS host evaluated
    with that nixpkgs and vmsilo's host module (``exprs/file-host.nix``)."""

    file: Path
    nixpkgs: Path
    module: Path = HOST_MODULE

    def package(self) -> NixExpr:
        if not self.module.exists():
            raise BuildError(
                f"--file needs vmsilo's NixOS module ({self.module}), which is not beside this "
                "engine; use --flake with a host that imports vmsilo.nixosModules.default"
            )
        if not (self.nixpkgs / "nixos" / "lib" / "eval-config.nix").exists():
            raise BuildError(f"--nixpkgs {self.nixpkgs}: not a nixpkgs tree (no nixos/lib)")
        args: nix.JSON = {
            "nixpkgs": str(self.nixpkgs.resolve()),
            "module": str(self.module),
            "file": str(self.file.resolve()),
        }
        expr = f"({nix.shipped_expr('file-host.nix')}) {nix.nix_value(args)}"
        return NixExpr(expr, impure=True)

    def describe(self) -> str:
        return f"{self.file} with the nixpkgs {self.nixpkgs}"


Host = FlakeSource | FileHost


def evaluate(
    src: Host,
    *,
    opts: NixOptions = nix.DEFAULT_OPTIONS,
    workers: int | None = None,
    max_memory_mib: int = nix_eval_jobs.DEFAULT_MAX_MEMORY_MIB,
    use_eval_jobs: bool | None = None,
    on_result: nix_eval_jobs.OnResult | None = None,
) -> dict[AttrPath, DrvResult]:
    """The derivations of every distinct guest system, by attribute path
    ``["vm1,vm2", part(, file)]`` (see ``exprs/builds.nix``)."""
    try:
        return nix_eval_jobs.eval_drvs(
            package(src) if isinstance(src, FlakeSource) else src.package(),
            select=nix.shipped_expr("builds.nix"),
            workers=workers,
            max_memory_mib=max_memory_mib,
            opts=opts,
            on_result=on_result,
            use_eval_jobs=use_eval_jobs,
        )
    except NixError as err:
        raise (_explain(src, err, opts) if isinstance(src, FlakeSource) else err) from err
    except nix_eval_jobs.EvalJobsOutputError as err:
        raise BuildError(f"{err}; nothing was built") from err


def _explain(src: FlakeSource, err: NixError, opts: NixOptions) -> VmsiloError:
    """A missing attribute in the words of the configuration: which host, or which module."""
    text = str(err)
    ours = (src.host, "vmsilo", "package", "guestSystems", "guestSoftwareSets")
    if "does not provide attribute" not in text and not any(
        f"attribute '{name}' missing" in text for name in ours
    ):
        return err
    where = f"{src.ref}#nixosConfigurations.{src.host}"
    try:
        hosts = nix.eval_json_installable(
            f"{src.ref}#nixosConfigurations", apply="builtins.attrNames", opts=opts
        )
    except NixError:
        return err
    if isinstance(hosts, list) and src.host not in hosts:
        listed = ", ".join(str(h) for h in hosts) or "none"
        return BuildError(f"the flake {src.ref} has no NixOS host {src.host!r} (hosts: {listed})")
    return BuildError(
        f"{where} does not use vmsilo's NixOS module: it has no "
        "config.programs.vmsilo.package.guestSystems. Add vmsilo.nixosModules.default to the "
        "host's modules."
    )


def vm_order(src: Host, opts: NixOptions = nix.DEFAULT_OPTIONS) -> list[str | None]:
    """The VMs' names in ``nixosVms`` order, to name a failing VM's options (asked only then)."""
    names_of = "v: map (vm: vm.name or null) (v.nixosVms or [ ])"
    try:
        if isinstance(src, FlakeSource):
            names = nix.eval_json_installable(src.installable, apply=names_of, opts=opts)
        else:
            names = nix.eval_json_file(str(src.file.resolve()), apply=names_of, opts=opts)
    except NixError:
        return []
    return [n if isinstance(n, str) else None for n in names] if isinstance(names, list) else []


def guest_options(vm: str, order: Sequence[str | None], option: str = "guestConfig") -> str:
    """``programs.vmsilo.nixosVms[1] (work).guestConfig``: where a VM's unit comes from."""
    index = order.index(vm) if vm in order else None
    if index is None:
        return f"the {'programs' if option == 'guestPrograms' else 'guest system'} of VM {vm!r}"
    return format_path(["nixosVms", index, option], order)


def failing_option(targets: VmTargets) -> str:
    """The VM's option that made its evaluation fail: guestPrograms for its program image."""
    kinds = {f.attr_path[0] for f in targets.failures if f.attr_path}
    return "guestPrograms" if kinds == {"program-image"} else "guestConfig"


@attrs.frozen
class Outcome:
    """How building a unit, or a VM (its units), ended."""

    status: Status
    seconds: float = 0.0
    #: Failed derivations it needs, each with the last lines of its log.
    failed: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)
    #: A message when it failed without a failed build (evaluation, Nix itself).
    error: str = ""

    def outcome_json(self) -> dict[str, object]:
        return {
            "status": self.status,
            "seconds": round(self.seconds, 3),
            "failed": [{"drvPath": d, "log": list(log)} for d, log in self.failed.items()],
            "error": self.error or None,
        }


@attrs.frozen(kw_only=True)
class UnitResult(Outcome):
    unit: Unit

    def to_json(self) -> dict[str, object]:
        return {**self.unit.to_json(), **self.outcome_json()}


@attrs.frozen(kw_only=True)
class VmResult(Outcome):
    vm: str
    targets: VmTargets

    def to_json(self) -> dict[str, object]:
        t = self.targets.targets
        return {
            "status": self.status,
            "units": list(self.targets.units),
            "system": t["toplevel"].out_path if "toplevel" in t else None,
            "platform": t["toplevel"].system if "toplevel" in t else None,
            "drvPaths": {p: x.drv_path for p, x in t.items()},
            "outPaths": {p: x.path for p, x in t.items()},
            **self.outcome_json(),
        }


@attrs.frozen
class BuildReport:
    results: Mapping[str, VmResult]
    progress: Progress
    seconds: float
    units: Mapping[str, UnitResult] = attrs.field(factory=dict)

    @property
    def ok(self) -> bool:
        results: list[VmResult | UnitResult] = [*self.results.values(), *self.units.values()]
        return all(r.status != "failed" for r in results)

    @property
    def succeeded(self) -> dict[str, VmTargets]:
        return {n: r.targets for n, r in self.results.items() if r.status != "failed"}

    @property
    def packages(self) -> dict[str, str]:
        """The host packages built, by name: what the artifacts' ``packages`` holds."""
        return {
            r.unit.id.removeprefix("package-"): r.unit.targets["package"].path
            for r in self.units.values()
            if r.unit.kind == "package" and r.status != "failed"
        }

    def to_json(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "units": [r.to_json() for r in self.units.values()],
            "vms": {n: r.to_json() for n, r in self.results.items()},
        }


def plan_json(plan: BuildPlan) -> dict[str, object]:
    """``build --dry-run --json``: the units, each VM's planned targets, every derivation."""

    def planned(ok: bool) -> str:
        return "planned" if ok else "failed"

    units = [
        {**u.to_json(), "status": planned(u.ok), "error": eval_failure_message(u) or None}
        for u in plan.units.values()
    ]
    records: dict[int, dict[str, object]] = {}
    vms: dict[str, object] = {}
    for name, t in plan.vms.items():
        if id(t.targets) not in records:  # VMs sharing their units share one record
            records[id(t.targets)] = {
                "status": planned(t.ok),
                "units": list(t.units),
                "drvPaths": {p: x.drv_path for p, x in t.targets.items()},
                "outPaths": {p: x.path for p, x in t.targets.items()},
                "error": eval_failure_message(t) or None,
            }
        vms[name] = records[id(t.targets)]
    return {"units": units, "vms": vms, "drvPaths": plan.drv_paths}


def eval_failure_message(targets: VmTargets | Unit) -> str:
    """``rootImage: <Nix's message>`` for each part that failed to evaluate."""
    return "; ".join(
        f"{'.'.join(f.attr_path[3:4]) or 'its guest system'}: {f.error}" for f in targets.failures
    )


def build(
    plan: BuildPlan,
    *,
    opts: NixOptions = nix.DEFAULT_OPTIONS,
    on_event: OnEvent | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> BuildReport:
    progress = Progress()
    start = clock()
    finished_at: dict[str, float] = {}

    def on_log(line: str) -> None:
        event = progress.feed(line)
        if event is not None and event.kind in ("finished", "substituted"):
            finished_at[event.text] = clock() - start
        if on_event is not None:
            on_event(event, progress)

    outcome = nix.build(plan.drv_paths, on_log, opts=opts)
    seconds = clock() - start
    units: dict[str, UnitResult] = {}
    for uid, unit in plan.units.items():
        if not unit.ok:
            error = eval_failure_message(unit) or "not evaluated"
            units[uid] = UnitResult("failed", error=error, unit=unit)
        elif outcome.built is None and not all(
            os.path.exists(t.path) for t in unit.targets.values()
        ):
            units[uid] = _failed(unit, progress, outcome.error, opts)
        else:
            units[uid] = UnitResult(
                _status(unit, progress),
                seconds=max((finished_at.get(d, 0.0) for d in _keys(unit)), default=0.0),
                unit=unit,
            )
    results = {name: _vm_result(targets, units) for name, targets in plan.vms.items()}
    return BuildReport(results, progress, seconds, units)


def _vm_result(targets: VmTargets, units: Mapping[str, UnitResult]) -> VmResult:
    """A VM is what its units are: failed if one failed, built if one was built."""
    mine = [units[u] for u in targets.units if u in units]
    if not targets.ok and not any(r.status == "failed" for r in mine):
        error = eval_failure_message(targets) or "not evaluated"
        return VmResult("failed", error=error, vm=targets.vm, targets=targets)
    failed = {d: log for r in mine for d, log in r.failed.items()}
    errors = "; ".join(dict.fromkeys(r.error for r in mine if r.error))
    statuses = {r.status for r in mine}
    order: tuple[Status, ...] = ("failed", "built", "substituted")
    status: Status = next((s for s in order if s in statuses), "present")
    seconds = max((r.seconds for r in mine), default=0.0)
    error = "" if failed else errors
    return VmResult(status, seconds, failed, error, vm=targets.vm, targets=targets)


def _keys(unit: Unit) -> list[str]:
    return [*unit.drv_paths, *(t.out_path for t in unit.targets.values())]


def _status(unit: Unit, progress: Progress) -> Status:
    if any(d in progress.tails for d in unit.drv_paths):
        return "built"
    if any(t.out_path in progress.substituted_paths for t in unit.targets.values()):
        return "substituted"
    return "present"


def _failed(unit: Unit, progress: Progress, error: NixError | None, opts: NixOptions) -> UnitResult:
    """A unit Nix did not finish: the failed derivations it needs (itself or a dependency)."""
    mine = set(unit.drv_paths)
    candidates = [d for d in progress.failed if d not in mine]
    needed = set(mine)
    if candidates:
        try:
            needed |= nix.requisites(unit.drv_paths, opts=opts)
        except NixError:
            needed |= set(candidates)  # cannot tell: name them all rather than none
    failed = {d: tuple(progress.tails.get(d, ())) for d in progress.failed if d in needed}
    message = "" if failed else (str(error) if error is not None else "nix build failed")
    return UnitResult("failed", failed=failed, error=message, unit=unit)
