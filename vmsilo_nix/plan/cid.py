"""vsock context IDs: unique per VM, stable across runs and across edits of other VMs.

A VM's CID comes from the SHA-256 of its name, so adding, removing or reordering other VMs never
changes it. Two names may hash to the same CID (about one chance in 4 million for 100 VMs); then
the name that sorts later takes the next free CID, which changes only the colliding VMs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

FIRST = 3  # 0-2 are reserved: hypervisor, local, host
LAST = 0xFFFFFFFE  # 0xFFFFFFFF is VMADDR_CID_ANY
SPAN = LAST - FIRST + 1


def preferred(name: str) -> int:
    digest = hashlib.sha256(name.encode()).digest()
    return FIRST + int.from_bytes(digest[:8], "big") % SPAN


def assign(names: Iterable[str]) -> dict[str, int]:
    """The CID of every VM."""
    taken: dict[int, str] = {}
    out: dict[str, int] = {}
    for name in sorted(set(names)):
        cid = preferred(name)
        while cid in taken:
            cid = FIRST + (cid - FIRST + 1) % SPAN
        taken[cid] = name
        out[name] = cid
    return out
