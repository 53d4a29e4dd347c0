"""The tray's frames over the channel's sockets, and its session bus, for asyncio.

The addresses, the socket kinds and the rule of who may connect (only the host, CID 2, over
vsock; a 0600 Unix socket in tests) are the channel's (:mod:`vmsilo_nix.channel.transport`);
this module only drives them from an event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from dbus_fast import BusType
from dbus_fast import Message as BusMessage
from dbus_fast.aio import MessageBus
from dbus_fast.errors import AuthError, DBusError, InvalidAddressError

from vmsilo_nix.channel.transport import (
    Address,
    Listener,
    UnixAddress,
    VsockAddress,
    new_socket,
    peer_allowed,
    sockaddr,
)
from vmsilo_nix.errors import VmsiloError

from .bus_names import DBUS, DBUS_PATH
from .protocol import DEFAULT_PORT, FrameReader, Message, MessageType, encode

log = logging.getLogger("vmsilo.tray")

READ_CHUNK = 64 * 1024


def parse_address(text: str) -> Address:
    """``vsock:CID[:PORT]``, ``vsock::PORT`` (listen on any CID) or ``unix:PATH``."""
    kind, sep, rest = text.partition(":")
    if sep and kind == "unix" and rest:
        return UnixAddress(rest)
    if sep and kind == "vsock":
        cid, _, port = rest.partition(":")
        try:
            return VsockAddress(
                int(cid) if cid else socket.VMADDR_CID_ANY, int(port) if port else DEFAULT_PORT
            )
        except ValueError:
            pass
    raise ValueError(f"{text!r} is not an address (vsock:CID[:PORT] or unix:PATH)")


class Link:
    """One connection: messages out, messages in (only those ``allowed`` from the peer)."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        allowed: frozenset[MessageType],
    ) -> None:
        self.reader = reader
        self.writer = writer
        self._frames = FrameReader(allowed)
        self.last_received = time.monotonic()

    async def send(self, msg: Message) -> None:
        self.writer.write(encode(msg))
        await self.writer.drain()

    async def messages(self) -> AsyncIterator[Message]:
        """Until the peer closes; raises ProtocolError on anything the protocol refuses."""
        while data := await self.reader.read(READ_CHUNK):
            self.last_received = time.monotonic()
            for msg in self._frames.feed(data):
                yield msg

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, ConnectionError):
            await self.writer.wait_closed()


async def connect(address: Address, allowed: frozenset[MessageType]) -> Link:
    """One attempt; the caller retries (OSError while the VM is down or booting)."""
    sock = new_socket(address)
    try:
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, sockaddr(address))
        reader, writer = await asyncio.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise
    return Link(reader, writer, allowed)


async def serve(
    address: Address,
    allowed: frozenset[MessageType],
    handle: Callable[[Link], Awaitable[None]],
) -> asyncio.Server:
    """Listen on ``address``; each allowed connection runs ``handle`` (others are closed)."""
    listener = Listener(address)
    listener.sock.setblocking(False)

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        if not peer_allowed(address, peer):
            log.warning("refused a connection from %s: only the host (CID 2) is served", peer)
            writer.close()
            return
        link = Link(reader, writer, allowed)
        try:
            await handle(link)
        except asyncio.CancelledError:
            pass  # shutting down; asyncio would log a cancelled connection task as an error
        finally:
            await link.close()

    return await asyncio.start_server(accepted, sock=listener.sock)


class TrayError(VmsiloError):
    """The tray cannot work: no session bus to show items on or read them from."""


async def add_match(bus: MessageBus, rule: str) -> None:
    """Have the bus send ``bus`` the signals that match ``rule``."""
    await bus.call(
        BusMessage(
            destination=DBUS,
            path=DBUS_PATH,
            interface=DBUS,
            member="AddMatch",
            signature="s",
            body=[rule],
        )
    )


async def session_bus(address: str | None) -> MessageBus:
    """A connection to the session bus (``address``, or the environment's)."""
    where = address or os.environ.get("DBUS_SESSION_BUS_ADDRESS") or "not set"
    try:
        bus = MessageBus(bus_address=address) if address else MessageBus(bus_type=BusType.SESSION)
        return await bus.connect()
    except (OSError, InvalidAddressError, AuthError, DBusError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise TrayError(f"cannot connect to the D-Bus session bus ({where}): {reason}") from None
