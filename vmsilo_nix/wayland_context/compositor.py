"""One client connection to the Wayland compositor, through pywayland (libwayland-client).

libwayland speaks the wire protocol; this module adds what a one-shot registrar needs on top:
waiting with a deadline instead of blocking for ever, and one-line errors that name the cause
(the missing global, the protocol error with its name and the compositor's message, a hang-up).
"""

from __future__ import annotations

import collections
import ctypes
import errno
import math
import os
import select
import socket
import sys
import time
from typing import Any

from pywayland import _ffi, ffi, lib
from pywayland.client.display import Display
from pywayland.protocol.security_context_v1 import WpSecurityContextManagerV1, WpSecurityContextV1
from pywayland.protocol.wayland import WlDisplay

from vmsilo_nix.errors import VmsiloError
from vmsilo_nix.wayland_context import DEFAULT_TIMEOUT

# Compositors known to offer the manager global; named in the error when it is missing.
SUPPORTING_COMPOSITORS = "recent sway, Hyprland and KWin (Plasma 6)"

# Protocol error names, from the protocols' own enums (an unknown code is shown as a number).
ERROR_NAMES: dict[str, dict[int, str]] = {
    interface.name: {int(e): e.name for e in interface.error}
    for interface in (WlDisplay, WpSecurityContextManagerV1, WpSecurityContextV1)
}
NESTED = int(WpSecurityContextManagerV1.error.nested)


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
        if interface == WpSecurityContextManagerV1.name and code == NESTED:
            text += (
                " (this program is itself inside a security context; run it on the "
                "desktop's own Wayland socket)"
            )
        super().__init__(text)


class CompositorClosedError(WaylandError):
    """The compositor closed the connection (or it broke) without a protocol error."""


# -- what pywayland does not bind: libwayland's log handler and wl_display_get_protocol_error.
# Both are public libwayland-client API; the library is reached through pywayland's own
# extension module (dlsym searches its dependencies), so it is the very copy pywayland uses.


class _WlInterface(ctypes.Structure):
    _fields_ = (("name", ctypes.c_char_p),)  # the first member of struct wl_interface


_libwayland = ctypes.CDLL(_ffi.__file__)
_get_protocol_error = _libwayland.wl_display_get_protocol_error
_get_protocol_error.argtypes = (
    ctypes.c_void_p,
    ctypes.POINTER(ctypes.POINTER(_WlInterface)),
    ctypes.POINTER(ctypes.c_uint32),
)
_get_protocol_error.restype = ctypes.c_uint32
_vsnprintf = ctypes.CDLL(None).vsnprintf
_vsnprintf.argtypes = (ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p)

# libwayland reports a protocol error by logging "interface#id: error code: message"; the
# message is only there. Its lines are kept (the last few) instead of printed, so the error is
# one line of ours; lines of any other kind still reach standard error.
_log: collections.deque[str] = collections.deque(maxlen=8)


def _is_error_line(line: str) -> bool:
    head = line.partition(": error ")[0]
    return head == "[destroyed object]" or ("#" in head and " " not in head)


def _log_line(fmt: bytes, args: int) -> None:
    buf = ctypes.create_string_buffer(1024)
    _vsnprintf(buf, len(buf), fmt, args)
    line = buf.value.decode("utf-8", errors="replace").rstrip("\n")
    _log.append(line)
    if not _is_error_line(line):
        print(f"libwayland: {line}", file=sys.stderr, flush=True)


# Kept referenced for the life of the process: libwayland calls it from then on.
_log_handler = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_void_p)(_log_line)
_libwayland.wl_log_set_handler_client(_log_handler)


def _protocol_message(interface: str, object_id: int, code: int) -> str:
    prefixes = (f"{interface}#{object_id}: error {code}: ", f"[destroyed object]: error {code}: ")
    for line in reversed(_log):
        for prefix in prefixes:
            if line.startswith(prefix):
                return line[len(prefix) :]
    return ""


def display_address(display: str | None = None) -> str:
    """The compositor's socket path: ``display`` or ``$WAYLAND_DISPLAY``, either absolute or a
    name under ``$XDG_RUNTIME_DIR`` (as libwayland resolves it). Unlike libwayland, an unset
    ``WAYLAND_DISPLAY`` is an error, not ``wayland-0``: guessing could tag another desktop."""
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


def _open_socket(display: str | None, timeout: float) -> tuple[socket.socket, str]:
    """The connected socket and where it leads. Without ``display``, an inherited
    ``WAYLAND_SOCKET`` descriptor wins over ``WAYLAND_DISPLAY`` (and is taken out of the
    environment, as libwayland does). Connecting here, not in libwayland, keeps the errno."""
    if display is None and os.environ.get("WAYLAND_SOCKET"):
        value = os.environ.pop("WAYLAND_SOCKET")
        try:
            sock = socket.socket(fileno=int(value))
        except (ValueError, OSError) as e:
            raise NoCompositorError(
                f"WAYLAND_SOCKET={value} is not a usable socket descriptor"
            ) from e
        if sock.family != socket.AF_UNIX:
            sock.detach()
            raise NoCompositorError(f"WAYLAND_SOCKET={value} is not a Unix socket")
        sock.set_inheritable(False)
        return sock, "WAYLAND_SOCKET"
    path = display_address(display)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
    except OSError as e:
        sock.close()
        reason = "no such socket" if isinstance(e, FileNotFoundError) else e.strerror or str(e)
        raise NoCompositorError(
            f"cannot connect to the Wayland compositor at {path}: {reason}"
        ) from e
    return sock, path


class Compositor:
    """A connection to the compositor: its globals, roundtrips with a deadline, and events."""

    def __init__(self, display: str | None = None, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        sock, self.where = _open_socket(display, timeout)
        sock.setblocking(True)
        self.display = Display(sock.detach())  # libwayland owns (and closes) the descriptor
        self.display.connect()
        self.timeout = timeout
        self.globals: dict[int, tuple[str, int]] = {}  # name -> (interface, version)
        self.registry = self.display.get_registry()
        self.registry.dispatcher["global"] = self._on_global
        self.registry.dispatcher["global_remove"] = self._on_global_remove
        self.closed = False

    def _on_global(self, _registry: Any, name: int, interface: str, version: int) -> None:
        self.globals[name] = (interface, version)

    def _on_global_remove(self, _registry: Any, name: int) -> None:
        self.globals.pop(name, None)

    def fileno(self) -> int:
        return self.display.get_fd()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.display.disconnect()

    def find_global(self, interface: str) -> tuple[int, int] | None:
        for name, (iface, version) in self.globals.items():
            if iface == interface:
                return name, version
        return None

    def roundtrip(self) -> None:
        """Every earlier request is processed and every event it caused (a protocol error
        included) handled, within the timeout."""
        done: list[int] = []
        callback = self.display.sync()

        def on_done(cb: Any, serial: int) -> None:
            done.append(serial)
            cb.destroy()  # as wl_display_roundtrip does: its id can be reused after delete_id

        callback.dispatcher["done"] = on_done
        deadline = time.monotonic() + self.timeout
        while not done:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaylandError(
                    f"the compositor at {self.where} did not answer within {self.timeout:g} seconds"
                )
            if not self.dispatch(remaining):
                raise self.failure()

    def dispatch(self, timeout: float | None) -> bool:
        """Send what is queued, wait up to ``timeout`` seconds for events and handle them.

        Returns False once the connection has failed (see :meth:`failure`); raises nothing.
        """
        try:
            self.display.dispatch(block=False)
            # A failed flush is fatal only when libwayland says so: after EPIPE the compositor
            # may have left a protocol error to read, after EAGAIN the rest goes next time.
            if self.display.flush() < 0 and self._error():
                return False
            poller = select.poll()
            poller.register(self.fileno(), select.POLLIN)
            if not poller.poll(None if timeout is None else max(0, math.ceil(timeout * 1000))):
                return True
            self.display.read()
            self.display.dispatch(block=False)
        except RuntimeError:
            return False  # pywayland's word for a libwayland call returning -1
        return self._error() == 0

    def _error(self) -> int:
        """libwayland's fatal error on this connection (an errno value), or 0."""
        return lib.wl_display_get_error(self._pointer())

    def _pointer(self) -> Any:
        ptr = self.display._ptr  # the wl_display; pywayland has no public accessor
        if ptr is None:
            raise CompositorClosedError(f"the connection to {self.where} is closed")
        return ptr

    def failure(self) -> WaylandError:
        """Why the connection failed: the compositor's protocol error, or the hang-up."""
        code = self._error()
        if code == errno.EPROTO:
            interface = ctypes.POINTER(_WlInterface)()
            object_id = ctypes.c_uint32()
            address = int(ffi.cast("uintptr_t", self._pointer()))
            error = _get_protocol_error(address, ctypes.byref(interface), ctypes.byref(object_id))
            name = interface.contents.name.decode() if interface else "unknown object"
            message = _protocol_message(name, object_id.value, error)
            return WaylandProtocolError(name, object_id.value, error, message)
        if code in (0, errno.EPIPE, errno.ECONNRESET):
            return CompositorClosedError(f"the compositor at {self.where} closed the connection")
        return CompositorClosedError(
            f"lost the connection to the compositor at {self.where}: {os.strerror(code)}"
        )

    def bind_security_context_manager(self) -> Any:
        """Bind ``wp_security_context_manager_v1``, or say that the compositor lacks it."""
        found = self.find_global(WpSecurityContextManagerV1.name)
        if found is None:
            raise UnsupportedCompositorError(
                f"the compositor at {self.where} does not offer "
                f"{WpSecurityContextManagerV1.name} (Wayland security contexts), which vmsilo "
                f"needs to label VM windows; {SUPPORTING_COMPOSITORS} offer it, though not to "
                "clients that are themselves sandboxed"
            )
        name, version = found
        return self.registry.bind(name, WpSecurityContextManagerV1, min(version, 1))
