"""What makes a guest *this* VM, carried on its kernel command line.

VMs with the same guest software share one guest system and one root image, so everything
that differs between them reaches the guest at boot: the name, the overlay type, the shares to
mount, and the network set-up, in one parameter ``vmsilo.config=`` holding base64url of compact
JSON. At boot the guest's ``vmsilo guest-setup`` decodes it and writes the same systemd-networkd
files the host plans (one implementation for both sides), mounts the shares and sets the
hostname. Only options that differ from their defaults are carried, to keep the command line
short; validation counts it against crosvm's 2047 bytes.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import re
from typing import Any

import orjson

from vmsilo_nix import facts
from vmsilo_nix.assignments import last_assignment, split_assignment
from vmsilo_nix.config.model import Vm
from vmsilo_nix.config.naming import mac_of
from vmsilo_nix.errors import VmsiloError

PARAM = facts.PARAM_CONFIG


class IdentityError(VmsiloError):
    """The kernel command line carries no usable vmsilo identity."""


def payload(vm: Vm, index: int) -> dict[str, Any]:
    interfaces: dict[str, dict[str, Any]] = {}
    for ifname, iface in sorted(vm.network.interfaces.items()):
        try:
            mac = mac_of(vm, ifname, iface)
        except ValueError:  # validation reports it; here only the length matters
            mac = str(iface.mac_address)
        entry: dict[str, Any] = {"macAddress": mac}
        if iface.dhcp:
            entry["dhcp"] = True
        for key, value in (("addresses", iface.addresses), ("v6Addresses", iface.v6_addresses)):
            if value:
                entry[key] = list(value)
        for key, routes in (("routes", iface.routes), ("v6Routes", iface.v6_routes)):
            if routes:
                entry[key] = {dest: {"via": r.via} for dest, r in sorted(routes.items())}
        interfaces[ifname] = entry
    network: dict[str, Any] = {}
    if vm.network.nameservers:
        network["nameservers"] = list(vm.network.nameservers)
    if interfaces:
        network["interfaces"] = interfaces
    return {
        "name": vm.name,
        "index": index,
        "home": vm.shared_home is not False,
        "shares": {tag: s.readonly for tag, s in sorted(vm.shared_directories.items())},
        "network": network,
    }


def programs_param(profile: str) -> str:
    """``vmsilo.programs=PROFILE``: the VM's program profile, inside the image crosvm attaches.
    A plain parameter beside ``vmsilo.config``, because stage 1 reads it without Python."""
    return f"{facts.PARAM_PROGRAMS}={profile}"


# A store path as Nix names one: 32 base-32 characters, a dash, a name of Nix's characters.
_STORE_PATH = re.compile(r"/nix/store/[0-9a-df-np-sv-z]{32}-[A-Za-z0-9+._?=-]{1,211}")


def decode_programs(cmdline: str) -> str | None:
    """The program profile the kernel command line names, or None when the VM has none."""
    found = None
    for word in cmdline.split():
        key, value = split_assignment(word)
        if key != facts.PARAM_PROGRAMS or value is None:
            continue
        if found is not None:
            raise IdentityError(f"{facts.PARAM_PROGRAMS} is on the kernel command line twice")
        if not _STORE_PATH.fullmatch(value) or value.endswith(("/.", "/..")):
            raise IdentityError(f"{facts.PARAM_PROGRAMS}={value[:120]!r} is not a store path")
        found = value
    return found


def encode(data: dict[str, Any]) -> str:
    # Compact, sorted JSON (orjson: one call per VM, a tenth of the json module's cost).
    text = orjson.dumps(data, option=orjson.OPT_SORT_KEYS)
    return base64.urlsafe_b64encode(text).decode().rstrip("=")


def param(vm: Vm, index: int) -> str:
    return f"{PARAM}={encode(payload(vm, index))}"


def decode_cmdline(cmdline: str) -> dict[str, Any]:
    """The identity in a kernel command line (the text of /proc/cmdline)."""
    value = last_assignment(cmdline.split(), PARAM)
    if value is None:
        raise IdentityError(f"no {PARAM}= on the kernel command line: is this a vmsilo guest?")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError) as e:
        raise IdentityError(f"{PARAM} on the kernel command line is damaged: {e}") from None
    except RecursionError:  # JSON nested deeper than Python's parser goes
        raise IdentityError(f"{PARAM} on the kernel command line is nested too deeply") from None
    if not isinstance(data, dict):
        raise IdentityError(f"{PARAM} on the kernel command line is not an object")
    return data


def add_cmdline_argument(parser: argparse.ArgumentParser) -> None:
    """``--cmdline FILE``, for guest programs that read the kernel command line (tests pass a
    file of their own)."""
    parser.add_argument(
        "--cmdline",
        default="/proc/cmdline",
        metavar="FILE",
        help="where to read the kernel command line (default: /proc/cmdline)",
    )
