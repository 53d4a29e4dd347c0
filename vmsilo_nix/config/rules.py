"""Cross-field rules the NixOS option types cannot express.

Each rule is a generator registered with ``@rule`` (its findings are errors: the configuration
is refused) or ``@warning`` (it works, but probably not as meant); its docstring is what the
options reference says about it. ``validate`` runs them all and reports every problem at once.
"""

from __future__ import annotations

import copy
import difflib
import ipaddress
import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from typing import Any

from vmsilo_nix.assignments import split_assignment
from vmsilo_nix.config import crosvm_grammar as grammar
from vmsilo_nix.config import values
from vmsilo_nix.config.convert import structure
from vmsilo_nix.config.model import Config, Freeform, NetworkInterface, SharedDirectory
from vmsilo_nix.config.naming import (
    DAEMONS,
    daemon_unit_name,
    host_names,
    interfaces_in_order,
    libexec_name,
    mac_of,
    shared_home_path,
    tap_name,
)
from vmsilo_nix.config.paths import Segment, format_path
from vmsilo_nix.errors import ConfigError, Problem
from vmsilo_nix.facts import HOME_TAG, RESERVED_PARAM_PREFIX

Finding = tuple[tuple[Segment, ...], str]
IfAddress = ipaddress.IPv4Interface | ipaddress.IPv6Interface
Rule = Callable[[Config], Iterable[Finding]]
RULES: list[Rule] = []
WARNINGS: list[Rule] = []

TAG_MAX_BYTES = 36  # virtiofsd --tag limit
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_LEVELS = ("error", "warn", "info", "debug", "trace")
_LEVEL = r"(?:off|error|warn|info|debug|trace)"
# Patterns are used with fullmatch only: `$` also matches before a final newline.
_CROSVM_LOG = re.compile(rf"(?:[A-Za-z0-9_:]+=)?{_LEVEL}(?:,(?:[A-Za-z0-9_:]+=)?{_LEVEL})*")
_UID_MAP = re.compile(r"([^A-Za-z0-9\s])[0-9]+\1[0-9]+\1[0-9]+\1")
_TRANSLATE = re.compile(
    r"(?:(?:guest|host|squash-guest|squash-host|map):[0-9]+:[0-9]+:[0-9]+|forbid-guest:[0-9]+:[0-9]+)"
)


def rule(fn: Rule) -> Rule:
    RULES.append(fn)
    return fn


def warning(fn: Rule) -> Rule:
    WARNINGS.append(fn)
    return fn


def vm_path(i: int, *rest: Segment) -> tuple[Segment, ...]:
    return ("nixosVms", i, *rest)


def where(c: Config, path: tuple[Segment, ...]) -> str:
    """Another option's path, for messages that point at a second place."""
    return format_path(path, [vm.name for vm in c.nixos_vms])


def _check(
    path: tuple[Segment, ...], fn: Callable[[Any], object], value: Any
) -> tuple[Finding, ...]:
    """``fn``'s complaint about ``value`` at ``path``, if any (a tuple, not a generator: this
    runs for every checked value, and nearly all are fine)."""
    try:
        fn(value)
    except ValueError as e:
        return ((path, str(e)),)
    return ()


# --- names -----------------------------------------------------------------------------------


@rule
def vm_names(c: Config) -> Iterator[Finding]:
    """VM names are unique and usable as systemd unit, file and interface name prefixes."""
    seen: dict[str, int] = {}
    for i, vm in enumerate(c.nixos_vms):
        yield from _check(vm_path(i, "name"), values.check_unit_name, vm.name)
        if vm.name in seen:
            yield (
                vm_path(i, "name"),
                f"VM name {vm.name!r} is already used by nixosVms[{seen[vm.name]}]",
            )
        seen.setdefault(vm.name, i)


@rule
def host_name_collisions(c: Config) -> Iterator[Finding]:
    """No two VMs, and no VM and a host daemon, take the same systemd unit or package-tree
    name: a VM `balloond` would be `vmsilo-balloond.service`, the memory daemon's unit; a VM
    `web-taps` would be the TAP unit of a VM `web` that has TAPs."""
    owners: dict[str, str | tuple[Segment, ...]] = {}
    for daemon in DAEMONS:
        for name in (daemon_unit_name(daemon), libexec_name(daemon)):
            owners[name] = f"the host daemon vmsilo-{daemon}"
    names: set[str] = set()
    for i, vm in enumerate(c.nixos_vms):
        if vm.name in names:
            continue  # the same name twice: `vm_names` says so
        names.add(vm.name)
        path = vm_path(i, "name")
        for name in host_names(vm):
            owner = owners.get(name)
            if owner is not None:
                who = owner if isinstance(owner, str) else where(c, owner)
                yield path, f"VM {vm.name!r} would take {name}, which {who} already has"
            else:
                owners[name] = path  # formatted only for a message: where() is O(VMs)


@rule
def user_account(c: Config) -> Iterator[Finding]:
    """`user` is a user name NixOS accepts, not a number (systemd reads that as a UID) and not
    root: it becomes the units' `User=`."""
    yield from _check(("user",), values.check_user_name, c.user)


@rule
def global_names(c: Config) -> Iterator[Finding]:
    """Log levels of the daemons are known levels; crosvm log levels are a level or crosvm's
    filter list (`info,devices=debug`)."""
    for path, level in (
        (("vmsilo-tray", "logLevel"), c.vmsilo_tray.log_level),
        (("vmsilo-balloond", "logLevel"), c.vmsilo_balloond.log_level),
    ):
        if level not in _LEVELS:
            yield path, f"expected one of {', '.join(_LEVELS)}, got {level!r}"
    levels: list[tuple[tuple[Segment, ...], str]] = [(("crosvm", "logLevel"), c.crosvm.log_level)]
    levels += [
        (vm_path(i, "crosvm", "logLevel"), vm.crosvm.log_level)
        for i, vm in enumerate(c.nixos_vms)
        if vm.crosvm.log_level is not None
    ]
    for where_, level in levels:
        if not _CROSVM_LOG.fullmatch(level):
            yield (
                where_,
                (
                    f"expected a level ({', '.join(_LEVELS)}, off) or filters like "
                    f"'info,devices=debug', got {level!r}"
                ),
            )


# --- networking ------------------------------------------------------------------------------


@rule
def taps(c: Config) -> Iterator[Finding]:
    """A `tap` interface has a `tap` set; interface, TAP and bridge names are 1 to 15 (IFNAMSIZ)
    ASCII letters, digits, `.`, `_` and `-`; TAP names are unique across VMs; `hostAddress`
    and `bridge` exclude each other."""
    owners: dict[str, tuple[Segment, ...]] = {}
    for i, vm in enumerate(c.nixos_vms):
        for index, ifname in interfaces_in_order(vm):
            iface = vm.network.interfaces[ifname]
            base = vm_path(i, "network", "interfaces", ifname)
            yield from _check((*base,), values.check_interface_name, ifname)
            if iface.type == "tap" and iface.tap is None:
                yield (*base, "tap"), 'must be set when type is "tap"'
                continue
            if iface.tap is None:
                continue
            name = tap_name(vm, index, iface.tap.name)
            name_path = (*base, "tap", "name")
            try:
                values.check_interface_name(name)
            except ValueError as e:
                hint = "" if iface.tap.name is not None else f" (default name {name!r}; set it)"
                yield name_path, f"{e}{hint}"
            if name in owners:
                yield name_path, f"TAP name {name!r} is also used by {where(c, owners[name])}"
            owners.setdefault(name, name_path)
            if iface.tap.host_address is not None and iface.tap.bridge is not None:
                yield (*base, "tap"), "hostAddress and bridge cannot both be set"
            if iface.tap.host_address is not None:
                yield from _check(
                    (*base, "tap", "hostAddress"), _any_family_interface, iface.tap.host_address
                )
            if iface.tap.bridge is not None:
                yield from _check(
                    (*base, "tap", "bridge"), values.check_interface_name, iface.tap.bridge
                )


def _any_family_interface(text: str) -> None:
    family = 6 if ":" in text else 4
    values.parse_interface_address(text, family)


@rule
def addresses(c: Config) -> Iterator[Finding]:
    """Guest addresses, routes and gateways are valid and of the list's family (v4 or v6);
    nameservers are IP addresses."""
    for i, vm in enumerate(c.nixos_vms):
        for j, ns in enumerate(vm.network.nameservers):
            yield from _check(vm_path(i, "network", "nameservers", j), values.parse_ip, ns)
        for ifname, iface in vm.network.interfaces.items():
            base = vm_path(i, "network", "interfaces", ifname)
            for key, family, addrs, routes in (
                ("addresses", 4, iface.addresses, iface.routes),
                ("v6Addresses", 6, iface.v6_addresses, iface.v6_routes),
            ):
                for j, a in enumerate(addrs):
                    yield from _check(
                        (*base, key, j), partial(values.parse_interface_address, family=family), a
                    )
                rkey = "routes" if key == "addresses" else "v6Routes"
                for dest, route in routes.items():
                    yield from _check(
                        (*base, rkey, dest), partial(values.parse_network, family=family), dest
                    )
                    yield from _check(
                        (*base, rkey, dest, "via"),
                        partial(values.parse_ip, family=family),
                        route.via,
                    )


def _host_sides(c: Config) -> Iterator[tuple[tuple[Segment, ...], IfAddress]]:
    """Every TAP's host address that parses, with its option path."""
    for i, vm in enumerate(c.nixos_vms):
        for ifname, iface in sorted(vm.network.interfaces.items()):
            address = _tap_host(iface.tap.host_address if iface.tap else None)
            if address is not None:
                yield vm_path(i, "network", "interfaces", ifname, "tap", "hostAddress"), address


@rule
def host_subnets(c: Config) -> Iterator[Finding]:
    """The host sides of TAP devices (`tap.hostAddress`) are on subnets that do not overlap:
    the host would route the shared range to only one of the VMs."""
    sides = list(_host_sides(c))
    # A sweep over the subnets sorted by first address: each one that starts before the
    # furthest end seen so far overlaps the subnet with that end (n log n, for 1000s of TAPs).
    for version in (4, 6):
        ranges = sorted(
            (int(a.network.network_address), int(a.network.broadcast_address), n)
            for n, (_, a) in enumerate(sides)
            if a.version == version
        )
        furthest: tuple[int, int] | None = None  # (end, index into sides)
        for start, end, n in ranges:
            if furthest is not None and start <= furthest[0]:
                first, later = sorted((furthest[1], n))  # report at the later one, as written
                yield (
                    sides[later][0],
                    f"the host side {sides[later][1]} is on a subnet that overlaps "
                    f"{sides[first][1]} of {where(c, sides[first][0])}",
                )
            if furthest is None or end > furthest[0]:
                furthest = (end, n)


def _guest_addresses(
    c: Config,
) -> Iterator[tuple[tuple[Segment, ...], int, NetworkInterface, list[tuple[int, IfAddress]]]]:
    """Each interface's guest addresses that parse, by family, with their list index."""
    for i, vm in enumerate(c.nixos_vms):
        for ifname, iface in sorted(vm.network.interfaces.items()):
            base = vm_path(i, "network", "interfaces", ifname)
            for family, texts in ((4, iface.addresses), (6, iface.v6_addresses)):
                parsed = []
                for j, text in enumerate(texts):
                    try:
                        parsed.append((j, values.parse_interface_address(text, family)))
                    except ValueError:
                        continue  # reported by `addresses`
                yield base, family, iface, parsed


_ADDRESS_KEY = {4: "addresses", 6: "v6Addresses"}


@rule
def guest_vs_host_addresses(c: Config) -> Iterator[Finding]:
    """A guest address is not the host side of any TAP (both ends would answer for it)."""
    host = {address.ip: path for path, address in _host_sides(c)}
    for base, family, _, parsed in _guest_addresses(c):
        for j, address in parsed:
            if address.ip in host:
                yield (
                    (*base, _ADDRESS_KEY[family], j),
                    f"{address.ip} is the host side of a TAP ({where(c, host[address.ip])}); "
                    "the guest needs an address of its own",
                )


@warning
def guest_subnets(c: Config) -> Iterator[Finding]:
    """(Warning) A guest address on a TAP with a `hostAddress` lies in the host side's subnet,
    and every route's gateway (`via`) lies in one of its interface's subnets: otherwise the
    guest cannot reach the host or its gateway without routes this configuration does not give
    it. A warning, not an error: an on-link gateway or routes set up elsewhere can make it
    work."""
    for base, family, iface, parsed in _guest_addresses(c):
        host = _tap_host(iface.tap.host_address if iface.tap else None)
        for j, address in parsed:
            if host is not None and host.version == family and address.ip not in host.network:
                yield (
                    (*base, _ADDRESS_KEY[family], j),
                    f"{address} is outside the subnet {host.network} of the TAP's host side "
                    f"({host}); the guest cannot reach the host directly",
                )
        rkey, routes = ("routes", iface.routes) if family == 4 else ("v6Routes", iface.v6_routes)
        for dest, route in routes.items():
            try:
                via = values.parse_ip(route.via, family=family)
            except ValueError:
                continue  # reported by `addresses`
            if parsed and not any(via in a.network for _, a in parsed):
                subnets = ", ".join(str(a.network) for _, a in parsed)
                yield (
                    (*base, rkey, dest, "via"),
                    f"gateway {via} is on none of the interface's subnets ({subnets})",
                )


def _tap_host(text: str | None) -> IfAddress | None:
    if text is None:
        return None
    try:
        return values.parse_interface_address(text, 6 if ":" in text else 4)
    except ValueError:
        return None  # reported by `taps`


@rule
def macs(c: Config) -> Iterator[Finding]:
    """MAC addresses are well formed, unicast, and unique across VMs, derived ones included."""
    owners: dict[str, tuple[Segment, ...]] = {}
    for i, vm in enumerate(c.nixos_vms):
        for ifname, iface in sorted(vm.network.interfaces.items()):
            path = vm_path(i, "network", "interfaces", ifname, "macAddress")
            try:
                mac = mac_of(vm, ifname, iface)
            except ValueError as e:
                yield path, str(e)
                continue
            if iface.mac_address is not None and not values.is_unicast(values.parse_mac(mac)):
                yield path, f"{iface.mac_address} is a multicast address; the guest needs unicast"
            if mac in owners:
                how = "derived " if iface.mac_address is None else ""
                yield path, f"{how}MAC {mac} is also used by {where(c, owners[mac])}"
            owners.setdefault(mac, path)


@rule
def nat(c: Config) -> Iterator[Finding]:
    """NAT needs the external interface it masquerades through, an interface name as above."""
    n = c.host_networking.nat
    path = ("hostNetworking", "nat", "interface")
    if n.enable and not n.interface:
        yield path, "must be set when hostNetworking.nat.enable is true"
    elif n.interface:
        yield from _check(path, values.check_interface_name, n.interface)


# --- resources -------------------------------------------------------------------------------


#: crosvm's x86_64 limit: the guest's MP table gives every vCPU an xAPIC ID, of which there are
#: 255, and the I/O APIC takes one.
MAX_VCPUS = 254
#: crosvm takes `--mem` in MiB and works in bytes as a 64-bit unsigned number.
MAX_MEMORY_MIB = (2**64 - 1) >> 20


@rule
def resources(c: Config) -> Iterator[Finding]:
    """`cpus` is 1 to 254 (crosvm's x86_64 limit), `memory` is positive and its size in bytes
    fits crosvm's 64 bits, `autoShutdown.after` >= 0, the overlay size parses."""
    for i, vm in enumerate(c.nixos_vms):
        if vm.cpus < 1:
            yield vm_path(i, "cpus"), f"must be at least 1, got {vm.cpus}"
        elif vm.cpus > MAX_VCPUS:
            yield vm_path(i, "cpus"), f"crosvm runs at most {MAX_VCPUS} vCPUs, got {vm.cpus}"
        if vm.memory <= 0:
            yield vm_path(i, "memory"), f"must be a positive number of MiB, got {vm.memory}"
        elif vm.memory > MAX_MEMORY_MIB:
            yield (
                vm_path(i, "memory"),
                f"{vm.memory} MiB overflows crosvm's 64-bit memory size "
                f"(at most {MAX_MEMORY_MIB} MiB)",
            )
        if vm.auto_shutdown.after < 0:
            yield vm_path(i, "autoShutdown", "after"), "must not be negative"
        yield from _check(
            vm_path(i, "rootOverlay", "size"), values.parse_size, vm.root_overlay.size
        )


@rule
def balloond(c: Config) -> Iterator[Finding]:
    """Balloon daemon sizes and durations parse; percentages lie in 0..100; the minimum poll
    interval is not longer than the normal one."""
    b = c.vmsilo_balloond
    base = ("vmsilo-balloond",)
    for key, value in (
        ("criticalGuestAvailable", b.critical_guest_available),
        ("guestAvailableBias", b.guest_available_bias),
    ):
        yield from _check((*base, key), values.parse_size, value)
    durations = {}
    for key, value in (("pollInterval", b.poll_interval), ("minPollInterval", b.min_poll_interval)):
        try:
            durations[key] = values.parse_duration(value)
        except ValueError as e:
            yield (*base, key), str(e)
    if len(durations) == 2 and durations["minPollInterval"] > durations["pollInterval"]:
        yield (*base, "minPollInterval"), "must not be longer than pollInterval"
    for key, pct in (
        ("criticalHostPercent", b.critical_host_percent),
        ("psiCeiling", b.psi_ceiling),
    ):
        if not 0 <= pct <= 100:
            yield (*base, key), f"must be a percentage from 0 to 100, got {pct}"
    if b.psi_ceiling == 0:
        yield (*base, "psiCeiling"), "must be above 0 (it divides the pressure scale)"


@rule
def colors(c: Config) -> Iterator[Finding]:
    """`color` is a named colour, #rgb/#rrggbb or rgb(r,g,b)."""
    for i, vm in enumerate(c.nixos_vms):
        yield from _check(vm_path(i, "color"), values.parse_color, vm.color)


@rule
def depends_on(c: Config) -> Iterator[Finding]:
    """`dependsOn` names existing VMs, not the VM itself, and forms no cycle."""
    names = {vm.name for vm in c.nixos_vms}
    graph: dict[str, list[str]] = {}
    for i, vm in enumerate(c.nixos_vms):
        for j, dep in enumerate(vm.depends_on):
            if dep == vm.name:
                yield vm_path(i, "dependsOn", j), "a VM cannot depend on itself"
            elif dep not in names:
                yield vm_path(i, "dependsOn", j), f"no VM is named {dep!r}"
            else:
                graph.setdefault(vm.name, []).append(dep)
    index = {vm.name: i for i, vm in enumerate(c.nixos_vms)}
    for cycle in _cycles(graph):
        yield vm_path(index[cycle[0]], "dependsOn"), "dependency cycle: " + " -> ".join(cycle)


def _cycles(graph: dict[str, list[str]]) -> Iterator[list[str]]:
    """One cycle per strongly connected loop, each reported once, from its smallest name."""
    done: set[str] = set()
    for start in sorted(graph):
        stack: list[tuple[str, list[str]]] = [(start, [start])]
        seen_here: set[str] = set()
        while stack:
            node, trail = stack.pop()
            for nxt in graph.get(node, []):
                if nxt == start:
                    if not (set(trail) & done):
                        yield [*trail, start]
                        done.update(trail)
                    stack.clear()
                    break
                if nxt not in seen_here and nxt not in done:
                    seen_here.add(nxt)
                    stack.append((nxt, [*trail, nxt]))


# --- devices and shares ----------------------------------------------------------------------


def _freeform(
    path: tuple[Segment, ...], entry: Freeform, required: tuple[str, ...], flag: str
) -> Iterator[Finding]:
    """An attribute set passed to crosvm ``flag`` as key=value: required keys present, every key
    one that crosvm knows for that flag, values of enumerated keys among their choices."""
    for key in required:
        value = entry.get(key)
        if not isinstance(value, str) or not value:
            yield (*path, key), "is required (a non-empty string)"
    known = grammar.KEYS[flag]
    for key, value in entry.items():
        if key not in known:
            aliases = grammar.KEY_ALIASES.get(flag, {})
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f"did you mean {aliases.get(close[0], close[0])!r}? " if close else ""
            yield (
                (*path, key),
                f"crosvm {flag} has no key {key!r}; {hint}(known: {', '.join(sorted(known))})",
            )
            continue
        choices = grammar.KEY_VALUES.get((flag, key))
        if choices is not None and value is not None and str(value) not in choices:
            yield (*path, key), f"crosvm {flag} {key}= takes one of {', '.join(sorted(choices))}"


@rule
def disks(c: Config) -> Iterator[Finding]:
    """Disks (`rootDisk`, `additionalDisks`), `vhostUser` entries and a `gpu` attribute set have
    their required keys (`path`; `type` and `socket`), only keys crosvm knows for their flag
    (`--block`, `--vhost-user`, `--gpu`), and known values for enumerated keys."""
    for i, vm in enumerate(c.nixos_vms):
        if vm.root_disk is not None:
            yield from _freeform(vm_path(i, "rootDisk"), vm.root_disk, ("path",), "--block")
        for j, d in enumerate(vm.additional_disks):
            yield from _freeform(vm_path(i, "additionalDisks", j), d, ("path",), "--block")
        for j, d in enumerate(vm.vhost_user):
            yield from _freeform(vm_path(i, "vhostUser", j), d, ("type", "socket"), "--vhost-user")
        if isinstance(vm.gpu, Mapping):
            yield from _freeform(vm_path(i, "gpu"), vm.gpu, (), "--gpu")


# Flags that would take away what vmsilo relies on.
_BREAKING_RUN_FLAGS = {
    "--no-balloon": "vmsilo-balloond moves memory through the balloon device this removes",
}


def _writable(disk: Freeform) -> bool:
    return disk.get("ro") not in (True, "true")  # crosvm's default is read-write


@rule
def shared_disks(c: Config) -> Iterator[Finding]:
    """A disk image (`rootDisk`, `additionalDisks`) that one VM writes is given to no other VM,
    nor twice to the same one: two writers corrupt it. Read-only everywhere is fine."""
    seen: dict[str, list[tuple[tuple[Segment, ...], bool]]] = {}
    for i, vm in enumerate(c.nixos_vms):
        disks = [(vm_path(i, "rootDisk"), vm.root_disk)] if vm.root_disk is not None else []
        disks += [(vm_path(i, "additionalDisks", j), d) for j, d in enumerate(vm.additional_disks)]
        for path, disk in disks:
            raw = disk.get("path")
            if not isinstance(raw, str) or not raw.startswith("/"):
                continue
            key = os.path.normpath(raw)
            writable = _writable(disk)
            for other, other_writable in seen.get(key, []):
                if writable or other_writable:
                    yield (
                        (*path, "path"),
                        f"{key} is also a disk of {where(c, other)}; this one "
                        f"{'writes' if writable else 'reads'} it and that one "
                        f"{'writes' if other_writable else 'reads'} it, so the image would be "
                        "corrupted (make both ro = true, or use a copy)",
                    )
                    break
            seen.setdefault(key, []).append((path, writable))


@rule
def extra_args(c: Config) -> Iterator[Finding]:
    """Extra crosvm arguments do not repeat a flag vmsilo already passes once (`--cpus`, `--mem`,
    `--initrd`, `--vsock`, `--socket`, `--core-scheduling`, a second `--gpu`, ...: checked on the
    plan's own words, `plan/checks.py`), do not set `--log-level` (that is `crosvm.logLevel`),
    do not use flags crosvm removed or `--no-balloon`, and keep global flags before `run`."""
    yield from _extra_before(
        [(("crosvm", "extraArgs", j), a) for j, a in enumerate(c.crosvm.extra_args)]
    )
    yield from _extra_after(
        [(("crosvm", "extraRunArgs", j), a) for j, a in enumerate(c.crosvm.extra_run_args)]
    )
    for i, vm in enumerate(c.nixos_vms):
        extra = vm.crosvm
        yield from _extra_before(
            [(vm_path(i, "crosvm", "extraArgs", j), a) for j, a in enumerate(extra.extra_args)]
        )
        yield from _extra_after(
            [
                (vm_path(i, "crosvm", "extraRunArgs", j), a)
                for j, a in enumerate(extra.extra_run_args)
            ]
        )


def _extra_before(words: list[tuple[tuple[Segment, ...], str]]) -> Iterator[Finding]:
    for path, word in words:
        flag = grammar.canonical_flag(word)
        if word == "run":
            yield path, "vmsilo adds `run` itself"
        elif flag == "--log-level":
            yield path, "vmsilo sets --log-level from crosvm.logLevel; set that option instead"
        elif flag is not None and flag not in grammar.GLOBAL_FLAGS:
            yield (
                path,
                f"{flag} is not a global crosvm flag (those go before `run`); use extraRunArgs",
            )


def _extra_after(words: list[tuple[tuple[Segment, ...], str]]) -> Iterator[Finding]:
    for path, word in words:
        flag = grammar.canonical_flag(word)
        if flag is None:
            continue
        if flag in _BREAKING_RUN_FLAGS:
            yield path, f"{flag} cannot be used: {_BREAKING_RUN_FLAGS[flag]}"
        elif flag in grammar.RUN_REMOVED:
            yield path, f"crosvm no longer has {flag}: {grammar.RUN_REMOVED[flag]}"


@rule
def pci(c: Config) -> Iterator[Finding]:
    """PCI addresses are valid BDFs; every `pciDevices` entry is listed in `isolatedPciDevices`
    (`01:00.0` equals `0000:01:00.0`); no device is given twice, to one VM or to two."""
    isolated: set[str] = set()
    given: dict[str, tuple[Segment, ...]] = {}
    for j, bdf in enumerate(c.isolated_pci_devices):
        try:
            norm = values.normalise_bdf(bdf)
        except ValueError as e:
            yield ("isolatedPciDevices", j), str(e)
            continue
        if norm in isolated:
            yield ("isolatedPciDevices", j), f"{bdf} is listed twice"
        isolated.add(norm)
    for i, vm in enumerate(c.nixos_vms):
        for j, dev in enumerate(vm.pci_devices):
            path = vm_path(i, "pciDevices", j)
            yield from _freeform(path, dev, ("path",), "--vfio")
            raw = dev.get("path")
            if not isinstance(raw, str) or not raw:
                continue
            try:
                norm = values.normalise_bdf(raw)
            except ValueError as e:
                yield (*path, "path"), str(e)
                continue
            if norm in given:
                yield (
                    (*path, "path"),
                    f"{norm} is already passed to {where(c, given[norm])}; a device can be "
                    "given to one VM only",
                )
            given.setdefault(norm, (*path, "path"))
            if norm not in isolated:
                yield (
                    (*path, "path"),
                    (
                        f"{norm} must also be listed in programs.vmsilo.isolatedPciDevices, "
                        "so that vfio-pci claims it at boot"
                    ),
                )


@rule
def shares(c: Config) -> Iterator[Finding]:
    """Shared-directory tags are usable virtiofs tags (at most 36 bytes) and do not clash with the
    home share; paths are absolute; `posixAcl` excludes `translateUid`/`translateGid`; ID maps
    are well formed; thread pools are not negative; `inodeFileHandles` is not `"mandatory"`
    (virtiofsd runs unprivileged, as the VM's user, and then refuses to start with it)."""
    for i, vm in enumerate(c.nixos_vms):
        home = shared_home_path(vm)
        if home is not None and not home.startswith("/"):
            yield vm_path(i, "sharedHome"), f"must be an absolute path, got {home!r}"
        for tag, share in vm.shared_directories.items():
            yield from _share(vm_path(i, "sharedDirectories", tag), tag, share, home is not None)


def _share(
    path: tuple[Segment, ...], tag: str, s: SharedDirectory, has_home: bool
) -> Iterator[Finding]:
    if not _TAG.fullmatch(tag) or len(tag.encode()) > TAG_MAX_BYTES:
        yield path, (f"tag must be 1 to {TAG_MAX_BYTES} bytes of letters, digits, '.', '_' and '-'")
    if tag == HOME_TAG and has_home:
        yield (
            path,
            (
                f"tag {HOME_TAG!r} is taken by the sharedHome share; rename it or set "
                "sharedHome = false"
            ),
        )
    if not s.path.startswith("/"):
        yield (*path, "path"), f"must be an absolute path, got {s.path!r}"
    if s.posix_acl:
        for key, v in (("translateUid", s.translate_uid), ("translateGid", s.translate_gid)):
            if v is not None:
                yield (*path, key), "cannot be used with posixAcl = true (virtiofsd refuses both)"
    for key, v, pattern, form in (
        ("uidMap", s.uid_map, _UID_MAP, ":namespace_uid:host_uid:count:"),
        ("gidMap", s.gid_map, _UID_MAP, ":namespace_gid:host_gid:count:"),
        ("translateUid", s.translate_uid, _TRANSLATE, "TYPE:source:target:count"),
        ("translateGid", s.translate_gid, _TRANSLATE, "TYPE:source:target:count"),
    ):
        if v is not None and not pattern.fullmatch(v):
            yield (*path, key), f"expected the form {form}, got {v!r}"
    if s.thread_pool_size < 0:
        yield (*path, "threadPoolSize"), "must not be negative"
    if s.inode_file_handles == "mandatory":
        # Seen with the real virtiofsd run unprivileged: "Refusing to use (mandatory) file
        # handles", and it exits before crosvm can connect.
        yield (
            (*path, "inodeFileHandles"),
            (
                '"mandatory" needs CAP_DAC_READ_SEARCH, which virtiofsd running as '
                'programs.vmsilo.user does not have; use "prefer" (file handles where they work) '
                'or "never"'
            ),
        )


# --- kernel and command lines ----------------------------------------------------------------


@rule
def kernel(c: Config) -> Iterator[Finding]:
    """Kernel parameters are printable ASCII, do not start with `-` (crosvm would read a flag)
    and set neither `init=` nor `vmsilo.*` (vmsilo's own); `kernel` and `initramfs` are absolute
    paths; the whole command line crosvm builds (its own parameters, vmsilo's, then these) fits
    its 2047 bytes (that part is checked on the plan, `plan/checks.py`)."""
    for i, vm in enumerate(c.nixos_vms):
        for j, p in enumerate(vm.kernel_params):
            yield from _check(vm_path(i, "kernelParams", j), values.check_kernel_param, p)
            for name in _param_names(p):
                if name.startswith(RESERVED_PARAM_PREFIX) or name == "init":
                    yield (
                        vm_path(i, "kernelParams", j),
                        f"{name}= is set by vmsilo (the guest reads its identity and system from "
                        "it); a second one would override it",
                    )
        for key, v in (("kernel", vm.kernel), ("initramfs", vm.initramfs)):
            if v is not None and not v.startswith("/"):
                yield vm_path(i, key), f"must be an absolute path, got {v!r}"


def _param_names(value: str) -> list[str]:
    """The parameter names in one kernelParams value (it may hold several, space-separated;
    a double-quoted part belongs to its word)."""
    if '"' not in value:  # nearly always: plain words
        return [split_assignment(word)[0] for word in value.split(" ") if word]
    return _quoted_param_names(value)


def _quoted_param_names(value: str) -> list[str]:
    names, word, quoted = [], "", False
    for ch in value + " ":
        if ch == '"':
            quoted = not quoted
        if ch == " " and not quoted:
            if word:
                names.append(split_assignment(word)[0].strip('"'))
            word = ""
        else:
            word += ch
    return names


def findings(config: Config) -> list[Problem]:
    return [
        Problem(where(config, path), message, path)
        for check in RULES
        for path, message in check(config)
    ]


def warnings(config: Config) -> list[Problem]:
    """What the warning rules find: the configuration works, but probably not as meant."""
    return [
        Problem(where(config, path), message, path, "warning")
        for check in WARNINGS
        for path, message in check(config)
    ]


def check(raw: object, find: Callable[[Config], list[Problem]] = findings) -> Config:
    """Structure and validate JSON data, reporting type errors and rule violations together.

    ``find`` lists the rule violations (the pipeline adds the checks of the plan to these).
    When some values have the wrong type, the rules still run on a copy without them (their
    defaults stand in), so that one run lists every problem; findings under a removed value are
    dropped, since they would speak of the default rather than of what the user wrote.
    """
    try:
        config = structure(raw)
    except ConfigError as first:
        type_problems = first.problems
    else:
        problems = find(config)
        if problems:
            raise ConfigError(problems)
        return config
    removed = [p.segments[: _last_key(p.segments)] for p in type_problems]
    try:
        repaired = copy.deepcopy(raw)
    except RecursionError:  # input nested far deeper than any option: a copy recurses as deep
        raise ConfigError(type_problems) from None
    for path in removed:
        _remove(repaired, path)
    try:
        config = structure(repaired)
    except ConfigError:
        raise ConfigError(type_problems) from None  # nothing more can be said with confidence
    more = [p for p in find(config) if not any(p.segments[: len(r)] == r for r in removed if r)]
    raise ConfigError([*type_problems, *more])


def _last_key(path: tuple[Segment, ...]) -> int:
    """Length of the path up to its last attribute name: list items are never removed, so the
    indices of the other VMs stay as the user wrote them."""
    for i in range(len(path) - 1, -1, -1):
        if isinstance(path[i], str):
            return i + 1
    return 0


def _remove(data: object, path: tuple[Segment, ...]) -> None:
    if not path:
        return
    for seg in path[:-1]:
        in_dict = isinstance(data, dict) and isinstance(seg, str) and seg in data
        in_list = isinstance(data, list) and isinstance(seg, int) and 0 <= seg < len(data)
        if not (in_dict or in_list):
            return
        data = data[seg]  # type: ignore[index]
    if isinstance(data, dict):
        data.pop(path[-1], None)


def validate(config: Config) -> Config:
    """Return ``config`` unchanged, or raise ConfigError with every rule violation."""
    problems = findings(config)
    if problems:
        raise ConfigError(problems)
    return config
