"""The guest's command agent: runs what ``vm-run`` and ``vm-shell`` ask for.

It runs in the guest as root (a systemd service), listens on a vsock port, serves only the host
and runs every command as the unprivileged guest user (see :mod:`.spawn`). Each connection is
one command, served by its own thread: the command's output is streamed back as it comes, its
input and signals are forwarded, and its exit status ends the connection. When the client goes
away before the command ends, the command's process group gets SIGHUP and, after a grace
period, SIGKILL. When the command ends, whatever is left of its group is killed too, so nothing
a command started outlives it unseen (and auto-shutdown's idea of "running" stays true).

A malformed or oversized message, or a first message that is not START, closes that
connection (with an ERROR frame saying why, and a log line); the other connections go on.

With auto-shutdown the agent powers the VM off ``after`` seconds after the last connection
ended; a connection arriving in between cancels it. The agent counts connections rather than
commands, so a command about to start holds the VM up too. The clock is injectable
(:class:`IdleShutdown`), which is how the tests control time.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import select
import selectors
import shlex
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType

import attrs

from vmsilo_nix import facts, process
from vmsilo_nix.assignments import last_assignment
from vmsilo_nix.channel.protocol import (
    FROM_CLIENT,
    SIGNALS,
    ChannelError,
    Error,
    Exit,
    FrameReader,
    Message,
    MessageType,
    ProtocolError,
    Resize,
    Signal,
    Start,
    Stdin,
    StdinEof,
    encode,
    env_items,
    frame,
)
from vmsilo_nix.channel.transport import DEFAULT_PORT, Address, Listener, UnixAddress, VsockAddress
from vmsilo_nix.errors import VmsiloError
from vmsilo_nix.guest.spawn import Child, Command, GuestUser, spawn
from vmsilo_nix.plan.identity import add_cmdline_argument
from vmsilo_nix.sd_notify import notify_ready

log = logging.getLogger("vmsilo.channel")

DEFAULT_USER = "user"
CMDLINE_KEY = facts.PARAM_AUTOSHUTDOWN
DEFAULT_POWEROFF = ("systemctl", "poweroff")
# Directories of a NixOS user's PATH, then the usual ones for other systems.
DEFAULT_PATH = (
    "/run/wrappers/bin:{home}/.nix-profile/bin:/nix/profile/bin:/etc/profiles/per-user/{user}/bin"
    ":/nix/var/nix/profiles/default/bin:/run/current-system/sw/bin:/usr/local/bin:/usr/bin:/bin"
)

READ_SIZE = 64 * 1024
STDIN_HIGH_WATER = 256 * 1024  # buffered input for a slow command before we stop reading


@attrs.frozen
class AgentConfig:
    user: GuestUser
    #: The VM's session environment (Wayland display, runtime directory, ...), below the
    #: client's own variables and above the defaults.
    session_env: Mapping[str, str] = attrs.field(factory=dict)
    path: str = DEFAULT_PATH
    start_timeout: float = 10.0  # seconds a connection may take to send START
    grace: float = 2.0  # seconds between SIGHUP and SIGKILL when a client goes away
    drain_timeout: float = 1.0  # seconds to collect output after the command exited
    linger: float = 5.0  # seconds to wait for the client to close after EXIT
    max_connections: int = 64


# --- auto-shutdown ----------------------------------------------------------------------------


class IdleShutdown:
    """Calls ``poweroff`` once, ``after`` seconds into a stretch with no connection.

    The first stretch starts when the agent does: a VM nobody runs anything in also stops.
    :meth:`check` must be called now and then (the agent does, every tick); it uses ``clock``,
    so tests can move time by hand.
    """

    def __init__(
        self,
        after: float,
        poweroff: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.after = after
        self._poweroff = poweroff
        self._clock = clock
        self._lock = threading.Lock()
        self._active = 0
        self._idle_since: float | None = clock()
        self.fired = False

    def begin(self) -> None:
        with self._lock:
            self._active += 1
            self._idle_since = None

    def end(self) -> None:
        with self._lock:
            self._active -= 1
            if self._active == 0:
                self._idle_since = self._clock()

    @property
    def active(self) -> int:
        return self._active

    def deadline(self) -> float | None:
        """When the VM powers off unless something starts (None: something is running)."""
        with self._lock:
            return None if self._idle_since is None else self._idle_since + self.after

    def check(self) -> bool:
        """Power off when the idle time is up; True when this call did it."""
        with self._lock:
            due = (
                not self.fired
                and self._idle_since is not None
                and self._clock() >= self._idle_since + self.after
            )
            if due:
                self.fired = True
        if due:
            log.info("no command for %g s: powering off", self.after)
            self._poweroff()
        return due


def cmdline_auto_shutdown(cmdline: str) -> float | None:
    """The ``vmsilo.autoshutdown=SECONDS`` of a kernel command line (the last one wins, as
    for the kernel's own parameters); None when absent or invalid."""
    value = last_assignment(cmdline.split(), CMDLINE_KEY)
    if value is None:
        return None
    try:
        seconds = int(value)
    except ValueError:
        log.warning("ignoring %s=%s: not a whole number of seconds", CMDLINE_KEY, value)
        return None
    if seconds < 0:
        log.warning("ignoring %s=%s: negative", CMDLINE_KEY, value)
        return None
    return float(seconds)


def run_poweroff(argv: Sequence[str]) -> Callable[[], None]:
    def poweroff() -> None:
        try:
            result = process.run(argv)
        except VmsiloError as err:
            log.error("cannot power off: %s", err)
            return
        if result.returncode != 0:
            log.error(
                "%s failed with status %d: %s",
                shlex.join(argv),
                result.returncode,
                result.stderr.strip(),
            )

    return poweroff


# --- one connection -------------------------------------------------------------------------


class _Disconnected(Exception):
    """The client went away."""


def command_for(start: Start, config: AgentConfig) -> Command:
    """The command, environment and directory a START asks for, as the guest user."""
    user = config.user
    home = user.home if os.path.isdir(user.home) else "/"
    env = {
        "HOME": user.home,
        "USER": user.name,
        "LOGNAME": user.name,
        "SHELL": user.shell,
        "PATH": config.path.format(home=user.home, user=user.name),
    }
    runtime = f"/run/user/{user.uid}"
    if os.path.isdir(runtime):
        env["XDG_RUNTIME_DIR"] = runtime
        if os.path.exists(f"{runtime}/bus"):  # the user manager's D-Bus session bus
            env["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={runtime}/bus"
    env.update(config.session_env)
    env.update(start.env)
    if start.tty:
        env.setdefault("TERM", "xterm-256color")
    argv = start.argv or (user.shell, "-l")
    return Command(
        argv=tuple(argv),
        env=env,
        cwd=start.cwd or home,
        tty=start.tty,
        rows=start.rows or 24,
        cols=start.cols or 80,
    )


def describe(status: Exit) -> str:
    if status.signal is not None:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(status.signal).name}"
        return f"killed by signal {status.signal}"
    return f"exit status {status.code}"


class Session:
    """Serves one connection: START, then the command's life, then EXIT."""

    def __init__(self, sock: socket.socket, peer: str, config: AgentConfig) -> None:
        self.sock = sock
        self.peer = peer
        self.config = config
        self.reader = FrameReader(FROM_CLIENT)
        self.child: Child | None = None
        self.aborted = threading.Event()

    # --- I/O helpers ---

    def _send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except OSError as err:
            raise _Disconnected(str(err)) from err

    def _recv(self) -> list[Message]:
        try:
            data = self.sock.recv(READ_SIZE)
        except TimeoutError:
            raise ProtocolError("no START within the time allowed") from None
        except OSError as err:
            raise _Disconnected(str(err)) from err
        if not data:
            if self.reader.partial:
                raise ProtocolError("the connection closed in the middle of a frame")
            raise _Disconnected("closed")
        return self.reader.feed(data)

    # --- the whole life ---

    def serve(self) -> None:
        try:
            start, pending = self._read_start()
            try:
                self.child = spawn(command_for(start, self.config), self.config.user)
            except (OSError, ChannelError) as err:
                log.error("%s: cannot start a command: %s", self.peer, err)
                self._send(encode(Error(f"the agent cannot start the command: {err}")))
                return
            log.info(
                "%s: started %r (pid %d%s)",
                self.peer,
                start.argv[0] if start.argv else "a login shell",
                self.child.pid,
                ", on a terminal" if start.tty else "",
            )
            status = self._pump(self.child, pending)
            log.info("%s: pid %d ended: %s", self.peer, self.child.pid, describe(status))
            self._send(encode(status))
            self._linger()
        except ProtocolError as err:
            log.warning("%s: closing the connection: %s", self.peer, err)
            with contextlib.suppress(OSError):
                self.sock.settimeout(1.0)
                self.sock.sendall(encode(Error(f"protocol error: {err}")))
        except _Disconnected as err:
            if self.child is not None:
                log.info("%s: the client went away (%s); stopping the command", self.peer, err)
        finally:
            self._stop_child()
            with contextlib.suppress(OSError):
                self.sock.close()

    def abort(self) -> None:
        """Stop serving (the agent is stopping): the command is stopped as on a disconnect."""
        self.aborted.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def _read_start(self) -> tuple[Start, list[Message]]:
        self.sock.settimeout(self.config.start_timeout)
        messages: list[Message] = []
        while not messages:
            messages = self._recv()
        self.sock.settimeout(None)
        first, *rest = messages
        if not isinstance(first, Start):
            raise ProtocolError(f"the first message must be START, not {type(first).__name__}")
        return first, rest

    def _linger(self) -> None:
        """After EXIT: half-close and wait (bounded) for the client to close, so closing our
        end with its unread input in the buffer cannot reset the connection before the client
        has read EXIT."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(self.config.linger)
            while self.sock.recv(READ_SIZE):
                pass

    def _stop_child(self) -> None:
        child = self.child
        if child is None:
            return
        try:
            if child.popen.returncode is None and not child.wait_exit(0):
                child.signal_group(signal.SIGHUP)
                if child.tty:
                    child.signal_foreground(signal.SIGHUP)
                child.wait_exit(self.config.grace)
            child.reap()
        finally:
            child.close()

    # --- streaming ---

    def _pump(self, child: Child, pending: list[Message]) -> Exit:
        """Stream until the command exits; then collect its last output and its status."""
        pump = _Pump(self, child)
        for message in pending:
            pump.handle(message)
        pump.run()
        # The leader has exited and is not reaped: kill what is left of its group, then read
        # the output to its end (bounded: a process that left the group may hold it open).
        child.signal_group(signal.SIGKILL)
        self._drain(pump.outputs)
        returncode = child.reap()
        return Exit(signal=-returncode) if returncode < 0 else Exit(code=returncode)

    def _forward(self, fd: int, kind: MessageType) -> bool:
        """Send what ``fd`` has; False at its end."""
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return True
        except OSError as err:
            if err.errno == errno.EIO:  # a terminal whose every other end is closed
                return False
            raise
        if not data:
            return False
        self._send(frame(kind, data))
        return True

    def _drain(self, outputs: dict[int, MessageType]) -> None:
        deadline = time.monotonic() + self.config.drain_timeout
        outputs = dict(outputs)
        while outputs:
            left = deadline - time.monotonic()
            if left <= 0:
                log.info("%s: output still open after the command exited; not waiting", self.peer)
                return
            with selectors.DefaultSelector() as sel:
                for fd in outputs:
                    sel.register(fd, selectors.EVENT_READ)
                for key, _ in sel.select(left):
                    if not self._forward(key.fd, outputs[key.fd]):
                        del outputs[key.fd]


# poll() flags: data to read (or its end), room to write, the peer closed its end.
_IN, _OUT, _RDHUP = select.POLLIN, select.POLLOUT, select.POLLRDHUP
_GONE = select.POLLHUP | select.POLLERR  # always reported


class _Pump:
    """The streaming loop of one session: socket in, command's input and output, its exit.

    It uses ``poll`` rather than ``selectors`` for POLLRDHUP: while a command does not read its
    input we stop reading the socket (backpressure), yet still notice the client going away.
    """

    def __init__(self, session: Session, child: Child) -> None:
        self.session = session
        self.child = child
        self.poll = select.poll()
        self.registered: dict[int, int] = {}
        self.outputs: dict[int, MessageType] = {child.stdout: MessageType.STDOUT}
        if child.stderr is not None:
            self.outputs[child.stderr] = MessageType.STDERR
        self.stdin_buffer = bytearray()
        self.stdin_eof = False
        self.exited = False

    def want(self, fd: int, events: int) -> None:
        """Watch ``fd`` for exactly ``events`` (0: not at all)."""
        current = self.registered.get(fd, 0)
        if events == current:
            return
        if events:
            self.poll.register(fd, events)  # registers or modifies
            self.registered[fd] = events
        else:
            self.poll.unregister(fd)
            del self.registered[fd]

    def handle(self, message: Message) -> None:
        child = self.child
        match message:
            case Stdin(data):
                if self.stdin_eof:
                    raise ProtocolError("STDIN after STDIN_EOF")
                if child.stdin is not None:
                    self.stdin_buffer.extend(data)
            case StdinEof():
                if self.stdin_eof:
                    raise ProtocolError("STDIN_EOF twice")
                self.stdin_eof = True
                if child.tty:
                    self.stdin_buffer.extend(child.eof_bytes())
            case Signal(name):
                child.signal_foreground(SIGNALS[name])
            case Resize(rows, cols):
                child.resize(rows, cols)
            case Start():
                raise ProtocolError("START twice")
            case _:  # pragma: no cover - FrameReader lets only the client's types through
                raise ProtocolError(f"unexpected {type(message).__name__}")

    def run(self) -> None:
        child, session = self.child, self.session
        sock = session.sock.fileno()
        self.want(child.pidfd, _IN)
        while not self.exited:
            if session.aborted.is_set():
                raise _Disconnected("the agent is stopping")
            pending_input = bool(self.stdin_buffer)
            reading = len(self.stdin_buffer) < STDIN_HIGH_WATER
            self.want(sock, _RDHUP | (_IN if reading else 0))
            for fd in self.outputs:
                self.want(fd, _IN | (_OUT if child.tty and pending_input else 0))
            if not child.tty and child.stdin is not None:
                self.want(child.stdin, _OUT if pending_input else 0)
            for fd, events in self.poll.poll():
                if fd == child.pidfd:
                    self.exited = True
                elif fd == sock:
                    if events & _IN or (events & _GONE and reading):
                        for message in session._recv():
                            self.handle(message)
                    elif events & (_RDHUP | _GONE):
                        raise _Disconnected("closed while the command's input was full")
                else:
                    if fd == child.stdin and events & (_OUT | _GONE) and self.stdin_buffer:
                        self.write_input()
                    if (
                        fd in self.outputs
                        and events & (_IN | _GONE)
                        and not session._forward(fd, self.outputs[fd])
                    ):
                        self.output_ended(fd)
            if self.stdin_eof and not self.stdin_buffer and not child.tty:
                self.close_input()

    def output_ended(self, fd: int) -> None:
        del self.outputs[fd]
        self.want(fd, 0)
        if self.child.tty:
            self.stdin_buffer.clear()  # a terminal whose other side is gone takes no input

    def write_input(self) -> None:
        child = self.child
        if child.stdin is None:
            self.stdin_buffer.clear()
            return
        try:
            written = os.write(child.stdin, self.stdin_buffer[:READ_SIZE])
        except BlockingIOError:
            return
        except OSError:
            # The command closed its input (EPIPE) or its terminal is gone (EIO): what is
            # still to come has nowhere to go.
            self.stdin_buffer.clear()
            if not child.tty:
                self.close_input()
            return
        del self.stdin_buffer[:written]

    def close_input(self) -> None:
        if self.child.stdin is not None and not self.child.tty:
            self.want(self.child.stdin, 0)
            self.child.close_stdin()


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
    user = GuestUser.lookup(args.user)
    user.check()
    config = AgentConfig(
        user=user,
        session_env=env_items(args.session_env, "--session-env"),
        path=args.path,
        max_connections=args.max_connections,
    )
    address: Address = (
        UnixAddress(args.listen_unix) if args.listen_unix else VsockAddress(0, args.port)
    )
    after = auto_shutdown_seconds(args)
    idle = (
        IdleShutdown(after, run_poweroff(shlex.split(args.poweroff_command)))
        if after is not None
        else None
    )
    try:
        listener = Listener(address)
    except OSError as err:
        raise ChannelError(f"cannot listen on {address}: {err.strerror}") from err
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
