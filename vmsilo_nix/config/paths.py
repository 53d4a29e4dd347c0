"""Option paths as users write them, e.g. ``programs.vmsilo.nixosVms[1] (work).network``."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence

from vmsilo_nix.config.schema import ROOT
from vmsilo_nix.nixeval.nix import is_plain_attr

Segment = str | int


def format_path(
    segments: Sequence[Segment], vm_names: Sequence[str | None] = (), root: str = ROOT
) -> str:
    """Render a path; an index into ``nixosVms`` is followed by that VM's name when known.

    Plans carry tens of thousands of paths that differ only in their VM, so the VM's part and
    the rest are each rendered once and cached.
    """
    segs = tuple(segments)
    if len(segs) >= 2 and segs[0] == "nixosVms" and isinstance(segs[1], int):
        i = segs[1]
        name = vm_names[i] if 0 <= i < len(vm_names) else None
        return vm_option_path(i, name, segs[2:], root)
    text = _tail(segs)
    return root + text if root else text.removeprefix(".")


def vm_option_path(
    index: int, name: str | None, rest: Sequence[Segment] = (), root: str = ROOT
) -> str:
    """``format_path(("nixosVms", index, *rest), names)`` for one VM whose name is known,
    without a list of every VM's name."""
    return _vm_head(root, index, name) + _tail(tuple(rest))


class OptionPaths:
    """``format_path`` for the many paths of one configuration: each VM's part is rendered
    once, up front, and a path below a VM is that part and its cached tail (a 1000-VM plan
    renders some 50,000 paths for ``plan --json``)."""

    __slots__ = ("_heads", "_names", "_root")

    def __init__(self, vm_names: Sequence[str | None], root: str = ROOT) -> None:
        self._names = vm_names
        self._root = root
        self._heads = [_vm_head(root, i, name) for i, name in enumerate(vm_names)]

    def __call__(self, segments: Sequence[Segment]) -> str:
        if len(segments) >= 2 and segments[0] == "nixosVms":
            i = segments[1]
            if type(i) is int and 0 <= i < len(self._heads):
                return self._heads[i] + _tail(tuple(segments[2:]))
        return format_path(segments, self._names, self._root)


@functools.lru_cache(maxsize=4096)
def _vm_head(root: str, index: int, name: str | None) -> str:
    out = f"{root}.nixosVms[{index}]" if root else f"nixosVms[{index}]"
    if name is not None:
        safe = name.isprintable() and _encodable(name)
        out += f" ({name if safe else json.dumps(name)})"
    return out


@functools.lru_cache(maxsize=16384)
def _tail(segments: tuple[Segment, ...]) -> str:
    """The segments after a prefix, each string one starting with a dot."""
    return "".join(
        f"[{seg}]"
        if isinstance(seg, int)
        else "." + (seg if is_plain_attr(seg) else json.dumps(seg))  # json: ASCII-safe
        for seg in segments
    )


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
