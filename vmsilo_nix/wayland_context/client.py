"""Register a VM's Wayland socket with the compositor under a security context.

crosvm hands the guest's Wayland traffic to a host socket (``--wayland-sock``). That socket is
not the desktop's own: it is a listening socket this module creates and passes to the compositor
with the staging protocol ``wp_security_context_v1``. The compositor then accepts the VM's
connections itself and tags each with three strings (sandbox engine, app id, instance id), so it
can tell which VM a window belongs to and, for example, draw its border in the VM's colour. It
keeps listening until the write end of a pipe we hold is closed; closing it (or this process
dying) is how the registration ends.

This is a small Wayland client written against the wire format, with nothing but the standard
library: a message is a header of two 32-bit words in host byte order (the sender's object id,
then the message size in bytes, header included, in the high 16 bits and the opcode in the low
16), followed by the arguments, each padded to 32 bits. File descriptors travel out of band as
``SCM_RIGHTS`` ancillary data on the same sendmsg as the message that carries them.

``vmsilo wayland-context`` (:func:`add_arguments`, :func:`run`) is what a VM's proxy script runs.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import math
import os
import select
import signal
import socket
import stat
import struct
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from types import FrameType

from vmsilo_nix.errors import VmsiloError
from vmsilo_nix.facts import ENGINE as SANDBOX_ENGINE
from vmsilo_nix.sd_notify import notify_ready

MANAGER_INTERFACE = "wp_security_context_manager_v1"
CONTEXT_INTERFACE = "wp_security_context_v1"
DEFAULT_TIMEOUT = 10.0  # seconds to wait for the compositor to answer a roundtrip

# Compositors known to offer the manager global; named in the error when it is missing.
SUPPORTING_COMPOSITORS = "recent sway, Hyprland and KWin (Plasma 6)"

# Object ids and opcodes, from the core protocol (wayland.xml) and security-context-v1.xml.
DISPLAY_ID = 1
DISPLAY_SYNC, DISPLAY_GET_REGISTRY = 0, 1  # requests
DISPLAY_ERROR, DISPLAY_DELETE_ID = 0, 1  # events
REGISTRY_BIND = 0  # request
REGISTRY_GLOBAL, REGISTRY_GLOBAL_REMOVE = 0, 1  # events
CALLBACK_DONE = 0  # event
MANAGER_DESTROY, MANAGER_CREATE_LISTENER = 0, 1
CONTEXT_DESTROY = 0
CONTEXT_SET_SANDBOX_ENGINE, CONTEXT_SET_APP_ID, CONTEXT_SET_INSTANCE_ID = 1, 2, 3
CONTEXT_COMMIT = 4

ERROR_NAMES: dict[str, dict[int, str]] = {
    "wl_display": {0: "invalid_object", 1: "invalid_method", 2: "no_memory", 3: "implementation"},
    MANAGER_INTERFACE: {1: "invalid_listen_fd", 2: "nested"},
    CONTEXT_INTERFACE: {1: "already_used", 2: "already_set", 3: "invalid_metadata"},
}

HEADER = struct.Struct("=II")  # sender id; size << 16 | opcode (host byte order)
WORD = struct.Struct("=I")
MAX_MESSAGE = 4096  # libwayland's limit on one message, header included
MAX_STRING = 1024  # our own limit on a metadata string, far below what a message can hold
MAX_FDS_IN = 28  # descriptors one read may bring (libwayland sends at most 28 per write)
UNIX_PATH_MAX = 107  # sun_path holds 108 bytes, the last one the terminating NUL


class WaylandError(VmsiloError):
    """Registering a VM's Wayland socket with the compositor failed."""


class NoCompositorError(WaylandError):
    """No compositor socket to connect to, or connecting to it failed."""


class UnsupportedCompositorError(WaylandError):
    """The compositor does not offer ``wp_security_context_manager_v1``."""


class WaylandProtocolError(WaylandError):
    """The compositor sent ``wl_display.error``: it rejected a request and drops the client."""

    def __init__(self, interface: str, object_id: int, code: int, message: str) -> None:
        self.interface = interface
        self.object_id = object_id
        self.code = code
        self.message = message
        name = ERROR_NAMES.get(interface, {}).get(code)
        what = f"{name} ({code})" if name else str(code)
        text = (
            f"the compositor rejected a request on {interface}#{object_id} "
            f"with protocol error {what}: {message or 'no message'}"
        )
        if interface == MANAGER_INTERFACE and code == 2:
            text += (
                " (this program is itself inside a security context; run it on the "
                "desktop's own Wayland socket)"
            )
        super().__init__(text)


class CompositorClosedError(WaylandError):
    """The compositor closed the connection (or it broke) without a protocol error."""


class SocketPathError(WaylandError):
    """The VM's socket cannot be created at the path asked for."""


def _uint(value: int) -> bytes:
    return WORD.pack(value)


def _string(value: str) -> bytes:
    """A non-null string: its length including the NUL, then the bytes, padded to 32 bits."""
    raw = value.encode("utf-8") + b"\0"
    return WORD.pack(len(raw)) + raw + b"\0" * (-len(raw) % 4)


class _Arguments:
    """Reads the arguments of one event, in order; a short message is the compositor's fault."""

    def __init__(self, body: bytes, what: str) -> None:
        self._body = body
        self._pos = 0
        self._what = what

    def _take(self, n: int) -> bytes:
        if self._pos + n > len(self._body):
            raise WaylandError(f"the compositor sent a malformed {self._what} event")
        chunk = self._body[self._pos : self._pos + n]
        self._pos += n
        return chunk

    def uint(self) -> int:
        value: int = WORD.unpack(self._take(4))[0]
        return value

    def string(self) -> str:
        """A string argument; the null string (length 0) reads as ""."""
        length = self.uint()
        if length == 0:
            return ""
        raw = self._take(length + (-length % 4))[: length - 1]
        return raw.decode("utf-8", errors="replace")


class Connection:
    """One client connection to the compositor: object ids, the registry, roundtrips.

    It understands just the events this module needs (``wl_display``, ``wl_registry`` and
    ``wl_callback``); events for other objects are skipped by their size.
    """

    def __init__(self, sock: socket.socket, where: str) -> None:
        self.sock = sock
        self.where = where  # for messages: the socket path, or "WAYLAND_SOCKET"
        self.globals: dict[int, tuple[str, int]] = {}  # name -> (interface, version)
        self._objects: dict[int, str] = {DISPLAY_ID: "wl_display"}
        self._free_ids: list[int] = []  # released by delete_id, reused lowest first
        self._next_id = DISPLAY_ID + 1
        self._done: set[int] = set()  # callbacks whose done event arrived
        self._inbuf = bytearray()
        self._registry: int | None = None
        self.closed = False

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sock.close()

    # -- objects

    def new_id(self, interface: str) -> int:
        if self._free_ids:
            oid = min(self._free_ids)
            self._free_ids.remove(oid)
        else:
            oid = self._next_id
            self._next_id += 1
        self._objects[oid] = interface
        self._done.discard(oid)
        return oid

    # -- requests

    def send(self, sender: int, opcode: int, args: bytes = b"", fds: Sequence[int] = ()) -> None:
        size = HEADER.size + len(args)
        if size > MAX_MESSAGE:
            raise WaylandError(f"a request of {size} bytes exceeds Wayland's {MAX_MESSAGE}")
        message = HEADER.pack(sender, size << 16 | opcode) + args
        try:
            if fds:
                sent = socket.send_fds(self.sock, [message], list(fds), socket.MSG_NOSIGNAL)
                if sent < len(message):
                    self.sock.sendall(message[sent:], socket.MSG_NOSIGNAL)
            else:
                self.sock.sendall(message, socket.MSG_NOSIGNAL)
        except OSError as e:
            # The compositor may have sent a protocol error and hung up: report that instead.
            self._salvage()
            raise CompositorClosedError(
                f"lost the connection to the compositor at {self.where}: {e.strerror or e}"
            ) from e

    def get_registry(self) -> int:
        if self._registry is None:
            self._registry = self.new_id("wl_registry")
            self.send(DISPLAY_ID, DISPLAY_GET_REGISTRY, _uint(self._registry))
        return self._registry

    def bind(self, name: int, interface: str, version: int) -> int:
        """``wl_registry.bind`` with the untyped new_id: interface, version, then the id."""
        oid = self.new_id(interface)
        args = _uint(name) + _string(interface) + _uint(version) + _uint(oid)
        self.send(self.get_registry(), REGISTRY_BIND, args)
        return oid

    def destroy(self, oid: int, opcode: int) -> None:
        """Send a destructor; the id stays taken until the compositor's delete_id."""
        self.send(oid, opcode)

    def roundtrip(self, timeout: float) -> None:
        """``wl_display.sync`` and wait for its callback: every earlier request is processed,
        and every event it caused (a protocol error included) has been handled."""
        callback = self.new_id("wl_callback")
        self.send(DISPLAY_ID, DISPLAY_SYNC, _uint(callback))
        deadline = time.monotonic() + timeout
        while callback not in self._done:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaylandError(
                    f"the compositor at {self.where} did not answer within {timeout:g} seconds"
                )
            if not self.dispatch(remaining):
                raise CompositorClosedError(f"the compositor at {self.where} closed the connection")

    # -- events

    def dispatch(self, timeout: float | None) -> bool:
        """Wait up to ``timeout`` seconds for data, then handle every complete event read.

        Returns False when the compositor has hung up; raises on a protocol error.
        """
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        if not poller.poll(None if timeout is None else max(0, math.ceil(timeout * 1000))):
            return True
        return self._read_and_handle()

    def _read_and_handle(self) -> bool:
        """One read (the socket must be readable): False on end of file."""
        try:
            data, fds, _flags, _addr = socket.recv_fds(self.sock, MAX_MESSAGE, MAX_FDS_IN)
        except ConnectionResetError:
            return False  # it closed with our last requests unread: a hang-up all the same
        except OSError as e:
            raise CompositorClosedError(
                f"lost the connection to the compositor at {self.where}: {e.strerror or e}"
            ) from e
        for fd in fds:  # none of the events we handle carries one
            os.close(fd)
        if not data:
            return False
        self._inbuf += data
        self._handle_buffered()
        return True

    def _salvage(self) -> None:
        """Handle whatever the compositor sent before the connection broke, without waiting."""
        poller = select.poll()
        with contextlib.suppress(OSError, CompositorClosedError):
            poller.register(self.sock, select.POLLIN)
            while poller.poll(0) and self._read_and_handle():
                pass

    def _handle_buffered(self) -> None:
        while len(self._inbuf) >= HEADER.size:
            sender, word = HEADER.unpack_from(self._inbuf)
            size, opcode = word >> 16, word & 0xFFFF
            if size < HEADER.size or size % 4:
                raise WaylandError(f"the compositor sent a malformed message (size {size})")
            if len(self._inbuf) < size:
                return
            body = bytes(self._inbuf[HEADER.size : size])
            del self._inbuf[:size]
            self._handle(sender, opcode, body)

    def _handle(self, sender: int, opcode: int, body: bytes) -> None:
        interface = self._objects.get(sender)
        if interface == "wl_display":
            if opcode == DISPLAY_ERROR:
                args = _Arguments(body, "wl_display.error")
                oid, code, message = args.uint(), args.uint(), args.string()
                raise WaylandProtocolError(
                    self._objects.get(oid, "unknown object"), oid, code, message
                )
            if opcode == DISPLAY_DELETE_ID:
                oid = _Arguments(body, "wl_display.delete_id").uint()
                if oid in self._objects and oid != DISPLAY_ID:
                    del self._objects[oid]
                    self._free_ids.append(oid)
        elif interface == "wl_registry":
            if opcode == REGISTRY_GLOBAL:
                args = _Arguments(body, "wl_registry.global")
                name, iface, version = args.uint(), args.string(), args.uint()
                self.globals[name] = (iface, version)
            elif opcode == REGISTRY_GLOBAL_REMOVE:
                self.globals.pop(_Arguments(body, "wl_registry.global_remove").uint(), None)
        elif interface == "wl_callback" and opcode == CALLBACK_DONE:
            self._done.add(sender)
        # Anything else: an object without events we care about, or one already destroyed.

    def find_global(self, interface: str) -> tuple[int, int] | None:
        for name, (iface, version) in self.globals.items():
            if iface == interface:
                return name, version
        return None


def display_address(display: str | None = None) -> str:
    """The compositor's socket path: ``display`` or ``$WAYLAND_DISPLAY``, either absolute or a
    name under ``$XDG_RUNTIME_DIR`` (as libwayland resolves it)."""
    name = display if display is not None else os.environ.get("WAYLAND_DISPLAY", "")
    if not name:
        raise NoCompositorError(
            "no Wayland compositor to register with: WAYLAND_DISPLAY is not set "
            "(run this in the desktop session, or pass --display)"
        )
    if os.path.isabs(name):
        return name
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if not runtime:
        raise NoCompositorError(
            f"cannot find the Wayland display {name!r}: XDG_RUNTIME_DIR is not set "
            "(pass an absolute path with --display)"
        )
    return os.path.join(runtime, name)


def connect(display: str | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> Connection:
    """Connect to the compositor. Without ``display``, an inherited ``WAYLAND_SOCKET``
    descriptor wins over ``WAYLAND_DISPLAY`` (and is taken out of the environment)."""
    if display is None and os.environ.get("WAYLAND_SOCKET"):
        value = os.environ.pop("WAYLAND_SOCKET")
        try:
            fd = int(value)
            sock = socket.socket(fileno=fd)
        except (ValueError, OSError) as e:
            raise NoCompositorError(
                f"WAYLAND_SOCKET={value} is not a usable socket descriptor"
            ) from e
        if sock.family != socket.AF_UNIX:
            sock.detach()
            raise NoCompositorError(f"WAYLAND_SOCKET={value} is not a Unix socket")
        sock.set_inheritable(False)
        sock.setblocking(True)
        return Connection(sock, "WAYLAND_SOCKET")
    path = display_address(display)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.settimeout(None)
    except OSError as e:
        sock.close()
        reason = "no such socket" if isinstance(e, FileNotFoundError) else e.strerror or str(e)
        raise NoCompositorError(
            f"cannot connect to the Wayland compositor at {path}: {reason}"
        ) from e
    return Connection(sock, path)


def _check_metadata(engine: str, app_id: str, instance_id: str) -> None:
    for what, value in (
        ("sandbox engine", engine),
        ("app id", app_id),
        ("instance id", instance_id),
    ):
        if not value:
            raise WaylandError(f"the {what} must not be empty")
        if "\0" in value:
            raise WaylandError(f"the {what} {value!r} contains a NUL character")
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError as e:
            raise WaylandError(f"the {what} {value!r} is not valid Unicode") from e
        if size > MAX_STRING:
            raise WaylandError(f"the {what} is {size} bytes long; at most {MAX_STRING} fit")


def _check_socket_path(path: str) -> None:
    """Refuse what cannot become the VM's socket; remove a stale socket left behind."""
    size = len(os.fsencode(path))
    if size > UNIX_PATH_MAX:
        raise SocketPathError(
            f"the socket path {path} is {size} bytes long; Unix sockets allow {UNIX_PATH_MAX}"
        )
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise SocketPathError(f"cannot create the socket {path}: {parent} is not a directory")
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise SocketPathError(f"refusing to replace {path}: it exists and is not a socket")
    # A socket nobody serves any more (its registrar died): replace it.
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


_temp_counter = itertools.count()


def _listen(path: str) -> tuple[socket.socket, str]:
    """A listening socket, mode 0600, bound to a temporary name beside ``path``; it is renamed
    to ``path`` once the compositor serves it, so the path appears only when it works."""
    parent = os.path.dirname(os.path.abspath(path))
    temp = os.path.join(parent, f".wl-{os.getpid()}-{next(_temp_counter)}")
    if len(os.fsencode(temp)) > UNIX_PATH_MAX:
        raise SocketPathError(f"the directory of {path} has too long a path for a socket")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(temp)
        # Not listening yet, so nobody can connect before the mode is tightened.
        os.chmod(temp, 0o600)
        sock.listen(socket.SOMAXCONN)
    except OSError as e:
        sock.close()
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise SocketPathError(f"cannot create the socket {path}: {e.strerror or e}") from e
    return sock, temp


class Registration:
    """A socket the compositor serves under a security context, and what keeps it served.

    Owns the compositor connection, the listening socket and the write end of the close pipe.
    :meth:`close` ends it: the compositor stops accepting on the socket and the path is removed.
    """

    def __init__(
        self,
        *,
        socket_path: str,
        engine: str,
        app_id: str,
        instance_id: str,
        connection: Connection,
        listener: socket.socket,
        close_fd: int,
        identity: tuple[int, int],
    ) -> None:
        self.socket_path = socket_path
        self.engine = engine
        self.app_id = app_id
        self.instance_id = instance_id
        self.connection = connection
        self.listener = listener
        self._close_fd = close_fd
        self._identity = identity  # (device, inode) of the socket file we put at the path
        self.closed = False

    def fileno(self) -> int:
        """The compositor connection's descriptor, to wait on for events or hang-up."""
        return self.connection.fileno()

    def dispatch(self, timeout: float | None) -> bool:
        """Handle the compositor's events; False once it has hung up."""
        return self.connection.dispatch(timeout)

    def close(self) -> None:
        """Stop the compositor listening, disconnect, remove the socket. Idempotent."""
        if self.closed:
            return
        self.closed = True
        os.close(self._close_fd)  # the compositor sees the hang-up and stops listening
        self.listener.close()
        self.connection.close()
        # Remove the path only while it is still our socket (not a newer registration's).
        with contextlib.suppress(OSError):
            st = os.lstat(self.socket_path)
            if (st.st_dev, st.st_ino) == self._identity:
                os.unlink(self.socket_path)

    def __enter__(self) -> Registration:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def register(
    socket_path: str,
    *,
    engine: str,
    app_id: str,
    instance_id: str,
    display: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Registration:
    """Create a listening socket at ``socket_path`` and have the compositor serve it, tagging
    every client that connects with ``engine``, ``app_id`` and ``instance_id``.

    The path appears only after the compositor has taken the registration. Raises a
    :class:`WaylandError` with a one-line reason on any failure, leaving nothing behind.
    """
    _check_metadata(engine, app_id, instance_id)
    _check_socket_path(socket_path)
    conn = connect(display, timeout=timeout)
    try:
        conn.get_registry()
        conn.roundtrip(timeout)
        found = conn.find_global(MANAGER_INTERFACE)
        if found is None:
            raise UnsupportedCompositorError(
                f"the compositor at {conn.where} does not offer {MANAGER_INTERFACE} (Wayland "
                f"security contexts), which vmsilo needs to label VM windows; "
                f"{SUPPORTING_COMPOSITORS} offer it, though not to clients that are "
                f"themselves sandboxed"
            )
        name, version = found
        manager = conn.bind(name, MANAGER_INTERFACE, min(version, 1))
        listener, temp = _listen(socket_path)
        close_write = -1
        try:
            close_read, close_write = os.pipe()
            try:
                context = conn.new_id(CONTEXT_INTERFACE)
                conn.send(
                    manager,
                    MANAGER_CREATE_LISTENER,
                    _uint(context),
                    fds=[listener.fileno(), close_read],
                )
            finally:
                os.close(close_read)  # the compositor has its own copy now
            conn.send(context, CONTEXT_SET_SANDBOX_ENGINE, _string(engine))
            conn.send(context, CONTEXT_SET_APP_ID, _string(app_id))
            conn.send(context, CONTEXT_SET_INSTANCE_ID, _string(instance_id))
            conn.send(context, CONTEXT_COMMIT)
            # After commit only destroy is allowed; the listener outlives both objects.
            conn.destroy(context, CONTEXT_DESTROY)
            conn.destroy(manager, MANAGER_DESTROY)
            conn.roundtrip(timeout)
            try:
                os.rename(temp, socket_path)
                st = os.lstat(socket_path)
            except OSError as e:
                raise SocketPathError(
                    f"cannot create the socket {socket_path}: {e.strerror or e}"
                ) from e
        except BaseException:
            if close_write >= 0:
                os.close(close_write)
            listener.close()
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
    except BaseException:
        conn.close()
        raise
    return Registration(
        socket_path=socket_path,
        engine=engine,
        app_id=app_id,
        instance_id=instance_id,
        connection=conn,
        listener=listener,
        close_fd=close_write,
        identity=(st.st_dev, st.st_ino),
    )


@contextlib.contextmanager
def _stop_signals() -> Iterator[tuple[list[int], int]]:
    """SIGTERM and SIGINT recorded instead of acted on, and a descriptor that becomes readable
    when one arrives (so a poll wakes up). Main thread only, as for any signal handler."""
    received: list[int] = []

    def record(signum: int, _frame: object) -> None:
        received.append(signum)

    wake_read, wake_write = os.pipe()
    previous: dict[signal.Signals, Callable[[int, FrameType | None], object] | int] = {}
    previous_wakeup: int | None = None
    try:
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        for s in (signal.SIGTERM, signal.SIGINT):
            handler = signal.signal(s, record)
            previous[s] = signal.SIG_DFL if handler is None else handler
        previous_wakeup = signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        yield received, wake_read
    finally:
        if previous_wakeup is not None:
            signal.set_wakeup_fd(previous_wakeup)
        for s, old in previous.items():
            signal.signal(s, old)
        os.close(wake_read)
        os.close(wake_write)


def serve(
    socket_path: str,
    *,
    engine: str,
    app_id: str,
    instance_id: str,
    display: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    on_ready: Callable[[Registration], None] | None = None,
) -> int | None:
    """Register, then wait until SIGTERM or SIGINT arrives or the compositor hangs up, then
    clean up. Returns the signal's number, or None when the compositor went away.

    Must run in the main thread (it installs signal handlers, restored on return).
    """
    with _stop_signals() as (received, wake):
        registration = register(
            socket_path,
            engine=engine,
            app_id=app_id,
            instance_id=instance_id,
            display=display,
            timeout=timeout,
        )
        with registration:
            if on_ready is not None:
                on_ready(registration)
            poller = select.poll()
            poller.register(registration.fileno(), select.POLLIN)
            poller.register(wake, select.POLLIN)
            while not received:
                for fd, _events in poller.poll():
                    if fd == wake:
                        with contextlib.suppress(BlockingIOError):
                            os.read(wake, 512)
                    elif not registration.dispatch(0):
                        return None
        return received[0]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``vmsilo wayland-context``."""
    parser.add_argument(
        "--socket",
        required=True,
        metavar="PATH",
        help="the socket to create and register (the VM's --wayland-sock)",
    )
    parser.add_argument(
        "--app-id", required=True, help="the security context's app id (the VM's name)"
    )
    parser.add_argument(
        "--instance-id",
        required=True,
        help='the security context\'s instance id (the VM and its colour, e.g. "banking #2e7d32")',
    )
    parser.add_argument(
        "--engine",
        default=SANDBOX_ENGINE,
        help=f"the security context's sandbox engine (default: {SANDBOX_ENGINE})",
    )
    parser.add_argument(
        "--display",
        metavar="NAME|PATH",
        help="the compositor's socket (default: $WAYLAND_SOCKET or $WAYLAND_DISPLAY)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long to wait for the compositor to answer (default: {DEFAULT_TIMEOUT:g})",
    )


def run(args: argparse.Namespace) -> int:
    """``vmsilo wayland-context``: serve until stopped. Exit status 0 when stopped by a signal;
    a failure (including the compositor going away) raises :class:`WaylandError`."""

    def ready(r: Registration) -> None:
        print(
            f"vmsilo wayland-context: {r.socket_path} is served by the compositor as "
            f"sandbox engine {r.engine!r}, app id {r.app_id!r}, instance id {r.instance_id!r}",
            file=sys.stderr,
            flush=True,
        )
        notify_ready()

    stopped_by = serve(
        args.socket,
        engine=args.engine,
        app_id=args.app_id,
        instance_id=args.instance_id,
        display=args.display,
        timeout=args.timeout,
        on_ready=ready,
    )
    if stopped_by is None:
        raise CompositorClosedError(
            f"the compositor closed the connection; {args.socket} is no longer served"
        )
    return 0
