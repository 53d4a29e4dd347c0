"""`vmsilo guest-setup`: run once at boot inside a guest, before udev and systemd-networkd.

It reads the VM's identity from the kernel command line (see ``guest_identity``), writes the
VM's systemd-networkd files (the same text the host plans), sets the hostname and mounts the
VM's virtiofs shares: the home share on /home/user, every other share on /mnt/<tag>.

A VM with guestPrograms boots with its program image already under the store (stage 1 mounts
it, as a lower layer of the store overlay: only then can its paths sit in /nix/store where they
were built). guest-setup checks that the profile ``vmsilo.programs=`` names arrived with it and
points ``facts.PROGRAMS_LINK`` at it, a profile of the guest system: its bin/ is then on PATH
and its share/ in XDG_DATA_DIRS for the user's session.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
from pathlib import Path
from typing import Any

import attrs

from vmsilo_nix import facts, process
from vmsilo_nix.config.paths import format_path
from vmsilo_nix.config.rules import check
from vmsilo_nix.errors import ConfigError, Problem, VmsiloError
from vmsilo_nix.facts import HOME_TAG
from vmsilo_nix.plan.identity import (
    IdentityError,
    add_cmdline_argument,
    decode_cmdline,
    decode_programs,
)
from vmsilo_nix.plan.network import guest_networkd

HOME_MOUNT = facts.GUEST_HOME
SHARES_UNDER = facts.GUEST_SHARES_DIR
GUEST_USER = "user"  # any valid name: the rules want one


@attrs.frozen
class Mount:
    tag: str
    target: str
    readonly: bool

    def argv(self) -> list[str]:
        options = ["-o", "ro"] if self.readonly else []
        return ["mount", "-t", "virtiofs", *options, self.tag, self.target]


@attrs.frozen
class GuestSetup:
    hostname: str
    network_files: dict[str, str]
    mounts: tuple[Mount, ...]
    programs: str | None = None  # the program profile the link points at


#: The fields of an identity (``plan.identity.payload``); anything else is refused.
IDENTITY_FIELDS = frozenset({"name", "index", "home", "shares", "network"})
NETWORK_FIELDS = frozenset({"nameservers", "interfaces"})
INTERFACE_FIELDS = frozenset(
    {"macAddress", "dhcp", "addresses", "v6Addresses", "routes", "v6Routes"}
)
#: The VM's position in the host's configuration, used in the files' comments; bounded so that
#: a damaged identity cannot make the guest build a huge list.
MAX_INDEX = 1 << 16


def _guest_network(network: object) -> object:
    """The identity's network with neutral stand-ins for what only the host has (the TAP
    devices), so that the rules check just the guest's values."""
    if not isinstance(network, dict):
        return network  # the rules say what is wrong with it
    _only(network, NETWORK_FIELDS, "network")
    interfaces = network.get("interfaces", {})
    if not isinstance(interfaces, dict):
        return network
    out: dict[str, Any] = {}
    for n, (ifname, entry) in enumerate(interfaces.items()):
        if isinstance(entry, dict):
            _only(entry, INTERFACE_FIELDS, f"network interface {ifname!r}")
            out[ifname] = {**entry, "tap": {"name": f"vmsilo{n}"}}
        else:
            out[ifname] = entry
    return {**network, "interfaces": out}


def _only(data: dict[Any, Any], known: frozenset[str], what: str) -> None:
    unknown = sorted(set(data) - known, key=repr)
    if unknown:
        raise IdentityError(f"unknown fields of the {what}: {', '.join(map(repr, unknown))}")


def _as_config(identity: dict[str, Any]) -> dict[str, Any]:
    """The identity as a one-VM configuration, so that the host's own rules check it: the
    name, every network value and every share tag, with the option paths the host reports."""
    _only(identity, IDENTITY_FIELDS, "identity")
    index = identity.get("index", 0)
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < MAX_INDEX:
        raise IdentityError(f"index must be a whole number from 0 to {MAX_INDEX - 1}")
    home = identity.get("home", False)
    shares = identity.get("shares", {})
    if not isinstance(home, bool):
        raise IdentityError("home must be true or false")
    if not isinstance(shares, dict):
        raise IdentityError("shares must be an object of tag: read-only")
    vm: dict[str, Any] = {
        "name": identity.get("name"),
        "network": _guest_network(identity.get("network", {})),
        "sharedHome": home,
        # the host path is the host's business; any absolute path lets the rules check the tag
        "sharedDirectories": {tag: {"path": "/", "readonly": ro} for tag, ro in shares.items()},
    }
    return {"user": GUEST_USER, "nixosVms": [vm]}


def _where(problem: Problem, index: int, name: object) -> str:
    """A problem's option path as the host's check writes it: the VM at its own index."""
    segments = problem.segments
    if segments[:2] != ("nixosVms", 0):
        return str(problem)
    names = [None] * index + [name if isinstance(name, str) else None]
    return f"{format_path(('nixosVms', index, *segments[2:]), names)}: {problem.message}"


def plan_setup(identity: dict[str, Any], programs: str | None = None) -> GuestSetup:
    """What to do for this identity (pure: no I/O). Every field is checked with the rules of
    ``vmsilo check``; IdentityError says what is wrong, and then nothing is to be done."""
    raw = _as_config(identity)
    try:
        config = check(raw)
    except ConfigError as e:
        index, name = identity.get("index", 0), identity.get("name")
        problems = "; ".join(_where(p, index, name) for p in e.problems)
        raise IdentityError(f"the VM identity is not valid: {problems}") from None
    vm = config.nixos_vms[0]
    files = guest_networkd(vm, identity.get("index", 0))
    mounts = [Mount(HOME_TAG, HOME_MOUNT, False)] if vm.shared_home is not False else []
    mounts += [
        Mount(tag, f"{SHARES_UNDER}/{tag}", share.readonly)
        for tag, share in sorted(vm.shared_directories.items())
    ]
    return GuestSetup(vm.name, files, tuple(mounts), programs)


def link_programs(profile: str, link: Path, store: Path) -> None:
    """Point ``link`` at the profile, atomically; refuse when the image did not bring it."""
    if not (store / Path(profile).name).is_dir():
        raise VmsiloError(
            f"the program profile {profile} is not in the store: the VM's program image "
            f"(disk {facts.PROGRAMS_DISK_ID}) did not arrive or is not the one the host built"
        )
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(profile)
    os.replace(tmp, link)


def apply(
    setup: GuestSetup,
    network_dir: Path,
    programs_link: Path = Path(facts.PROGRAMS_LINK),
    store: Path = Path("/nix/store"),
) -> None:
    network_dir.mkdir(parents=True, exist_ok=True)
    for name, text in setup.network_files.items():
        tmp = network_dir / f".{name}.tmp"
        tmp.write_text(text)
        os.replace(tmp, network_dir / name)
    socket.sethostname(setup.hostname)
    for m in setup.mounts:
        Path(m.target).mkdir(parents=True, exist_ok=True)
        result = process.run(m.argv())
        if result.returncode != 0:
            raise VmsiloError(f"cannot mount share {m.tag} on {m.target}: {result.stderr.strip()}")
    # last: the VM's network and shares come up even when its image did not
    if setup.programs is not None:
        link_programs(setup.programs, programs_link, store)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_cmdline_argument(parser)
    parser.add_argument(
        "--network-dir",
        default="/run/systemd/network",
        metavar="DIR",
        help="where systemd-networkd files go (default: /run/systemd/network)",
    )
    parser.add_argument(
        "--programs-link",
        default=facts.PROGRAMS_LINK,
        metavar="PATH",
        help=f"the link to the VM's program profile (default: {facts.PROGRAMS_LINK})",
    )
    parser.add_argument(
        "--store",
        default="/nix/store",
        metavar="DIR",
        help="where the program profile must be (default: /nix/store)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would be done as JSON, change nothing"
    )


def run(args: argparse.Namespace) -> int:
    try:
        cmdline = Path(args.cmdline).read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise VmsiloError(f"cannot read {args.cmdline}: {e.strerror}") from None
    try:
        setup = plan_setup(decode_cmdline(cmdline), decode_programs(cmdline))
    except IdentityError as e:
        # One journal line; the unit fails and boot goes on, with no network file written
        # (so networkd configures nothing) and nothing mounted.
        raise IdentityError(f"{e}; nothing is set up: networking stays off") from None
    if args.dry_run:
        print(
            json.dumps(
                {
                    "hostname": setup.hostname,
                    "networkFiles": setup.network_files,
                    "mounts": [m.argv() for m in setup.mounts],
                    "programs": setup.programs,
                },
                indent=2,
            )
        )
        return 0
    apply(setup, Path(args.network_dir), Path(args.programs_link), Path(args.store))
    return 0
