"""Networking plans: host TAP devices, crosvm ``--net`` flags, guest networkd files and NAT.

Everything here is pure: a (validated) ``Config`` goes in, plain data comes out. Commands are
exec argument lists for iproute2's ``ip``, never shell text; running them is the launcher's job.

The host end of each guest interface is a persistent TAP device created before crosvm starts and
owned by ``programs.vmsilo.user``, so that crosvm, running as that user, can open it by name
without ``CAP_NET_ADMIN``. Inside the guest, systemd-networkd names the virtio NIC after the
interface (matched by its permanent MAC address) and configures it from ``network.*``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType

import attrs

from vmsilo_nix.config import values
from vmsilo_nix.config.artifacts import Artifacts
from vmsilo_nix.config.model import Config, Route, Vm
from vmsilo_nix.config.naming import interfaces_in_order, mac_of, tap_name
from vmsilo_nix.config.paths import vm_option_path
from vmsilo_nix.plan.argv import Arg, OptionPath, arg, kv_list

__all__ = [
    "NatPlan",
    "TapPlan",
    "VmNetwork",
    "crosvm_args",
    "guest_networkd",
    "interface_path",
    "plan_nat",
    "plan_taps",
    "plan_vm_network",
]

# systemd applies the first .link file that matches (in lexical order of file names across its
# directories), so ours must sort before 99-default.link; .network files likewise.
FILE_PREFIX = "10-vmsilo-"


# --- names and addresses ---------------------------------------------------------------------


def interface_path(vm_index: int, ifname: str) -> OptionPath:
    return ("nixosVms", vm_index, "network", "interfaces", ifname)


# --- host TAP devices ------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class TapPlan:
    """The host TAP device behind one guest interface."""

    vm: str
    interface: str  # the name the guest sees
    index: int  # position of the interface in name order
    name: str  # host TAP device name
    mac: str  # guest MAC, lower case
    user: str  # owner of the TAP (programs.vmsilo.user): crosvm opens it as this user
    host_address: str | None  # address with prefix length of the host end
    bridge: str | None  # host bridge the TAP joins
    # Options that decided the host set-up: the interface first, then whatever was set for it.
    sources: tuple[OptionPath, ...]
    # Options that decided crosvm's --net: the interface, an explicit tap.name and macAddress.
    net_sources: tuple[OptionPath, ...]

    def setup_argv(self, ip: str) -> list[list[str]]:
        """iproute2 commands that create and configure the TAP, in order.

        ``vnet_hdr`` is given although the kernel takes the flag from whoever attaches (crosvm
        always asks for it): it makes the device's flags match how crosvm uses it, as crosvm's
        own documentation creates it. ``multi_queue`` is not: crosvm opens the TAP with one
        queue pair, and the kernel refuses to attach when that flag differs.
        """
        commands = [
            [ip, "tuntap", "add", "dev", self.name, "mode", "tap", "user", self.user, "vnet_hdr"]
        ]
        if self.bridge is not None:
            commands.append([ip, "link", "set", "dev", self.name, "master", self.bridge])
        if self.host_address is not None:
            commands.append([ip, "address", "add", self.host_address, "dev", self.name])
        commands.append([ip, "link", "set", "dev", self.name, "up"])
        return commands

    def teardown_argv(self, ip: str) -> list[list[str]]:
        """Remove the TAP; its addresses and bridge membership go with it."""
        return [[ip, "link", "delete", "dev", self.name]]


def plan_taps(config: Config, vm_index: int) -> tuple[TapPlan, ...]:
    """The TAP devices of one VM, in interface order; interfaces without ``tap`` have none."""
    vm = config.nixos_vms[vm_index]
    plans = []
    for index, ifname in interfaces_in_order(vm):
        iface = vm.network.interfaces[ifname]
        tap = iface.tap
        if tap is None:
            continue
        base = interface_path(vm_index, ifname)
        name_path: OptionPath = (*base, "tap", "name")
        mac_path: OptionPath = (*base, "macAddress")
        explicit = [
            path
            for path, value in (
                (name_path, tap.name),
                (mac_path, iface.mac_address),
                ((*base, "tap", "hostAddress"), tap.host_address),
                ((*base, "tap", "bridge"), tap.bridge),
            )
            if value is not None
        ]
        plans.append(
            TapPlan(
                vm=vm.name,
                interface=ifname,
                index=index,
                name=tap_name(vm, index, tap.name),
                mac=mac_of(vm, ifname, iface),
                user=config.user,
                host_address=tap.host_address,
                bridge=tap.bridge,
                sources=(base, *explicit, ("user",)),
                net_sources=(base, *(p for p in explicit if p in (name_path, mac_path))),
            )
        )
    return tuple(plans)


def crosvm_args(taps: Iterable[TapPlan]) -> list[Arg]:
    """One ``--net tap-name=NAME,mac=MAC`` per TAP.

    ``--net`` has no first-field shorthand, and its values are parsed without type information,
    so a tap name that reads as a number or boolean is quoted (``kv_list`` does that).
    """
    return [
        arg("--net", kv_list([("tap-name", t.name), ("mac", t.mac)]), sources=t.net_sources)
        for t in taps
    ]


# --- guest side ------------------------------------------------------------------------------


def guest_networkd(vm: Vm, vm_index: int) -> dict[str, str]:
    """systemd-networkd files for the guest, by file name (for /etc/systemd/network).

    Per interface, in name order: ``10-vmsilo-<name>.link`` gives the NIC with the interface's
    MAC the interface's name, and ``10-vmsilo-<name>.network`` configures it. The link is matched
    by its permanent (hardware) address: a bridge, VLAN or macvlan the guest stacks on the NIC
    may share the current MAC, never the permanent one, so it is not renamed too.

    ``nameservers`` belong to the VM, not to one interface; networkd only takes them per link,
    so every interface's ``.network`` lists them all. systemd-resolved asks the servers of all
    links and uses the first answer, so a link that cannot reach them costs nothing.
    """
    files: dict[str, str] = {}
    for _, ifname in interfaces_in_order(vm):
        iface = vm.network.interfaces[ifname]
        origin = vm_option_path(vm_index, vm.name, interface_path(vm_index, ifname)[2:])
        header = f"# Generated by vmsilo from {origin}"
        link = [
            header,
            "[Match]",
            f"PermanentMACAddress={mac_of(vm, ifname, iface)}",
            "",
            "[Link]",
            f"Name={ifname}",
        ]
        network = [header, "[Match]", f"Name={ifname}", "", "[Network]"]
        if iface.dhcp:
            network.append("DHCP=yes")
        network += [f"Address={a}" for a in (*iface.addresses, *iface.v6_addresses)]
        network += [f"DNS={ns}" for ns in vm.network.nameservers]
        for routes in (iface.routes, iface.v6_routes):
            for destination, route in _sorted_routes(routes):
                network += ["", "[Route]", f"Destination={destination}", f"Gateway={route.via}"]
        files[f"{FILE_PREFIX}{ifname}.link"] = "\n".join(link) + "\n"
        files[f"{FILE_PREFIX}{ifname}.network"] = "\n".join(network) + "\n"
    return files


def _sorted_routes(routes: Mapping[str, Route]) -> list[tuple[str, Route]]:
    # By destination, as Nix orders attribute names (code point order equals UTF-8 byte order).
    return sorted(routes.items())


# --- NAT -------------------------------------------------------------------------------------

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@attrs.frozen(kw_only=True)
class NatPlan:
    """Masquerading of VM traffic that leaves the host through ``external_interface``.

    Only TAPs with a ``hostAddress`` take part: the host routes for them. Bridged TAPs are
    switched, not routed, so NAT for a bridge is the bridge's own business.
    """

    external_interface: str
    internal_interfaces: tuple[str, ...]  # TAP names, sorted
    networks: tuple[str, ...]  # networks of the hostAddresses: IPv4 first, then IPv6, sorted
    sources: tuple[OptionPath, ...]

    @property
    def ipv4_networks(self) -> tuple[str, ...]:
        return tuple(n for n in self.networks if ":" not in n)

    @property
    def ipv6_networks(self) -> tuple[str, ...]:
        return tuple(n for n in self.networks if ":" in n)


def plan_nat(config: Config, taps: Sequence[Sequence[TapPlan]] | None = None) -> NatPlan | None:
    """The NAT of all VMs' routed TAPs, or None when ``hostNetworking.nat.enable`` is false.

    ``taps`` (each VM's, in configuration order) are the ones already planned, when given."""
    nat = config.host_networking.nat
    if not nat.enable:
        return None
    names: list[str] = []
    networks: set[IpNetwork] = set()
    sources: list[OptionPath] = [
        ("hostNetworking", "nat", "enable"),
        ("hostNetworking", "nat", "interface"),
    ]
    if taps is None:
        taps = [plan_taps(config, i) for i in range(len(config.nixos_vms))]
    for vm_index, vm_taps in enumerate(taps):
        for tap in vm_taps:
            if tap.host_address is None:
                continue
            names.append(tap.name)
            family = 6 if ":" in tap.host_address else 4
            networks.add(values.parse_interface_address(tap.host_address, family).network)
            sources.append((*interface_path(vm_index, tap.interface), "tap", "hostAddress"))
    return NatPlan(
        external_interface=nat.interface,
        internal_interfaces=tuple(sorted(names)),
        networks=tuple(str(n) for n in _sorted_networks(networks)),
        sources=tuple(sources),
    )


def _sorted_networks(networks: Iterable[IpNetwork]) -> list[IpNetwork]:
    return sorted(networks, key=lambda n: (n.version, int(n.network_address), n.prefixlen))


# --- one VM ----------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class VmNetwork:
    """Everything networking needs for one VM."""

    ip: str  # the iproute2 executable
    taps: tuple[TapPlan, ...]  # in interface order
    guest_files: Mapping[str, str]  # systemd-networkd files by name
    crosvm: tuple[Arg, ...]  # the --net flags

    def setup_argv(self) -> list[list[str]]:
        """Create every TAP, in interface order."""
        return [cmd for tap in self.taps for cmd in tap.setup_argv(self.ip)]

    def teardown_argv(self) -> list[list[str]]:
        """Remove every TAP, in reverse order."""
        return [cmd for tap in reversed(self.taps) for cmd in tap.teardown_argv(self.ip)]


def plan_vm_network(config: Config, vm_index: int, artifacts: Artifacts) -> VmNetwork:
    """Plan the networking of ``config.nixos_vms[vm_index]``; the config must be valid."""
    taps = plan_taps(config, vm_index)
    return VmNetwork(
        ip=artifacts.program("ip"),
        taps=taps,
        guest_files=MappingProxyType(guest_networkd(config.nixos_vms[vm_index], vm_index)),
        crosvm=tuple(crosvm_args(taps)),
    )
