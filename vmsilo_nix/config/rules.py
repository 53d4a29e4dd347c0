"""Cross-field rules the NixOS option types cannot express.

Each rule is a generator registered with ``@rule``; its docstring's first line is what the
options reference says about it. ``validate`` runs them all and reports every problem at once.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import partial
from typing import Any

from vmsilo_nix.config import crosvm_grammar as grammar
from vmsilo_nix.config import values
from vmsilo_nix.config.convert import structure
from vmsilo_nix.config.model import Config, Freeform, SharedDirectory
from vmsilo_nix.config.naming import interfaces_in_order, mac_of, shared_home_path, tap_name
from vmsilo_nix.config.paths import Segment, format_path
from vmsilo_nix.errors import ConfigError, Problem
from vmsilo_nix.facts import HOME_TAG

Finding = tuple[tuple[Segment, ...], str]
Rule = Callable[[Config], Iterable[Finding]]
RULES: list[Rule] = []

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


def vm_path(i: int, *rest: Segment) -> tuple[Segment, ...]:
    return ("nixosVms", i, *rest)


def where(c: Config, path: tuple[Segment, ...]) -> str:
    """Another option's path, for messages that point at a second place."""
    return format_path(path, [vm.name for vm in c.nixos_vms])


def _check(path: tuple[Segment, ...], fn: Callable[[Any], object], value: Any) -> Iterator[Finding]:
    try:
        fn(value)
    except ValueError as e:
        yield path, str(e)


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


@rule
def resources(c: Config) -> Iterator[Finding]:
    """`cpus` >= 1, `memory` > 0, `autoShutdown.after` >= 0, overlay size parses."""
    for i, vm in enumerate(c.nixos_vms):
        if vm.cpus < 1:
            yield vm_path(i, "cpus"), f"must be at least 1, got {vm.cpus}"
        if vm.memory <= 0:
            yield vm_path(i, "memory"), f"must be a positive number of MiB, got {vm.memory}"
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
    (`01:00.0` equals `0000:01:00.0`)."""
    isolated: set[str] = set()
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
    """Kernel parameters are printable ASCII and do not start with `-` (crosvm would read a
    flag); `kernel` and `initramfs` are absolute paths; the whole command line crosvm builds
    (its own parameters, vmsilo's, then these) fits its 2047 bytes (that part is checked on the
    plan, `plan/checks.py`)."""
    for i, vm in enumerate(c.nixos_vms):
        for j, p in enumerate(vm.kernel_params):
            yield from _check(vm_path(i, "kernelParams", j), values.check_kernel_param, p)
        for key, v in (("kernel", vm.kernel), ("initramfs", vm.initramfs)):
            if v is not None and not v.startswith("/"):
                yield vm_path(i, key), f"must be an absolute path, got {v!r}"


def findings(config: Config) -> list[Problem]:
    return [
        Problem(where(config, path), message, path)
        for check in RULES
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
    repaired = copy.deepcopy(raw)
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
