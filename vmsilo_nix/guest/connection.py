"""One connection of the guest's command agent: the handshake, START, the command's life, EXIT.

Each connection is one command, served by its own thread: the command's output is streamed back
as it comes, its input and signals are forwarded, and its exit status ends the connection. When
the client goes away before the command ends, the command's process group gets SIGHUP and,
after a grace period, SIGKILL. When the command ends, whatever is left of its group is killed
too, so nothing a command started outlives it unseen (and auto-shutdown's idea of "running"
stays true).

A malformed or oversized message, or a first message that is not START, closes that
connection (with an ERROR frame saying why, and a log line); the other connections go on.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import selectors
import signal
import socket
import threading
import time
from collections.abc import Mapping

import attrs

from vmsilo_nix import facts
from vmsilo_nix.channel.protocol import (
    FROM_CLIENT,
    SIGNALS,
    ChannelError,
    Error,
    Exit,
    FrameReader,
    Hello,
    Message,
    MessageType,
    ProtocolError,
    Resize,
    Signal,
    Start,
    Stdin,
    StdinEof,
    encode,
    frame,
)
from vmsilo_nix.guest.spawn import Child, Command, GuestUser, spawn

log = logging.getLogger("vmsilo.channel")

# A NixOS user's profiles in NixOS's order, with the VM's program profile (its guestPrograms)
# where NixOS puts it among environment.profiles (nix/guest-programs.nix): before the system's.
PROFILES = (
    "{home}/.nix-profile",
    "/nix/profile",
    "/etc/profiles/per-user/{user}",
    facts.PROGRAMS_LINK,
    "/nix/var/nix/profiles/default",
    "/run/current-system/sw",
)
# Their bin/ directories, then the usual ones for other systems; their share/ directories.
DEFAULT_PATH = ":".join(
    ["/run/wrappers/bin", *(f"{p}/bin" for p in PROFILES), "/usr/local/bin", "/usr/bin", "/bin"]
)
DEFAULT_DATA_DIRS = ":".join(f"{p}/share" for p in PROFILES)

READ_SIZE = 64 * 1024
STDIN_HIGH_WATER = 256 * 1024  # buffered input for a slow command before we stop reading


@attrs.frozen
class AgentConfig:
    user: GuestUser
    #: The VM's session environment (Wayland display, runtime directory, ...), below the
    #: client's own variables and above the defaults.
    session_env: Mapping[str, str] = attrs.field(factory=dict)
    path: str = DEFAULT_PATH
    start_timeout: float = 10.0  # seconds a connection may take to send all of START
    grace: float = 2.0  # seconds between SIGHUP and SIGKILL when a client goes away
    drain_timeout: float = 1.0  # seconds to collect output after the command exited
    linger: float = 5.0  # seconds to wait for the client to close after EXIT
    max_connections: int = 64


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
        # desktop files, icons, GSettings schemas and D-Bus services of the programs
        "XDG_DATA_DIRS": DEFAULT_DATA_DIRS.format(home=user.home, user=user.name),
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
            self._send(encode(Hello()))  # the handshake: the client waits for it
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
        # One deadline for the whole wait: a client trickling a byte at a time gets no longer.
        deadline = time.monotonic() + self.config.start_timeout
        messages: list[Message] = []
        while not messages:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProtocolError("no START within the time allowed")
            self.sock.settimeout(left)
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
