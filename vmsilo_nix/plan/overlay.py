"""The writable layer over a VM's read-only root (``rootOverlay``).

The root image is always attached read-only (unless the user says otherwise); the guest puts
an overlay filesystem over it whose upper layer is either

- ``qcow2``: a second virtio disk backed by ``<stateDir>/<vm>/overlay.qcow2`` on the host
  (``/var/lib/vmsilo/<vm>/overlay.qcow2`` by default). It lives on disk, not in RAM, so a VM
  can write more than its memory. The launcher runs ``qemu-img create -f qcow2 PATH SIZE``
  before every start, which replaces any file left from the last run: the disk is empty at
  each boot and nothing written to the root survives a restart. The launcher creates the
  directory first; ``qemu-img`` does not.
- ``tmpfs``: a tmpfs inside the guest. Nothing happens on the host and crosvm gets no disk.

The qcow2 disk is attached with ``sparse=true`` (crosvm's default, written out so that it is
visible): blocks the guest discards are released in the qcow2 file, so a long-running VM
that writes and deletes much does not keep the space.
"""

from __future__ import annotations

from typing import Literal

import attrs

from vmsilo_nix.config.artifacts import Artifacts
from vmsilo_nix.config.model import Config
from vmsilo_nix.plan.argv import Arg, OptionPath, arg, kv_list
from vmsilo_nix.plan.layout import Layout


@attrs.frozen
class OverlayPlan:
    type: Literal["qcow2", "tmpfs"]
    path: str | None  # the qcow2 file; None for tmpfs
    size: str | None  # qemu-img size syntax, e.g. "10G"; None for tmpfs (the option is ignored)
    create_argv: tuple[str, ...]  # run before each start; empty for tmpfs
    sources: tuple[OptionPath, ...]


def plan_overlay(
    config: Config, vm_index: int, layout: Layout, artifacts: Artifacts
) -> OverlayPlan:
    vm = config.nixos_vms[vm_index]
    src: OptionPath = ("nixosVms", vm_index, "rootOverlay")
    overlay = vm.root_overlay
    if overlay.type == "tmpfs":
        return OverlayPlan(
            type="tmpfs", path=None, size=None, create_argv=(), sources=((*src, "type"),)
        )
    path = layout.overlay(vm.name)
    return OverlayPlan(
        type="qcow2",
        path=path,
        size=overlay.size,
        create_argv=(artifacts.program("qemu-img"), "create", "-f", "qcow2", path, overlay.size),
        sources=((*src, "type"), (*src, "size")),
    )


def crosvm_args(plan: OverlayPlan) -> list[Arg]:
    """The overlay disk for crosvm: one writable ``--block`` for qcow2, nothing for tmpfs."""
    if plan.path is None:
        return []
    return [
        arg(
            "--block",
            kv_list([("path", plan.path), ("ro", False), ("sparse", True)]),
            sources=plan.sources,
            note="the fresh qcow2 overlay disk",
        )
    ]
