"""Where the channel's bytes travel: AF_VSOCK between host and guest, Unix sockets in tests.

In production the agent listens in the guest on a vsock port and the host connects to the
guest's CID and that port. The source CID of a vsock connection is set by the hypervisor's
device, not by the sender, so the agent can tell the host (CID 2) from anything else: guest
processes reaching it over vsock loopback (CID 1) or, with sibling communication, other VMs.
It serves only CID 2.

A Unix socket stands in for vsock wherever there is none (this includes the test machines):
the same code runs on either, only :func:`listen` and :func:`connect` differ.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import select
import socket
import stat
import time

import attrs

from vmsilo_nix import facts
from vmsilo_nix.channel.protocol import ChannelError

log = logging.getLogger("vmsilo.channel")

VMADDR_CID_HOST = 2
#: The agent's vsock port when none is given: the port the guest module starts it on.
DEFAULT_PORT = facts.AGENT_VSOCK_PORT
#: vsock ports below this need CAP_NET_BIND_SERVICE to bind, as IP ports do.
PRIVILEGED_PORT_LIMIT = 1024
#: How long a client keeps retrying while the guest boots (its agent not listening yet).
DEFAULT_CONNECT_TIMEOUT = 60.0

# Errors that mean "not there yet": the VM is booting, the agent has not bound its port, the
# test agent has not created its socket.
_RETRY = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ENODEV,
        errno.ETIMEDOUT,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ENOENT,
        errno.EAGAIN,
    }
)


@attrs.frozen
class VsockAddress:
    cid: int
    port: int = DEFAULT_PORT

    def __str__(self) -> str:
        return f"vsock CID {self.cid} port {self.port}"


@attrs.frozen
class UnixAddress:
    path: str

    def __str__(self) -> str:
        return f"unix socket {self.path}"


Address = VsockAddress | UnixAddress


def new_socket(address: Address) -> socket.socket:
    if isinstance(address, VsockAddress):
        return socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    return socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)


def sockaddr(address: Address) -> tuple[int, int] | str:
    if isinstance(address, VsockAddress):
        return (address.cid, address.port)
    return address.path


def connect(address: Address, *, timeout: float = DEFAULT_CONNECT_TIMEOUT) -> socket.socket:
    """A connected, blocking socket; retries for up to ``timeout`` seconds while the agent is
    not (yet) there, then raises :class:`ChannelError`."""
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        try:
            sock = new_socket(address)
        except OSError as err:
            raise ChannelError(f"cannot create a socket for {address}: {err.strerror}") from err
        try:
            sock.connect(sockaddr(address))
        except OSError as err:
            sock.close()
            if err.errno not in _RETRY:
                raise ChannelError(f"cannot connect to {address}: {err.strerror}") from err
            if time.monotonic() + delay > deadline:
                raise ChannelError(
                    f"no command agent answered on {address} within {timeout:g} s "
                    f"({err.strerror}); is the VM running?"
                ) from err
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
            continue
        sock.setblocking(True)
        return sock


def peer_allowed(address: Address, peer: object) -> bool:
    """Whether the agent may serve a connection from ``peer`` (the address ``accept`` gave)."""
    if isinstance(address, VsockAddress):
        return isinstance(peer, tuple) and len(peer) == 2 and peer[0] == VMADDR_CID_HOST
    return True  # a Unix socket is guarded by its file mode (0600)


class Listener:
    """The agent's listening socket."""

    def __init__(self, address: Address, *, backlog: int = 64) -> None:
        self.address = address
        self.sock = new_socket(address)
        try:
            if isinstance(address, VsockAddress):
                self.sock.bind((socket.VMADDR_CID_ANY, address.port))
            else:
                _remove_stale_socket(address.path)
                # Created with 0600 from the start: no moment where others could connect.
                old = os.umask(0o177)
                try:
                    self.sock.bind(address.path)
                finally:
                    os.umask(old)
            self.sock.listen(backlog)
        except OSError:
            self.sock.close()
            raise

    def accept(self, timeout: float | None) -> tuple[socket.socket, str] | None:
        """The next allowed connection and a description of its peer, or None when
        ``timeout`` passes first. Connections from peers other than the host are closed here
        and logged."""
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return None
        try:
            conn, peer = self.sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return None
        if not peer_allowed(self.address, peer):
            log.warning("refused a connection from %s: only the host (CID 2) is served", peer)
            conn.close()
            return None
        conn.setblocking(True)
        description = f"CID {peer[0]} port {peer[1]}" if isinstance(peer, tuple) else "unix"
        return conn, description

    def close(self) -> None:
        self.sock.close()
        if isinstance(self.address, UnixAddress):
            with contextlib.suppress(OSError):
                os.unlink(self.address.path)


def _remove_stale_socket(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
