"""The artifacts file `vmsilo build` writes and `vmsilo generate --artifacts` reads.

Its shape is ``config.artifacts.Artifacts``: ``{"packages": {program: store path}, "vms":
{vm: {kernel, initrd, rootImage, toplevel, programImage, programs}}}`` (the last two for VMs
with guestPrograms), the same document nix/module.nix gives the launchers inside the NixOS
build. Only VMs whose every unit was built are written, and the packages that were built;
entries of an existing file that this build did not touch are kept (building one VM does not
make the others unbuilt). The CLI replaces the file whole (``write_atomically``: a temporary
sibling, then a rename), so a reader never sees half of it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vmsilo_nix.build.planner import IMAGE_PARTS, PARTS, VmTargets
from vmsilo_nix.config.artifacts import PROGRAMS, load_artifacts
from vmsilo_nix.errors import ConfigError, VmsiloError


def vm_entry(targets: VmTargets) -> dict[str, str]:
    t = targets.targets
    return {part: t[part].path for part in (*PARTS, *IMAGE_PARTS) if part in t}


def merge(
    existing: Mapping[str, Any] | None,
    built: Mapping[str, VmTargets],
    packages: Mapping[str, str] = {},
) -> dict[str, Any]:
    """The new artifacts document: ``existing`` with the built VMs' entries and packages
    replaced. Packages the launchers do not run are left out (a reader would refuse them)."""
    doc: dict[str, Any] = {"packages": {}, "vms": {}}
    if existing is not None:
        doc["packages"] = dict(existing.get("packages", {}))
        doc["vms"] = dict(existing.get("vms", {}))
    doc["packages"].update({n: p for n, p in packages.items() if n in PROGRAMS})
    for name, targets in built.items():
        doc["vms"][name] = vm_entry(targets)
    doc["packages"] = dict(sorted(doc["packages"].items()))
    doc["vms"] = dict(sorted(doc["vms"].items()))
    return doc


def read_existing(path: Path) -> dict[str, Any] | None:
    """A previous artifacts file, checked; None if there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as err:
        raise VmsiloError(f"{path}: cannot read the previous artifacts: {err}") from None
    try:
        raw = json.loads(text)
        load_artifacts(raw)
    except (json.JSONDecodeError, ConfigError) as err:
        raise VmsiloError(
            f"{path} exists but is not an artifacts file ({err}); remove it or choose another "
            "--artifacts-out"
        ) from None
    assert isinstance(raw, dict)
    return raw


def updated(
    path: Path, built: Mapping[str, VmTargets], packages: Mapping[str, str] = {}
) -> dict[str, Any]:
    """The document to write at ``path``: what is there, with what was built."""
    return merge(read_existing(path), built, packages)


def store_paths(doc: Mapping[str, Any]) -> set[str]:
    """The store paths (``/nix/store/<name>``) the document names: what must stay alive."""
    paths = [*doc.get("packages", {}).values()]
    paths += [p for vm in doc.get("vms", {}).values() for p in vm.values()]
    return {"/".join(p.split("/")[:4]) for p in paths if isinstance(p, str)}


def text(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"
