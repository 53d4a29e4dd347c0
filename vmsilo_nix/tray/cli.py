"""``vmsilo-tray`` (host) and ``vmsilo-tray-guest`` (guest): the tray's two console scripts."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import re
import signal
import sys
from collections.abc import Coroutine, Sequence
from typing import Any

from vmsilo_nix.assignments import split_assignment
from vmsilo_nix.channel.transport import Address
from vmsilo_nix.errors import VmsiloError

from .host import TrayHost, VmSpec
from .protocol import DEFAULT_PORT
from .transport import parse_address

#: The levels of ``vmsilo-tray.logLevel`` as Python's logging levels (trace: D-Bus too).
LOG_LEVELS = {
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": 5,
}


def _log_level(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        choices=list(LOG_LEVELS),
        default="info",
        help="what to log on standard error (default: info)",
    )


def _setup_logging(level: str) -> None:
    logging.addLevelName(5, "TRACE")
    logging.basicConfig(
        level=LOG_LEVELS[level], format="%(name)s %(levelname)s %(message)s", stream=sys.stderr
    )
    # dbus-fast logs every message at debug: only at trace.
    logging.getLogger("dbus_fast").setLevel(5 if level == "trace" else logging.WARNING)


_COLOUR = re.compile(r"#([0-9a-fA-F]{2})([0-9a-fA-F]{2})([0-9a-fA-F]{2})")


def parse_vm(text: str) -> tuple[str, tuple[int, int, int], Address]:
    """``NAME=#RRGGBB,ADDRESS`` (the plan normalises the colour): a VM name never holds ``=``,
    a colour never ``,``."""
    name, rest = split_assignment(text)
    colour, comma, address = (rest or "").partition(",")
    if not (name and comma):
        raise ValueError(f"--vm {text!r}: expected NAME=#RRGGBB,ADDRESS")
    m = _COLOUR.fullmatch(colour)
    if m is None:
        raise ValueError(f"--vm {text!r}: {colour!r} is not a colour (#rrggbb)")
    r, g, b = (int(c, 16) for c in m.groups())
    try:
        return name, (r, g, b), parse_address(address)
    except ValueError as err:
        raise ValueError(f"--vm {text!r}: {err}") from None


def _run(main: Coroutine[Any, Any, None]) -> int:
    async def runner() -> None:
        task = asyncio.ensure_future(main)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    try:
        asyncio.run(runner())
    except (OSError, ConnectionError, VmsiloError) as err:
        logging.getLogger("vmsilo.tray").error("%s", err)
        return 1
    return 0


def host_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vmsilo-tray",
        description="Show the tray icons of the VMs' guests on this host session's panel, each "
        "titled with its VM's name and framed in its VM's colour.",
    )
    _log_level(parser)
    parser.add_argument(
        "--vm",
        action="append",
        default=[],
        metavar="NAME=#RRGGBB,ADDRESS",
        help="a VM to show icons of: its colour and where its guest listens "
        f"(vsock:CID[:PORT], default port {DEFAULT_PORT}, or unix:PATH); repeatable",
    )
    args = parser.parse_args(argv)
    try:
        vms = [parse_vm(v) for v in args.vm]
    except ValueError as err:
        parser.error(str(err))
    _setup_logging(args.log_level)
    host = TrayHost([VmSpec(n, c, a) for n, c, a in vms])
    return _run(host.run())


def guest_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="vmsilo-tray-guest",
        description="Be the StatusNotifierWatcher of this guest session and pass its tray "
        "items to the host.",
    )
    _log_level(parser)
    parser.add_argument(
        "--listen",
        default=f"vsock::{DEFAULT_PORT}",
        metavar="ADDRESS",
        help=f"where the host connects: vsock::PORT or unix:PATH (default: vsock::{DEFAULT_PORT})",
    )
    args = parser.parse_args(argv)
    try:
        listen = parse_address(args.listen)
    except ValueError as err:
        parser.error(str(err))
    _setup_logging(args.log_level)
    from .guest import run_guest  # noqa: PLC0415 - only the guest loads Pillow

    return _run(run_guest(listen))
