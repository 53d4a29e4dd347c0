"""The ``vmsilo-balloond`` command: the daemon, ``--dry-run``, and ``--status``."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from vmsilo_nix import facts
from vmsilo_nix.assignments import split_assignment
from vmsilo_nix.config import values
from vmsilo_nix.sd_notify import notify_ready

from . import sources
from .crosvm_ctl import DEFAULT_TIMEOUT, CrosvmControl
from .daemon import Daemon, Settings, VmSpec, log
from .policy import MIB, Params

#: Where the state file goes: systemd's RuntimeDirectory= of the unit when it set one, and the
#: same place (the module's RuntimeDirectory) for --status outside the unit.
STATE_NAME: Final = "state.json"
DEFAULT_RUNTIME_DIR: Final = f"/run/{facts.BALLOOND_RUNTIME_DIRECTORY}"
TRACE: Final = 5
LEVELS: Final = {
    "error": logging.ERROR,
    "warn": logging.WARNING,
    "info": logging.INFO,
    "debug": logging.DEBUG,
    "trace": TRACE,
}


def default_state_file() -> Path:
    runtime = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0] or DEFAULT_RUNTIME_DIR
    return Path(runtime) / STATE_NAME


def _parsed(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    return convert


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a percentage, got {text!r}") from None
    if not 0 <= value <= 100:
        raise ValueError(f"must be a percentage from 0 to 100, got {text}")
    return value


def _pair(what: str, parse: Callable[[str], Any]) -> Callable[[str], tuple[str, Any]]:
    def split(text: str) -> tuple[str, Any]:
        # A VM name never holds "=", so the value (a socket path) may.
        name, rest = split_assignment(text)
        if not name or not rest:
            raise ValueError(f"expected NAME={what}, got {text!r}")
        return name, parse(rest)

    return split


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vmsilo-balloond",
        description="Move memory between the host and vmsilo's VMs with the virtio balloon: "
        "each VM's balloon grows while the VM has more memory to spare than the host, and "
        "shrinks while it has less.",
    )
    size, duration = _parsed(values.parse_size), _parsed(values.parse_duration)
    p.add_argument("--log-level", choices=list(LEVELS), default="info")
    p.add_argument(
        "--poll-interval",
        type=duration,
        default=2.0,
        metavar="DURATION",
        help="interval when the host is calm (default 2s)",
    )
    p.add_argument(
        "--min-poll-interval",
        type=duration,
        default=0.25,
        metavar="DURATION",
        help="interval at --psi-ceiling pressure (default 250ms)",
    )
    p.add_argument(
        "--critical-host-percent",
        type=_parsed(_percent),
        default=5.0,
        metavar="PERCENT",
        help="host memory level to keep available (default 5)",
    )
    p.add_argument(
        "--critical-guest-available",
        type=size,
        default=256 * MIB,
        metavar="SIZE",
        help="a guest's floor: inflation never goes below it (default 256m)",
    )
    p.add_argument(
        "--guest-available-bias",
        type=size,
        default=400 * MIB,
        metavar="SIZE",
        help="extra guest margin, scaled by balloon fullness (default 400m)",
    )
    p.add_argument(
        "--psi-ceiling",
        type=_parsed(_percent),
        default=25.0,
        metavar="PERCENT",
        help="host PSI some avg10 at which --min-poll-interval is reached",
    )
    p.add_argument(
        "--vm",
        type=_parsed(_pair("CONTROL_SOCKET", str)),
        action="append",
        default=[],
        metavar="NAME=CONTROL_SOCKET",
        help="a VM's crosvm control socket",
    )
    p.add_argument(
        "--vm-memory",
        type=_parsed(_pair("SIZE", values.parse_size)),
        action="append",
        default=[],
        metavar="NAME=SIZE",
        help="a VM's configured memory (every --vm needs one)",
    )
    p.add_argument(
        "--max-step",
        type=size,
        default=512 * MIB,
        metavar="SIZE",
        help="most a balloon moves in one tick (default 512m)",
    )
    p.add_argument(
        "--crosvm",
        default="crosvm",
        metavar="PROGRAM",
        help="the crosvm program (default: crosvm on PATH)",
    )
    p.add_argument(
        "--timeout",
        type=duration,
        default=DEFAULT_TIMEOUT,
        metavar="DURATION",
        help="most one crosvm call may take (default 1s)",
    )
    p.add_argument(
        "--dry-run", action="store_true", help="print the decisions instead of moving any balloon"
    )
    p.add_argument("--once", action="store_true", help="one round, then exit")
    p.add_argument(
        "--state-file",
        type=Path,
        default=None,
        metavar="PATH",
        help=f"where each round is recorded (default $RUNTIME_DIRECTORY/{STATE_NAME}"
        f" or {DEFAULT_RUNTIME_DIR}/{STATE_NAME})",
    )
    p.add_argument(
        "--status",
        action="store_true",
        help="show each VM's balloon target, actual size and reason, and exit",
    )
    p.add_argument("--json", action="store_true", help="with --status: the state as JSON")
    p.add_argument("--meminfo", type=Path, default=sources.MEMINFO, help=argparse.SUPPRESS)
    p.add_argument("--pressure", type=Path, default=sources.PSI_MEMORY, help=argparse.SUPPRESS)
    return p


def _vms(p: argparse.ArgumentParser, args: argparse.Namespace) -> list[VmSpec]:
    sockets: dict[str, str] = {}
    for name, socket in args.vm:
        if name in sockets:
            p.error(f"--vm {name} is given twice")
        sockets[name] = socket
    memory = dict(args.vm_memory)
    if missing := [n for n in sockets if n not in memory]:
        p.error(f"--vm-memory is missing for {', '.join(missing)}")
    if extra := [n for n in memory if n not in sockets]:
        p.error(f"--vm-memory names {', '.join(extra)}, which has no --vm")
    return [VmSpec(name=n, socket=s, memory=memory[n]) for n, s in sockets.items()]


def _mib(value: Any) -> str:
    return "-" if value is None else f"{value // MIB} MiB"


def status(path: Path, as_json: bool) -> int:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        print(f"vmsilo-balloond: no state at {path}: {err}", file=sys.stderr)
        return 1
    if as_json:
        print(json.dumps(state, indent=2))
        return 0
    try:
        lines = _status_lines(state)
    except (AttributeError, TypeError, KeyError):
        print(f"vmsilo-balloond: {path} is not a state file this version wrote", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


def _status_lines(state: Any) -> list[str]:
    host = state.get("host") or {}
    psi = state.get("psi_some_avg10")
    out = [
        f"host: {_mib(host.get('available'))} available of {_mib(host.get('total'))}, "
        f"pressure {'-' if psi is None else f'{psi:.2f}%'}, every {state.get('interval', 0):g}s"
        + (" (dry run)" if state.get("dry_run") else "")
    ]
    rows = [("VM", "STATUS", "MEMORY", "BALLOON", "TARGET", "AVAILABLE", "REASON")]
    for name, vm in state.get("vms", {}).items():
        rows.append(
            (
                name,
                vm.get("status", "?") + (" (held)" if vm.get("held") else ""),
                _mib(vm.get("memory")),
                _mib(vm.get("actual")),
                _mib(vm.get("target")),
                _mib(vm.get("available")),
                vm.get("reason", ""),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(6)]
    for r in rows:
        out.append("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[6])
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    state_file = args.state_file or default_state_file()
    if args.status:
        return status(state_file, args.json)
    if args.min_poll_interval > args.poll_interval:
        p.error("--min-poll-interval must not be longer than --poll-interval")
    if args.psi_ceiling <= 0:
        p.error("--psi-ceiling must be above 0")
    logging.basicConfig(
        level=LEVELS[args.log_level], format="%(levelname)s: %(message)s", stream=sys.stderr
    )
    logging.addLevelName(TRACE, "TRACE")
    settings = Settings(
        params=Params(
            critical_host_percent=args.critical_host_percent,
            critical_guest_available=args.critical_guest_available,
            guest_available_bias=args.guest_available_bias,
            max_step=args.max_step,
        ),
        poll_interval=args.poll_interval,
        min_poll_interval=args.min_poll_interval,
        psi_ceiling=args.psi_ceiling,
        dry_run=args.dry_run,
    )
    daemon = Daemon(
        settings=settings,
        vms=_vms(p, args),
        control=CrosvmControl(args.crosvm, args.timeout),
        read_host=lambda: sources.read_host(args.meminfo),
        read_psi=lambda: sources.read_psi(args.pressure),
        state_file=None if args.dry_run and args.state_file is None else state_file,
    )
    log.info(
        "watching %d VMs%s",
        len(daemon.vms),
        " (dry run: no balloon is moved)" if args.dry_run else "",
    )
    if args.once:
        daemon.tick()
        daemon.close()
        return 0
    stopping: list[int] = []
    r, w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(w)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda n, _f: stopping.append(n))
    waker = sources.Waker(wake_fd=r, psi_path=args.pressure)
    if (why := waker.arm()) is not None:
        log.warning("no memory pressure trigger (%s): waking on the timer only", why)
    notify_ready()
    try:
        daemon.run(waker.sleep, lambda: bool(stopping))
    finally:
        waker.close()
        daemon.close()
    log.info("stopping; the balloons stay as they are")
    return 0


def run() -> None:
    """The console script: exit with main's status."""
    sys.exit(main())
