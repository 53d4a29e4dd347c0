"""A hostile guest against the real host side on a real host bus.

Each test runs two VMs: "evil", a socket that sends what the test scripts, and "work", a well
behaved guest with one item. Whatever evil sends, it may lose its own icons and nothing more:
work's icon stays, the host keeps running, and evil is reconnected.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import struct
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.tray_buses import Panel, needs_dbus, start_bus, until
from vmsilo_nix.channel.transport import UnixAddress
from vmsilo_nix.tray import host as host_mod
from vmsilo_nix.tray import protocol
from vmsilo_nix.tray.host import TrayHost, VmSpec

pytestmark = needs_dbus

GOOD = protocol.Item(item=0, title="good", icon=(protocol.Pixmap(1, 1, b"\xff\x01\x02\x03"),))


class FakeGuest:
    """A Unix socket that answers each host connection with ``script(writer, n)``."""

    def __init__(self, path: Path, script: Callable[[asyncio.StreamWriter, int], Awaitable[None]]):
        self.path = path
        self.script = script
        self.connections = 0
        self.received = bytearray()

    async def start(self) -> asyncio.Server:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.script(writer, self.connections)
                while data := await reader.read(65536):
                    self.received += data
            except (ConnectionError, OSError):
                pass
            finally:
                writer.close()

        return await asyncio.start_unix_server(handle, path=str(self.path))


async def honest(writer: asyncio.StreamWriter, _n: int) -> None:
    writer.write(protocol.encode(protocol.Hello()) + protocol.encode(GOOD))
    await writer.drain()


def raw(kind: int, body: object) -> bytes:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return struct.pack(">BI", kind, len(payload)) + payload


def item_body(number: int = 0, **changes: Any) -> dict[str, Any]:
    body = json.loads(protocol.encode(protocol.Item(item=number, title="evil"))[5:])
    body.update(changes)
    return body  # type: ignore[no-any-return]


@pytest.fixture
def host_bus(tmp_path: Path) -> Iterator[str]:
    with start_bus(tmp_path / "host-bus") as address:
        yield address


def scenario(
    host_bus: str,
    tmp_path: Path,
    evil_script: Callable[[asyncio.StreamWriter, int], Awaitable[None]],
    check: Callable[[Panel, FakeGuest, TrayHost], Awaitable[None]],
) -> None:
    async def main() -> None:
        panel = await Panel.start(host_bus)
        evil = FakeGuest(tmp_path / "evil15.sock", evil_script)
        work = FakeGuest(tmp_path / "work15.sock", honest)
        servers = [await evil.start(), await work.start()]
        host = TrayHost(
            [
                VmSpec("evil", (0, 0, 255), UnixAddress(str(evil.path))),
                VmSpec("work", (204, 0, 0), UnixAddress(str(work.path))),
            ],
            host_bus,
        )
        task = asyncio.ensure_future(host.run())
        try:
            await until(lambda: len(host.links[1].items) == 1, what="work's icon")
            await asyncio.wait_for(check(panel, evil, host), 20)
            # work is untouched, and its icon is still on the panel.
            assert [i.state.title for i in host.links[1].items.values()] == ["good"]
            work_names = [i.name for i in host.links[1].items.values()]
            assert set(work_names) <= set(panel.services())
            assert not task.done()
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            for s in servers:
                s.close()

    asyncio.run(main())


async def dropped_and_retried(panel: Panel, evil: FakeGuest, host: TrayHost) -> None:
    await until(lambda: evil.connections >= 2, timeout=5, what="the reconnection")
    assert host.links[0].items == {} or evil.connections >= 2


def once(*frames: bytes) -> Callable[[asyncio.StreamWriter, int], Awaitable[None]]:
    """Send ``frames`` on the first connection, only HELLO on later ones."""

    async def script(writer: asyncio.StreamWriter, n: int) -> None:
        writer.write(protocol.encode(protocol.Hello()))
        if n == 1:
            for f in frames:
                writer.write(f)
        await writer.drain()

    return script


HELLO = protocol.encode(protocol.Hello())


@pytest.mark.parametrize(
    "frames",
    [
        pytest.param([raw(protocol.MessageType.ITEM, item_body(bus_name=":1.1"))], id="bus-name"),
        pytest.param([raw(protocol.MessageType.ITEM, item_body(path="/x"))], id="object-path"),
        pytest.param(
            [raw(protocol.MessageType.ITEM, item_body(icon_name="system-lock-screen"))],
            id="icon-name",
        ),
        pytest.param(
            [raw(protocol.MessageType.ITEM, item_body(icon_theme_path="/etc"))], id="theme-path"
        ),
        pytest.param([raw(protocol.MessageType.ITEM, item_body(title="a\x00b"))], id="nul"),
        pytest.param(
            [raw(protocol.MessageType.ITEM, item_body(title="\u2067[banking]\u2069"))], id="bidi"
        ),
        pytest.param(
            [raw(protocol.MessageType.ITEM, item_body(tooltip_text='<img src="file:///x">'))],
            id="markup",
        ),
        pytest.param(
            [
                raw(
                    protocol.MessageType.ITEM,
                    item_body(
                        icon=[
                            {
                                "w": 512,
                                "h": 512,
                                "argb": base64.b64encode(bytes(4 * 1024)).decode(),
                            }
                        ]
                    ),
                )
            ],
            id="oversized-pixmap",
        ),
        pytest.param(
            [
                raw(
                    protocol.MessageType.ITEM,
                    item_body(
                        icon=[{"w": 4, "h": 4, "argb": base64.b64encode(bytes(60)).decode()}]
                    ),
                )
            ],
            id="short-pixmap",
        ),
        pytest.param([struct.pack(">BI", protocol.MessageType.ITEM, 64 * 1024 * 1024)], id="huge"),
        pytest.param([raw(protocol.MessageType.MENU_EVENT, {})], id="host-only-type"),
        pytest.param([raw(77, b"")], id="unknown-type"),
        pytest.param(
            [raw(protocol.MessageType.MENU, {"item": 5, "root": {}})], id="menu-unknown-item"
        ),
        pytest.param([raw(protocol.MessageType.REMOVE, {"item": 9})], id="remove-unknown-item"),
        pytest.param([HELLO], id="second-hello"),
        pytest.param([b"GET / HTTP/1.0\r\n\r\n"], id="garbage"),
    ],
)
def test_a_refused_frame_drops_only_that_vm(
    host_bus: str, tmp_path: Path, frames: list[bytes]
) -> None:
    first = protocol.encode(protocol.Item(item=0, title="evil"))

    async def check(panel: Panel, evil: FakeGuest, host: TrayHost) -> None:
        await dropped_and_retried(panel, evil, host)
        assert host.links[0].items == {}

    scenario(host_bus, tmp_path, once(first, *frames), check)


def test_a_flood_of_updates_is_cut_off(host_bus: str, tmp_path: Path) -> None:
    updates = [
        protocol.encode(protocol.Item(item=0, title=f"evil {i}"))
        for i in range(int(host_mod.BURST * 3))
    ]

    async def check(panel: Panel, evil: FakeGuest, host: TrayHost) -> None:
        await dropped_and_retried(panel, evil, host)
        assert host.links[0].items == {}

    scenario(host_bus, tmp_path, once(*updates), check)


def test_too_many_items_lose_all_of_that_vms_icons(host_bus: str, tmp_path: Path) -> None:
    items = [
        protocol.encode(protocol.Item(item=i, title="evil")) for i in range(protocol.MAX_ITEMS + 1)
    ]

    async def check(panel: Panel, evil: FakeGuest, host: TrayHost) -> None:
        await dropped_and_retried(panel, evil, host)
        assert host.links[0].items == {}
        # The host never had more than the cap on its bus.
        assert len(panel.services()) <= protocol.MAX_ITEMS + 1

    scenario(host_bus, tmp_path, once(*items), check)


def test_a_guest_within_the_limits_keeps_its_icons(host_bus: str, tmp_path: Path) -> None:
    items = [
        protocol.encode(protocol.Item(item=i, title=f"evil {i}")) for i in range(protocol.MAX_ITEMS)
    ]

    async def check(panel: Panel, evil: FakeGuest, host: TrayHost) -> None:
        await until(lambda: len(host.links[0].items) == protocol.MAX_ITEMS, what="16 items")
        await until(lambda: len(panel.services()) == protocol.MAX_ITEMS + 1, what="on the panel")
        await asyncio.sleep(0.3)
        assert evil.connections == 1

    scenario(host_bus, tmp_path, once(*items), check)


def test_silence_and_a_missing_hello_drop_the_connection(
    host_bus: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(host_mod, "HELLO_TIMEOUT", 0.3)

    async def mute(writer: asyncio.StreamWriter, n: int) -> None:
        pass

    async def check(panel: Panel, evil: FakeGuest, host: TrayHost) -> None:
        await dropped_and_retried(panel, evil, host)

    scenario(host_bus, tmp_path, mute, check)


def test_clicks_reach_the_guest_without_coordinates(host_bus: str, tmp_path: Path) -> None:
    async def check(panel: Panel, evil: FakeGuest, host: TrayHost) -> None:
        (item,) = await until(lambda: list(host.links[0].items.values()))
        await until(lambda: item.name in panel.services())
        await panel.call(
            item.name,
            "/StatusNotifierItem",
            "org.kde.StatusNotifierItem",
            "Activate",
            "ii",
            [1234, 567],
        )

        def sent() -> list[protocol.Message]:
            got = protocol.FrameReader(protocol.FROM_HOST).feed(bytes(evil.received))
            return [m for m in got if not isinstance(m, protocol.Hello)]

        got = await until(sent, what="ACTIVATE")
        assert got == [protocol.Activate(0, "primary")]

    scenario(host_bus, tmp_path, once(protocol.encode(protocol.Item(item=0))), check)


def test_a_guest_dropped_again_and_again_waits_longer_each_time(
    host_bus: str, tmp_path: Path
) -> None:
    times: list[float] = []

    async def always_bad(writer: asyncio.StreamWriter, n: int) -> None:
        times.append(asyncio.get_running_loop().time())
        writer.write(HELLO + raw(77, b""))
        await writer.drain()

    async def check(panel: Panel, evil: FakeGuest, host: TrayHost) -> None:
        await until(lambda: evil.connections >= 4, timeout=10, what="four attempts")
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert gaps[0] >= 0.3 and gaps[2] >= 1.4  # 0.4 s, 0.8 s, 1.6 s
        assert all(later > earlier for earlier, later in itertools.pairwise(gaps))

    scenario(host_bus, tmp_path, always_bad, check)


def test_stopping_the_host_while_it_drops_a_guest_ends_it(host_bus: str, tmp_path: Path) -> None:
    """A stop that arrives while a link winds a dropped connection down is not swallowed (the
    link would otherwise reconnect forever and the host never exit)."""

    async def always_bad(writer: asyncio.StreamWriter, n: int) -> None:
        writer.write(HELLO + raw(77, b""))
        await writer.drain()

    async def main() -> None:
        evil = FakeGuest(tmp_path / "evil15-stop.sock", always_bad)
        server = await evil.start()
        link = host_mod.VmLink(VmSpec("evil", (0, 0, 255), UnixAddress(str(evil.path))), host_bus)
        real_send = link._send

        async def send_then_stop(conn: Any) -> None:  # the stop lands in serve's clean-up
            try:
                await real_send(conn)
            finally:
                task.cancel()

        link._send = send_then_stop  # type: ignore[method-assign, assignment]
        task = asyncio.ensure_future(link.run())
        try:
            await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5)
        finally:
            server.close()
        assert task.cancelled()

    asyncio.run(main())
