"""Register a VM's Wayland socket with the compositor under a security context.

crosvm hands the guest's Wayland traffic to a host socket (``--wayland-sock``). That socket is
not the desktop's own: it is a listening socket created here and passed to the compositor with
the staging protocol ``wp_security_context_v1``. The compositor then accepts the VM's
connections itself and tags each with three strings (sandbox engine, app id, instance id), so it
can tell which VM a window belongs to and, for example, draw its border in the VM's colour. It
keeps listening until the write end of a pipe held here is closed; closing it (or this process
dying) is how the registration ends.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import stat

from vmsilo_nix.wayland_context import DEFAULT_TIMEOUT
from vmsilo_nix.wayland_context.compositor import Compositor, WaylandError

MAX_STRING = 1024  # our own limit on a metadata string, far below what a message can hold
UNIX_PATH_MAX = 107  # sun_path holds 108 bytes, the last one the terminating NUL


class SocketPathError(WaylandError):
    """The VM's socket cannot be created at the path asked for."""


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
        connection: Compositor,
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
        """Handle the compositor's events; False once the connection has failed."""
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
    conn = Compositor(display, timeout=timeout)
    try:
        conn.roundtrip()  # the registry's globals
        manager = conn.bind_security_context_manager()
        listener, temp = _listen(socket_path)
        close_write = -1
        try:
            close_read, close_write = os.pipe()
            try:
                context = manager.create_listener(listener.fileno(), close_read)
            finally:
                os.close(close_read)  # libwayland sends its own duplicate
            context.set_sandbox_engine(engine)
            context.set_app_id(app_id)
            context.set_instance_id(instance_id)
            context.commit()
            # Before the objects are destroyed, so that libwayland still names the one a
            # protocol error is about (it forgets a destroyed object's interface).
            conn.roundtrip()
            # After commit only destroy is allowed; the listener outlives both objects.
            context.destroy()
            manager.destroy()
            conn.roundtrip()
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
