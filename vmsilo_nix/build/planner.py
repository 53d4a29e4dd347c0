"""What `vmsilo build` builds: from the derivations Nix evaluated to build units and VMs.

Pure: the evaluation results come in (keyed by attribute path, as ``exprs/builds.nix`` lays
them out: ``[kind, key, vms, part]`` or ``[kind, key, vms, part, file]``, where ``vms`` names
the VMs a unit serves, joined by commas; ``[package, name]`` for a host package), the plan
goes out. A unit is built once, whatever the number of VMs that use it: the base system, a
VM's own guest system (guestConfig), one program image per guestPrograms set, a package.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import attrs

from vmsilo_nix.nixeval.nix import AttrPath, Drv, DrvResult, EvalFailure

Kind = Literal["base", "guest-system", "program-image", "package"]
KINDS: tuple[Kind, ...] = ("base", "guest-system", "program-image", "package")
#: The boot artifacts of a guest system, in the artifacts file's names.
PARTS = ("kernel", "initrd", "rootImage", "toplevel")
#: A program image's parts: the image crosvm attaches and the profile the guest links.
IMAGE_PARTS = ("programImage", "programs")
#: What a unit of each kind is made of.
UNIT_PARTS: Mapping[Kind, tuple[str, ...]] = {
    "base": PARTS,
    "guest-system": PARTS,
    "program-image": IMAGE_PARTS,
    "package": ("package",),
}
#: In words, for the progress display.
KIND_WORDS: Mapping[Kind, str] = {
    "base": "base system",
    "guest-system": "own guest system",
    "program-image": "program image",
    "package": "host package",
}


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
class Unit:
    """One thing Nix builds once for every VM that uses it."""

    id: str
    kind: Kind
    vms: tuple[str, ...]
    targets: Mapping[str, Target]
    #: Why some parts could not be evaluated (then nothing of this unit is built).
    failures: tuple[EvalFailure, ...] = ()
    ok: bool = False
    drv_paths: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        id: str,
        kind: Kind,
        vms: tuple[str, ...],
        targets: Mapping[str, Target],
        failures: tuple[EvalFailure, ...] = (),
    ) -> Unit:
        parts = UNIT_PARTS[kind]
        ok = not failures and all(p in targets for p in parts)
        drvs = tuple(targets[p].drv_path for p in parts if p in targets)
        return cls(id, kind, vms, targets, failures, ok, drvs)

    def describe(self) -> str:
        """``program image of banking, work``: in words, naming the first VMs it serves."""
        words = KIND_WORDS[self.kind]
        if self.kind == "package":
            return words
        more = f" and {len(self.vms) - 4} more" if len(self.vms) > 4 else ""
        return f"{words} of {', '.join(self.vms[:4])}{more}"

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "kind": self.kind,
            "vms": list(self.vms),
            "drvPaths": {p: t.drv_path for p, t in self.targets.items()},
            "outPaths": {p: t.path for p, t in self.targets.items()},
        }


@attrs.frozen
class VmTargets:
    """A VM's artifacts: its system's parts and, with guestPrograms, its image's."""

    vm: str
    targets: Mapping[str, Target]
    #: Why some parts could not be evaluated (then nothing of this VM is built).
    failures: tuple[EvalFailure, ...] = ()
    #: Derived (by ``of``) and kept: a plan asks them of each of thousands of VMs, which
    #: share a few units (their copies keep them).
    ok: bool = False
    drv_paths: tuple[str, ...] = ()
    #: The ids of the units it uses: its system first, then its program image.
    units: tuple[str, ...] = ()

    @classmethod
    def of(
        cls,
        vm: str,
        targets: Mapping[str, Target],
        failures: tuple[EvalFailure, ...] = (),
        units: Sequence[Unit] = (),
    ) -> VmTargets:
        """Targets of a VM; ``ok`` when every part evaluated."""
        ok = not failures and all(p in targets for p in PARTS) and all(u.ok for u in units)
        drvs = tuple(dict.fromkeys(d for u in units for d in u.drv_paths)) or tuple(
            targets[p].drv_path for p in PARTS if p in targets
        )
        return cls(vm, targets, failures, ok, drvs, tuple(u.id for u in units))


@attrs.frozen
class BuildPlan:
    vms: Mapping[str, VmTargets]
    #: Every unit the VMs use, and the host's packages, by id.
    units: Mapping[str, Unit] = attrs.field(factory=dict)
    #: drvPath -> the ids of the units whose part it is (made once, for the display).
    by_drv: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)

    @property
    def drv_paths(self) -> list[str]:
        """Every derivation to build, once, unit by unit."""
        return list(dict.fromkeys(d for u in self.units.values() if u.ok for d in u.drv_paths))

    def needed_by(self, drv_path: str) -> list[Unit]:
        return [self.units[u] for u in self.by_drv.get(drv_path, ())]

    @property
    def systems(self) -> dict[str, list[str]]:
        """Distinct guest systems (by toplevel derivation) and the VMs sharing each."""
        return {
            u.targets["toplevel"].drv_path: list(u.vms)
            for u in self.units.values()
            if u.kind in ("base", "guest-system") and "toplevel" in u.targets
        }

    def count(self, kind: Kind) -> int:
        return sum(1 for u in self.units.values() if u.kind == kind)


def vm_names(results: Mapping[AttrPath, DrvResult]) -> list[str]:
    """The VMs the evaluation found, by name (those of every guest system)."""
    return sorted(
        {
            vm
            for path in results
            if len(path) > 2 and path[0] in ("base", "guest-system")
            for vm in path[2].split(",")
        }
    )


def _kind(word: str) -> Kind | None:
    return next((k for k in KINDS if k == word), None)


def plan_builds(results: Mapping[AttrPath, DrvResult], wanted: Sequence[str] = ()) -> BuildPlan:
    """The units the wanted VMs (all, by name, when ``wanted`` is empty) use, the host's
    packages, and one ``VmTargets`` per wanted VM.

    VMs that use the same units share their ``VmTargets`` (the same objects: a thousand VMs on
    three systems cost three systems' work).
    """
    names = list(wanted) or vm_names(results)
    found: dict[tuple[Kind, str, str], dict[str, Target]] = {}
    failures: dict[tuple[Kind, str, str], list[EvalFailure]] = {}
    everyone: list[EvalFailure] = []
    for path, result in results.items():
        kind = _kind(path[0]) if path else None
        if kind == "package" and len(path) == 2:
            key: tuple[Kind, str, str] = (kind, path[1], "")
            part = "package"
        elif kind is not None and len(path) > 2:
            key = (kind, path[1], path[2])
            part = path[3] if len(path) > 3 else ""
        else:  # the whole evaluation, or a level naming no VMs, failed: every VM is concerned
            if isinstance(result, EvalFailure):
                everyone.append(result)
            continue
        if isinstance(result, EvalFailure):
            failures.setdefault(key, []).append(result)
        elif part in UNIT_PARTS[kind]:
            found.setdefault(key, {})[part] = _target(part, path, result)
    units: dict[str, Unit] = {}
    system_of: dict[str, Unit] = {}
    image_of: dict[str, Unit] = {}
    for key in sorted({*found, *failures}, key=lambda k: (KINDS.index(k[0]), k[1])):
        kind, name, served = key
        unit_id = f"package-{name}" if kind == "package" else name
        unit = Unit.of(
            unit_id,
            kind,
            tuple(served.split(",")) if served else (),
            found.get(key, {}),
            tuple(failures.get(key, [])),
        )
        units[unit_id] = unit
        for vm in unit.vms:
            (image_of if kind == "program-image" else system_of)[vm] = unit
    shared: dict[tuple[str, str], VmTargets] = {}
    vms: dict[str, VmTargets] = {}
    used: set[str] = set()
    for vm in names:
        mine = [u for u in (system_of.get(vm), image_of.get(vm)) if u is not None]
        pair = (mine[0].id if mine else "", mine[1].id if len(mine) > 1 else "")
        if pair not in shared:
            targets = {p: t for u in mine for p, t in u.targets.items()}
            errors = tuple(everyone) + tuple(f for u in mine for f in u.failures)
            shared[pair] = VmTargets.of("", targets, errors, mine)
        vms[vm] = _named(shared[pair], vm)
        used.update(pair)
    kept = {i: u for i, u in units.items() if i in used or u.kind == "package"}
    by_drv: dict[str, tuple[str, ...]] = {}
    for unit in kept.values():
        for drv in unit.drv_paths:
            by_drv[drv] = (*by_drv.get(drv, ()), unit.id)
    return BuildPlan(vms, kept, by_drv)


def _named(shared: VmTargets, vm: str) -> VmTargets:
    # The constructor, not attrs.evolve: a thousand VMs make this the planner's hot loop.
    return VmTargets(vm, shared.targets, shared.failures, shared.ok, shared.drv_paths, shared.units)


def _target(part: str, path: AttrPath, drv: Drv) -> Target:
    out = drv.outputs.get("out") or next((p for p in drv.outputs.values() if p), "")
    return Target(
        part=part,
        drv_path=drv.drv_path,
        out_path=out or "",
        file=path[4] if len(path) > 4 else "",
        name=drv.name,
        system=drv.system,
    )
