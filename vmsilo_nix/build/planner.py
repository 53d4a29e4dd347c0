"""What `vmsilo build` builds: from the derivations Nix evaluated to one target set per VM.

Pure: the evaluation results come in (keyed by attribute path, as ``exprs/builds.nix`` lays
them out: ``[vms, part]`` or ``[vms, part, file]``, where ``vms`` names the VMs sharing that
guest system, joined by commas), the plan goes out. Shared systems are built once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import attrs

from vmsilo_nix.nixeval.nix import AttrPath, Drv, DrvResult, EvalFailure

#: The boot artifacts of a VM, in the artifacts file's names.
PARTS = ("kernel", "initrd", "rootImage", "toplevel")


@attrs.frozen
class Target:
    """One artifact: the derivation that makes it, its output, and the file inside it."""

    part: str
    drv_path: str
    out_path: str
    file: str = ""
    name: str = ""
    system: str = ""

    @property
    def path(self) -> str:
        return f"{self.out_path}/{self.file}" if self.file else self.out_path


@attrs.frozen
class VmTargets:
    vm: str
    targets: Mapping[str, Target]
    #: Why some parts could not be evaluated (then nothing of this VM is built).
    failures: tuple[EvalFailure, ...] = ()
    #: Derived (by ``of``) and kept: a plan asks them of each of thousands of VMs, which
    #: share a few systems (their copies keep them).
    ok: bool = False
    drv_paths: tuple[str, ...] = ()

    @classmethod
    def of(
        cls, vm: str, targets: Mapping[str, Target], failures: tuple[EvalFailure, ...] = ()
    ) -> VmTargets:
        """Targets of a VM; ``ok`` when every part evaluated."""
        ok = not failures and all(p in targets for p in PARTS)
        drvs = tuple(targets[p].drv_path for p in PARTS if p in targets)
        return cls(vm, targets, failures, ok, drvs)


@attrs.frozen
class BuildPlan:
    vms: Mapping[str, VmTargets]

    @property
    def drv_paths(self) -> list[str]:
        """Every derivation to build, once, in VM order."""
        return list(dict.fromkeys(d for v in self.vms.values() if v.ok for d in v.drv_paths))

    def needed_by(self, drv_path: str) -> list[str]:
        return [n for n, v in self.vms.items() if drv_path in v.drv_paths]

    @property
    def systems(self) -> dict[str, list[str]]:
        """Distinct guest systems (by toplevel derivation) and the VMs sharing each."""
        shared: dict[str, list[str]] = {}
        for name, v in self.vms.items():
            if "toplevel" in v.targets:
                shared.setdefault(v.targets["toplevel"].drv_path, []).append(name)
        return shared


def _vms(key: str) -> list[str]:
    return key.split(",")


def vm_names(results: Mapping[AttrPath, DrvResult]) -> list[str]:
    """The VMs the evaluation found, by name."""
    return sorted({vm for path in results if path for vm in _vms(path[0])})


def plan_builds(results: Mapping[AttrPath, DrvResult], wanted: Sequence[str] = ()) -> BuildPlan:
    """One ``VmTargets`` per wanted VM (all, by name, when ``wanted`` is empty).

    VMs that share a guest system share its targets (the same objects: a thousand VMs on three
    systems cost three systems' work).
    """
    names = list(wanted) or vm_names(results)
    targets: dict[str, dict[str, Target]] = {}
    failures: dict[str, list[EvalFailure]] = {}
    everyone: list[EvalFailure] = []
    for path, result in results.items():
        if not path:  # the whole evaluation failed: every VM is concerned
            if isinstance(result, EvalFailure):
                everyone.append(result)
            continue
        part = path[1] if len(path) > 1 else ""
        if isinstance(result, EvalFailure):
            failures.setdefault(path[0], []).append(result)
        elif part in PARTS:
            targets.setdefault(path[0], {})[part] = _target(part, path, result)
    systems: dict[str, VmTargets] = {}
    for key in {*targets, *failures}:
        shared = VmTargets.of("", targets.get(key, {}), tuple(everyone + failures.get(key, [])))
        for vm in _vms(key):
            systems[vm] = shared
    empty = VmTargets.of("", {}, tuple(everyone))
    return BuildPlan({n: _named(systems.get(n, empty), n) for n in names})


def _named(shared: VmTargets, vm: str) -> VmTargets:
    # The constructor, not attrs.evolve: a thousand VMs make this the planner's hot loop.
    return VmTargets(vm, shared.targets, shared.failures, shared.ok, shared.drv_paths)


def _target(part: str, path: AttrPath, drv: Drv) -> Target:
    out = drv.outputs.get("out") or next((p for p in drv.outputs.values() if p), "")
    return Target(
        part=part,
        drv_path=drv.drv_path,
        out_path=out or "",
        file=path[2] if len(path) > 2 else "",
        name=drv.name,
        system=drv.system,
    )
