"""The artifacts file `vmsilo build` writes and `vmsilo generate --artifacts` reads.

Its shape is ``config.artifacts.Artifacts``: ``{"packages": {...}, "vms": {vm: {kernel,
initrd, rootImage, toplevel}}}``. Only VMs whose every part was built are written; entries of
an existing file for VMs this build did not touch are kept (building one VM does not make the
others unbuilt). The CLI replaces the file whole (``write_atomically``: a temporary
sibling, then a rename), so a reader never sees half of it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vmsilo_nix.build.planner import PARTS, VmTargets
from vmsilo_nix.config.artifacts import load_artifacts
from vmsilo_nix.errors import ConfigError, VmsiloError


def vm_entry(targets: VmTargets) -> dict[str, str]:
    return {part: targets.targets[part].path for part in PARTS}


def merge(existing: Mapping[str, Any] | None, built: Mapping[str, VmTargets]) -> dict[str, Any]:
    """The new artifacts document: ``existing`` with the built VMs' entries replaced."""
    doc: dict[str, Any] = {"packages": {}, "vms": {}}
    if existing is not None:
        doc["packages"] = dict(existing.get("packages", {}))
        doc["vms"] = dict(existing.get("vms", {}))
    for name, targets in built.items():
        doc["vms"][name] = vm_entry(targets)
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


def updated(path: Path, built: Mapping[str, VmTargets]) -> dict[str, Any]:
    """The document to write at ``path``: what is there, with the built VMs' entries."""
    return merge(read_existing(path), built)


def text(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"
