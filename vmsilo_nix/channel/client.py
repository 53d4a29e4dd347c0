"""The host side of the channel: ``vmsilo channel run`` and ``vmsilo channel shell``.

A client connects to the guest's agent, waits for its HELLO, sends START and then,
concurrently: forwards its standard input (STDIN frames, STDIN_EOF at its end), forwards
SIGINT, SIGTERM and SIGHUP as SIGNAL frames (a third one gives up: the connection closes and
the agent kills the command; while our own output is blocked, the first one gives up after a
short grace), and, for a shell, puts the terminal in raw mode and forwards size changes;
meanwhile it writes STDOUT and STDERR to its own, and ends with the status of EXIT (128 + N for
signal N). The session itself is :mod:`.session`.

The guest is not trusted. Every frame is bounded by the protocol. For ``run``, output bound for
a terminal goes through :class:`~vmsilo_nix.channel.terminal.TerminalFilter`, so a guest cannot
retitle the window, rewrite the screen or a line already shown, reorder text or talk to the
terminal's more dangerous features; output to a pipe or a file passes unchanged, since scripts
need the exact bytes. A shell's output is not filtered: the user asked for the guest's terminal.

The channel's own failures (no agent, broken connection, a protocol violation) end the client
with status 255, as ssh does, so they cannot be mistaken for the command's status.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import sys
import termios
import threading
import tty
from collections.abc import Iterator, Mapping, Sequence
from types import FrameType
from typing import Any

from vmsilo_nix.channel.protocol import (
    ChannelError,
    Start,
    env_items,
)
from vmsilo_nix.channel.session import EXIT_CHANNEL, OutputAbandoned, Session
from vmsilo_nix.channel.terminal import MAX_SEQUENCE, TerminalFilter, neutralise
from vmsilo_nix.channel.transport import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_PORT,
    Address,
    UnixAddress,
    VsockAddress,
)
from vmsilo_nix.channel.transport import connect as connect_to

__all__ = [
    "EXIT_CHANNEL",
    "MAX_SEQUENCE",
    "Session",
    "TerminalFilter",
    "add_arguments",
    "neutralise",
    "run",
    "run_command",
]

#: Signals forwarded to the command; after this many the client gives up waiting.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
GIVE_UP_AFTER = 3
#: While our own output is blocked (nobody reads it), the command's end could never reach us:
#: a forwarded signal then gives up after this many seconds if the output is still blocked.
BLOCKED_GRACE = 2.0
#: Host variables a shell takes along (the guest's own session provides the rest).
TTY_ENV = ("TERM", "COLORTERM")


# --- running a command ----------------------------------------------------------------------


def terminal_size(*fds: int) -> tuple[int, int]:
    """Rows and columns of the first terminal among ``fds`` (24 x 80 when none is)."""
    for fd in fds:
        with contextlib.suppress(OSError):
            size = os.get_terminal_size(fd)
            return size.lines, size.columns
    return 24, 80


@contextlib.contextmanager
def _raw_terminal(fd: int | None) -> Iterator[None]:
    if fd is None or not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextlib.contextmanager
def _forwarding_signals(session: Session, *, winch_fds: Sequence[int]) -> Iterator[None]:
    """SIGINT, SIGTERM, SIGHUP go to the command; the third gives up. While our stdout or
    stderr is blocked, one of them gives up after BLOCKED_GRACE seconds if it stays blocked, so
    that a client whose output nobody reads still ends. With ``winch_fds`` (a shell on a
    terminal) size changes follow. Only possible in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    count = 0
    blocked_by: int | None = None  # the signal that found the output blocked

    def give_up(signum: int) -> None:
        session.abort(128 + signum)
        _say(b"\r\nvmsilo channel: giving up; the command is being stopped\r\n")
        if session.writing:
            raise OutputAbandoned  # out of the blocked write, into Session.run

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal count, blocked_by
        count += 1
        if count >= GIVE_UP_AFTER:
            give_up(signum)
            return
        session.send_signal(signal.Signals(signum).name.removeprefix("SIG"))
        if session.writing and blocked_by is None:
            blocked_by = signum
            signal.setitimer(signal.ITIMER_REAL, BLOCKED_GRACE)

    def alarm(_signum: int, _frame: FrameType | None) -> None:
        nonlocal blocked_by
        if blocked_by is not None and session.writing:
            give_up(blocked_by)
        blocked_by = None  # it drained meanwhile: the command's end can reach us

    def winch(_signum: int, _frame: FrameType | None) -> None:
        session.resize(*terminal_size(*winch_fds))

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    previous[signal.SIGALRM] = signal.signal(signal.SIGALRM, alarm)
    if winch_fds:
        previous[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, winch)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _say(text: bytes) -> None:
    """A line to stderr only when that cannot block: stderr may be the very pipe nobody reads."""
    with contextlib.suppress(OSError, ValueError):
        _, ready, _ = select.select([], [2], [], 0)
        if ready:
            os.write(2, text)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def run_command(
    address: Address,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    tty: bool = False,
    stdin: int | None = 0,
    stdout: int = 1,
    stderr: int = 2,
    filter_output: bool | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    interactive: bool = True,
) -> int:
    """Run ``argv`` (empty: the guest user's login shell) in the guest; its exit status.

    ``filter_output`` (default: for a command without a pseudo-terminal) filters each of
    stdout and stderr that is a terminal. ``interactive`` forwards signals (main thread only)
    and, with ``tty``, puts a terminal stdin in raw mode.
    """
    if filter_output is None:
        filter_output = not tty
    if stdin is not None and not _is_open(stdin):
        stdin = None  # started with stdin closed: the command gets an empty input
    rows, cols = terminal_size(stdout, *([stdin] if stdin is not None else []))
    start = Start(argv=tuple(argv), env=dict(env or {}), cwd=cwd, tty=tty, rows=rows, cols=cols)
    sock = connect_to(address, timeout=connect_timeout)
    session = Session(
        sock,
        start,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        filter_stdout=filter_output and os.isatty(stdout),
        filter_stderr=filter_output and os.isatty(stderr),
    )
    if not interactive:
        return session.run()
    winch = [fd for fd in (stdin, stdout) if fd is not None and os.isatty(fd)] if tty else []
    with _forwarding_signals(session, winch_fds=winch), _raw_terminal(stdin if tty else None):
        return session.run()


# --- command line ---------------------------------------------------------------------------


def _address_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--cid", type=int, help="the VM's vsock context id")
    where.add_argument("--unix", metavar="PATH", help="an agent's Unix socket instead (tests)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"the agent's port (default: {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a variable for the command (repeatable); the host's environment is not passed",
    )
    parser.add_argument(
        "--cwd", metavar="DIR", help="the guest directory to run in (default: the user's home)"
    )
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=DEFAULT_CONNECT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long to wait for the agent while the VM boots "
        f"(default: {DEFAULT_CONNECT_TIMEOUT:g})",
    )


def add_arguments(parser: argparse.ArgumentParser) -> argparse._SubParsersAction[Any]:
    """The host's subcommands of ``vmsilo channel``: ``run`` and ``shell``."""
    sub = parser.add_subparsers(dest="channel_command", required=True, metavar="COMMAND")
    run_p = sub.add_parser(
        "run",
        help="run a command in a VM (what vm-run does)",
        description="Run CMD in the guest as its user and return its exit status. Output to a "
        "terminal is stripped of escape sequences; output to a pipe or file is exact.",
    )
    _address_arguments(run_p)
    run_p.add_argument(
        "-t",
        "--tty",
        action="store_true",
        help="run CMD on a pseudo-terminal (for full-screen programs); its output is then "
        "passed to your terminal unfiltered",
    )
    run_p.add_argument("argv", nargs="+", metavar="CMD", help="the command and its arguments")
    shell_p = sub.add_parser(
        "shell",
        help="an interactive login shell in a VM (what vm-shell does)",
        description="Start the guest user's login shell on a pseudo-terminal.",
    )
    _address_arguments(shell_p)
    return sub


def run(args: argparse.Namespace) -> int:
    """``vmsilo channel run|shell``: the command's exit status, or 255 when the channel failed."""
    shell = args.channel_command == "shell"
    try:
        address: Address = (
            UnixAddress(args.unix) if args.unix else VsockAddress(args.cid, args.port)
        )
        env = env_items(args.env, "--env")
        use_tty = shell or args.tty
        if use_tty:
            for name in TTY_ENV:
                if name in os.environ:
                    env.setdefault(name, os.environ[name])
        return run_command(
            address,
            [] if shell else args.argv,
            env=env,
            cwd=args.cwd,
            tty=use_tty,
            connect_timeout=args.connect_timeout,
        )
    except ChannelError as err:
        print(f"vmsilo channel: {err}", file=sys.stderr)
        return EXIT_CHANNEL
