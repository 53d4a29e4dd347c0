"""`vmsilo guest-setup`: run once at boot inside a guest, before udev and systemd-networkd.

It reads the VM's identity from the kernel command line (see ``guest_identity``), writes the
VM's systemd-networkd files (the same text the host plans), sets the hostname and mounts the
VM's virtiofs shares: the home share on /home/user, every other share on /mnt/<tag>.
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
from vmsilo_nix.config.convert import structure
from vmsilo_nix.errors import ConfigError, VmsiloError
from vmsilo_nix.facts import HOME_TAG
from vmsilo_nix.plan.identity import IdentityError, add_cmdline_argument, decode_cmdline
from vmsilo_nix.plan.network import guest_networkd

HOME_MOUNT = facts.GUEST_HOME
SHARES_UNDER = facts.GUEST_SHARES_DIR


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


def plan_setup(identity: dict[str, Any]) -> GuestSetup:
    """What to do for this identity (pure: no I/O)."""
    try:
        config = structure(
            {
                "user": "guest",
                "nixosVms": [
                    {"name": identity.get("name"), "network": identity.get("network", {})}
                ],
            }
        )
    except ConfigError as e:
        raise IdentityError(f"the VM identity does not describe a VM: {e}") from None
    vm = config.nixos_vms[0]
    index = identity.get("index", 0)
    files = guest_networkd(vm, index if isinstance(index, int) else 0)
    mounts = [Mount(HOME_TAG, HOME_MOUNT, False)] if identity.get("home") else []
    shares = identity.get("shares", {})
    if isinstance(shares, dict):
        mounts += [
            Mount(tag, f"{SHARES_UNDER}/{tag}", bool(ro))
            for tag, ro in sorted(shares.items())
            if "/" not in tag and tag not in (".", "..")
        ]
    return GuestSetup(vm.name, files, tuple(mounts))


def apply(setup: GuestSetup, network_dir: Path) -> None:
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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_cmdline_argument(parser)
    parser.add_argument(
        "--network-dir",
        default="/run/systemd/network",
        metavar="DIR",
        help="where systemd-networkd files go (default: /run/systemd/network)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print what would be done as JSON, change nothing"
    )


def run(args: argparse.Namespace) -> int:
    try:
        cmdline = Path(args.cmdline).read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise VmsiloError(f"cannot read {args.cmdline}: {e.strerror}") from None
    setup = plan_setup(decode_cmdline(cmdline))
    if args.dry_run:
        print(
            json.dumps(
                {
                    "hostname": setup.hostname,
                    "networkFiles": setup.network_files,
                    "mounts": [m.argv() for m in setup.mounts],
                },
                indent=2,
            )
        )
        return 0
    apply(setup, Path(args.network_dir))
    return 0
