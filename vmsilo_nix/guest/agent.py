"""The guest's command agent: runs what ``vm-run`` and ``vm-shell`` ask for.

It runs in the guest as root (a systemd service), listens on a privileged vsock port, serves only
the host and runs every command as the unprivileged guest user (see :mod:`.spawn`). This module
is the server and its command line; one connection is served by :mod:`.connection`, and
auto-shutdown is :mod:`.idle`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import shlex
import signal
import socket
import threading
from pathlib import Path
from types import FrameType

from vmsilo_nix.channel.protocol import (
    ChannelError,
    Error,
    encode,
    env_items,
)
from vmsilo_nix.channel.transport import (
    DEFAULT_PORT,
    PRIVILEGED_PORT_LIMIT,
    Address,
    Listener,
    UnixAddress,
    VsockAddress,
)
from vmsilo_nix.guest.connection import DEFAULT_PATH, AgentConfig, Session, command_for, describe
from vmsilo_nix.guest.idle import (
    CMDLINE_KEY,
    DEFAULT_POWEROFF,
    IdleShutdown,
    cmdline_auto_shutdown,
    run_poweroff,
)
from vmsilo_nix.guest.spawn import GuestUser
from vmsilo_nix.plan.identity import add_cmdline_argument
from vmsilo_nix.sd_notify import notify_ready

__all__ = [
    "Agent",
    "AgentConfig",
    "IdleShutdown",
    "Session",
    "add_arguments",
    "cmdline_auto_shutdown",
    "command_for",
    "describe",
    "run_agent",
    "run_poweroff",
]

log = logging.getLogger("vmsilo.channel")

DEFAULT_USER = "user"


# --- the server -----------------------------------------------------------------------------


class Agent:
    """Accepts connections and runs one :class:`Session` thread per connection."""

    def __init__(
        self,
        listener: Listener,
        config: AgentConfig,
        *,
        idle: IdleShutdown | None = None,
        tick: float = 0.5,
    ) -> None:
        self.listener = listener
        self.config = config
        self.idle = idle
        self.tick = tick
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sessions: dict[Session, threading.Thread] = {}

    def stop(self) -> None:
        self._stop.set()

    def serve_forever(self) -> None:
        """Serve until :meth:`stop`; then stop every running command and return."""
        try:
            while not self._stop.is_set():
                if self.idle is not None:
                    self.idle.check()
                accepted = self.listener.accept(self.tick)
                if accepted is not None:
                    self._start(*accepted)
        finally:
            self.listener.close()
            self._abort_all()

    def _start(self, conn: socket.socket, peer: str) -> None:
        with self._lock:
            if len(self._sessions) >= self.config.max_connections:
                log.warning("%s: refused: %d connections already", peer, len(self._sessions))
                with contextlib.suppress(OSError):
                    conn.settimeout(1.0)
                    conn.sendall(encode(Error("too many commands at once; try again later")))
                conn.close()
                return
            if self.idle is not None:
                self.idle.begin()
            session = Session(conn, peer, self.config)
            thread = threading.Thread(
                target=self._run_session, args=(session,), name=f"session {peer}", daemon=True
            )
            self._sessions[session] = thread
        thread.start()

    def _run_session(self, session: Session) -> None:
        try:
            session.serve()
        except Exception:
            log.exception("%s: the session failed", session.peer)
        finally:
            with self._lock:
                del self._sessions[session]
            if self.idle is not None:
                self.idle.end()

    def _abort_all(self) -> None:
        with self._lock:
            sessions = dict(self._sessions)
        for session in sessions:
            session.abort()
        for thread in sessions.values():
            thread.join(self.config.grace + self.config.drain_timeout + 5.0)


# --- command line ---------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``vmsilo channel agent``."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"listen on this vsock port, serving only the host (default: {DEFAULT_PORT})",
    )
    where.add_argument(
        "--listen-unix", metavar="PATH", help="listen on a Unix socket instead (for tests)"
    )
    parser.add_argument(
        "--user",
        default=DEFAULT_USER,
        help=f"the unprivileged user commands run as (default: {DEFAULT_USER}); never root",
    )
    parser.add_argument(
        "--session-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a variable of the VM's session every command gets, e.g. WAYLAND_DISPLAY=wayland-0 "
        "(repeatable); the client's own variables override it",
    )
    parser.add_argument(
        "--path",
        default=DEFAULT_PATH,
        help="the commands' PATH; {user} and {home} are replaced (default: NixOS's user PATH)",
    )
    parser.add_argument(
        "--auto-shutdown",
        type=float,
        metavar="SECONDS",
        help=f"power off this long after the last command ended (default: the kernel "
        f"command line's {CMDLINE_KEY}=SECONDS; without it, never)",
    )
    add_cmdline_argument(parser)
    parser.add_argument(
        "--poweroff-command",
        default=shlex.join(DEFAULT_POWEROFF),
        metavar="CMD",
        help=f"how to power off (default: {shlex.join(DEFAULT_POWEROFF)})",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=64,
        help="connections served at once; more are refused (default: 64)",
    )


def auto_shutdown_seconds(args: argparse.Namespace) -> float | None:
    if args.auto_shutdown is not None:
        return float(args.auto_shutdown) if args.auto_shutdown >= 0 else None
    try:
        return cmdline_auto_shutdown(Path(args.cmdline).read_text())
    except OSError as err:
        log.warning("cannot read %s: %s; auto-shutdown is off", args.cmdline, err.strerror)
        return None


def run_agent(args: argparse.Namespace) -> int:
    """``vmsilo channel agent``: serve until SIGTERM or SIGINT. Exit status 0 when stopped."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    address: Address = (
        UnixAddress(args.listen_unix) if args.listen_unix else VsockAddress(0, args.port)
    )
    if isinstance(address, VsockAddress) and not 0 < address.port < PRIVILEGED_PORT_LIMIT:
        # Below 1024 only root (CAP_NET_BIND_SERVICE) can bind: no guest process can take the
        # port before the agent does and receive the host's commands and input.
        raise ChannelError(
            f"--port {address.port}: the agent's vsock port must be below "
            f"{PRIVILEGED_PORT_LIMIT}, so that only root can listen on it"
        )
    # Bound first, before anything else the agent does (nothing runs as the user until it is).
    try:
        listener = Listener(address)
    except OSError as err:
        raise ChannelError(f"cannot listen on {address}: {err.strerror}") from err
    try:
        user = GuestUser.lookup(args.user)
        user.check()
        config = AgentConfig(
            user=user,
            session_env=env_items(args.session_env, "--session-env"),
            path=args.path,
            max_connections=args.max_connections,
        )
        after = auto_shutdown_seconds(args)
        idle = (
            IdleShutdown(after, run_poweroff(shlex.split(args.poweroff_command)))
            if after is not None
            else None
        )
    except BaseException:
        listener.close()
        raise
    agent = Agent(listener, config, idle=idle)

    def stop(signum: int, frame: FrameType | None) -> None:
        agent.stop()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    log.info(
        "serving %s; commands run as %s; auto-shutdown %s",
        address if args.listen_unix else f"vsock port {args.port} (host only)",
        user.name,
        f"after {after:g} s idle" if after is not None else "off",
    )
    notify_ready()
    try:
        agent.serve_forever()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
