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


# --- what the host installs under each VM's name ---------------------------------------------

#: The host daemons: each has the system unit ``vmsilo-<name>.service`` and the start script
#: ``libexec/vmsilo/<name>`` in the package tree.
DAEMONS = ("balloond", "tray")


def unit_name(vm: str) -> str:
    """The system unit that runs a VM."""
    return f"vmsilo-{vm}.service"


def taps_unit_name(vm: str) -> str:
    """The system unit that creates a VM's TAP devices before it starts."""
    return f"vmsilo-{vm}-taps.service"


def wayland_unit_name(vm: str) -> str:
    """The user unit of the graphical session that makes a VM's Wayland socket."""
    return f"vmsilo-{vm}-wayland.service"


def activation_socket_name(vm: str) -> str:
    """The socket unit whose first connection starts the VM."""
    return f"vmsilo-{vm}.socket"


def daemon_unit_name(daemon: str) -> str:
    return f"vmsilo-{daemon}.service"


def libexec_name(name: str) -> str:
    """A VM's directory (or a daemon's script) in the package tree's ``libexec/vmsilo``."""
    return f"libexec/vmsilo/{name}"


def host_names(vm: Vm) -> list[str]:
    """The system unit names and package-tree paths a VM takes on the host."""
    names = [unit_name(vm.name), activation_socket_name(vm.name), libexec_name(vm.name)]
    if any(iface.tap is not None for iface in vm.network.interfaces.values()):
        names.append(taps_unit_name(vm.name))
    return names
