"""Option paths as users write them, e.g. ``programs.vmsilo.nixosVms[1] (work).network``."""

from __future__ import annotations

import json
from collections.abc import Sequence

from vmsilo_nix.config.schema import ROOT
from vmsilo_nix.nixeval.nix import is_plain_attr

Segment = str | int


def format_path(
    segments: Sequence[Segment], vm_names: Sequence[str | None] = (), root: str = ROOT
) -> str:
    """Render a path; an index into ``nixosVms`` is followed by that VM's name when known."""
    out = root
    for i, seg in enumerate(segments):
        if isinstance(seg, int):
            out += f"[{seg}]"
            if i == 1 and segments[0] == "nixosVms" and 0 <= seg < len(vm_names):
                name = vm_names[seg]
                if name is not None:
                    safe = name.isprintable() and _encodable(name)
                    out += f" ({name if safe else json.dumps(name)})"
        else:
            name = seg if is_plain_attr(seg) else json.dumps(seg)  # json: ASCII-safe
            out += f".{name}" if out else name
    return out


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def vm_names_of(raw: object) -> list[str | None]:
    """Names of the VMs in raw (unvalidated) input, for error paths."""
    if not isinstance(raw, dict):
        return []
    vms = raw.get("nixosVms")
    if not isinstance(vms, list):
        return []
    return [
        vm["name"] if isinstance(vm, dict) and isinstance(vm.get("name"), str) else None
        for vm in vms
    ]
