"""Names and addresses vmsilo derives from the configuration where the user left them out.

They are part of what the user configured (a TAP called ``banking-0``, a MAC derived from the VM
and interface names), so the rules check them and the planners use them: both import them from
here, the one owner.
"""

from __future__ import annotations

from vmsilo_nix import facts
from vmsilo_nix.config import values
from vmsilo_nix.config.model import NetworkInterface, Vm


def tap_name(vm: Vm, index: int, explicit: str | None) -> str:
    """The host TAP name: explicit, or ``<vm>-<index>`` with the index in interface name order."""
    return explicit if explicit is not None else f"{vm.name}-{index}"


def interfaces_in_order(vm: Vm) -> list[tuple[int, str]]:
    """Interfaces with their index; attribute sets are ordered by name, as Nix orders them."""
    return list(enumerate(sorted(vm.network.interfaces)))


def mac_of(vm: Vm, ifname: str, iface: NetworkInterface) -> str:
    """The guest MAC of an interface: the explicit one in lower case, else the derived one.

    Raises ``ValueError`` for a malformed explicit address (validation reports it first).
    """
    if iface.mac_address is not None:
        return values.format_mac(values.parse_mac(iface.mac_address))
    return values.derive_mac(vm.name, ifname)


def shared_home_path(vm: Vm) -> str | None:
    """The host directory shared as the guest's home, or None when sharedHome is false."""
    if vm.shared_home is False:
        return None
    if vm.shared_home is True:
        return facts.DEFAULT_SHARED_HOME.format(vm=vm.name)
    return str(vm.shared_home)
