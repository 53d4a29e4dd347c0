"""A VM's Wayland connection to the host, behind a security context that carries its identity.

The host side (the VM's proxy script) registers a wp_security_context_v1 listener for the VM's
socket with the compositor, with these three strings; every guest client arriving through that
socket is tagged with them, so the compositor can tell whose window it is and draw the border
in the VM's colour. crosvm gets the socket with --wayland-sock; only cross-domain GPU contexts
carry Wayland, so without them there is no socket to give.
"""

from __future__ import annotations

import attrs

from vmsilo_nix import facts
from vmsilo_nix.config.model import Vm
from vmsilo_nix.config.values import parse_color
from vmsilo_nix.plan.argv import OptionPath
from vmsilo_nix.plan.layout import Layout

SANDBOX_ENGINE = facts.ENGINE


@attrs.frozen(kw_only=True)
class WaylandPlan:
    socket: str  # what crosvm connects to (--wayland-sock)
    sandbox_engine: str
    app_id: str  # the VM name: which silo a window belongs to
    instance_id: str  # the VM name and its colour, e.g. "banking #2e7d32"
    color: str  # "#rrggbb", normalised from the option
    sources: tuple[OptionPath, ...]


def forwards_wayland(vm: Vm) -> bool:
    """Whether the VM's GPU has cross-domain contexts (the default GPU has)."""
    if vm.gpu is False:
        return False
    if vm.gpu is True:
        return True
    return "cross-domain" in str(vm.gpu.get("context-types", "")).split(":")


def plan_wayland(vm: Vm, index: int, layout: Layout) -> WaylandPlan | None:
    if not forwards_wayland(vm):
        return None
    r, g, b = parse_color(vm.color)
    color = f"#{r:02x}{g:02x}{b:02x}"
    return WaylandPlan(
        socket=layout.wayland_socket(vm.name),
        sandbox_engine=SANDBOX_ENGINE,
        app_id=vm.name,
        instance_id=f"{vm.name} {color}",
        color=color,
        sources=(("nixosVms", index, "gpu"), ("nixosVms", index, "color")),
    )
