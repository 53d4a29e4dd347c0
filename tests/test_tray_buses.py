"""The tray end to end: a guest bus and a host bus (real dbus-daemons) joined over a Unix socket.

A test app registers an item with a menu on the guest's bus; the guest side reads it and sends
it to the host side, which shows it on the host's bus, where a panel (a StatusNotifierWatcher)
reads it back: title, pixmap framed in the VM's colour, menu. Clicks go back to the app.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import Variant
from dbus_fast.aio import MessageBus
from PIL import Image

from tests.tray_buses import App, Panel, needs_dbus, solid, start_bus, until
from vmsilo_nix.channel.transport import UnixAddress
from vmsilo_nix.tray import guest, protocol
from vmsilo_nix.tray.host import TrayHost, VmSpec
from vmsilo_nix.tray.transport import serve

pytestmark = needs_dbus

RED = (204, 0, 0)
NAME = re.compile(rf"org\.kde\.StatusNotifierItem-{os.getpid()}-\d+")


class Guest:
    """The guest side of one VM: its bus, its watcher, its listening socket."""

    def __init__(self, bus_address: str, socket: Path) -> None:
        self.bus_address = bus_address
        self.address = UnixAddress(str(socket))
        self.server: guest.GuestServer | None = None
        self.listener: asyncio.Server | None = None

    async def start(self) -> None:
        bus = await MessageBus(bus_address=self.bus_address).connect()
        self.server = guest.GuestServer(bus)
        await self.server.items.start()
        self.listener = await serve(self.address, protocol.FROM_HOST, self.server.handle)

    async def stop(self) -> None:
        """The VM going away: its listener, its connection and its bus all close."""
        assert self.server is not None and self.listener is not None
        self.listener.close()
        link = self.server._current
        if link is not None:
            link.writer.transport.abort()
        self.server.items.bus.disconnect()


@pytest.fixture
def buses(tmp_path: Path) -> Iterator[tuple[str, str]]:
    with start_bus(tmp_path / "guest-bus") as g, start_bus(tmp_path / "host-bus") as h:
        yield g, h


@asynccontextmanager
async def tray(
    buses: tuple[str, str], tmp_path: Path
) -> AsyncIterator[tuple[Guest, Panel, TrayHost]]:
    guest_bus, host_bus = buses
    panel = await Panel.start(host_bus)
    g = Guest(guest_bus, tmp_path / "tray15.sock")
    await g.start()
    host = TrayHost([VmSpec("work", RED, g.address)], host_bus)
    task = asyncio.ensure_future(host.run())
    try:
        yield g, panel, host
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def run(buses: tuple[str, str], tmp_path: Path, body: Callable[..., Awaitable[None]]) -> None:
    async def main() -> None:
        async with tray(buses, tmp_path) as (g, panel, host):
            await asyncio.wait_for(body(g, panel, host), 30)

    asyncio.run(main())


def pixels(width: int, data: bytes) -> Callable[[int, int], tuple[int, ...]]:
    return lambda x, y: tuple(data[(y * width + x) * 4 : (y * width + x) * 4 + 4])


def test_an_app_item_is_shown_on_the_host_framed_titled_and_clickable(
    buses: tuple[str, str], tmp_path: Path
) -> None:
    async def body(g: Guest, panel: Panel, host: TrayHost) -> None:
        guest_bus, _ = buses
        app = await App.start(guest_bus)
        reply = await app.register()
        assert reply is not None and not reply.error_name
        (service,) = await until(panel.services, what="the host item")
        assert NAME.fullmatch(service)

        props = await panel.props(service)
        assert props["Title"] == "[work] Chat"
        assert props["Id"].startswith("vmsilo-work-")
        assert props["Category"] == "Communications"
        assert props["Status"] == "Active"
        assert props["WindowId"] == 0
        assert props["IconName"] == props["IconThemePath"] == props["AttentionIconName"] == ""
        assert props["Menu"] == "/MenuBar"
        assert list(props["ToolTip"]) == ["", [], "[work] Chat", "3 unread"]
        ((w, h, data),) = props["IconPixmap"]
        assert (w, h, len(data)) == (16, 16, 16 * 16 * 4)
        at = pixels(w, data)
        frame = (255, *RED)
        assert [at(0, 0), at(15, 0), at(0, 15), at(15, 15), at(7, 0), at(0, 7)] == [frame] * 6
        assert at(1, 1) == at(8, 8) == (255, 10, 20, 30)

        async def menu() -> Any:
            layout = await panel.layout(service)
            return layout if layout[1][2] else None

        revision, (root_id, _props, children) = await until(menu, what="the menu")
        assert root_id == 0
        labels = [c.value[1]["label"].value for c in children]
        assert labels == ["_Open", "", "Status", "Quit"]
        assert children[1].value[1]["type"].value == "separator"
        status = children[2].value
        assert status[1]["children-display"].value == "submenu"
        (online,) = status[2]
        assert online.value[1]["label"].value == "Online"
        assert online.value[1]["toggle-type"].value == "radio"

        # A click on a menu entry reaches the app; an id not in the menu does not.
        for entry in (99, 4):
            await panel.call(
                service,
                "/MenuBar",
                "com.canonical.dbusmenu",
                "Event",
                "isvu",
                [entry, "clicked", Variant("i", 0), 0],
            )
        await until(lambda: app.menu.events, what="the click in the app")
        assert app.menu.events == [(4, "clicked")]

        # Activation and scrolling, without the host's coordinates.
        await panel.call(
            service,
            "/StatusNotifierItem",
            "org.kde.StatusNotifierItem",
            "Activate",
            "ii",
            [640, 480],
        )
        await panel.call(
            service,
            "/StatusNotifierItem",
            "org.kde.StatusNotifierItem",
            "Scroll",
            "is",
            [-3, "Vertical"],
        )
        await until(lambda: len(app.item.calls) == 2, what="the activation")
        assert app.item.calls == [("Activate", (0, 0)), ("Scroll", (-3, "vertical"))]

        # An icon change is forwarded and announced.
        app.item.pixmaps = [[24, 24, solid(24, 24, (255, 0, 255, 0))]]
        app.item.new_icon()

        async def new_icon() -> bool:
            ((w, _h, _d),) = (await panel.props(service))["IconPixmap"]
            return bool(w == 24)

        await until(new_icon, what="the new icon")
        await until(lambda: (service, "NewIcon") in _named(panel, host), what="NewIcon")

        # The menu changes.
        app.menu.root = [0, {}, [Variant("(ia{sv}av)", [7, {"label": Variant("s", "New")}, []])]]
        app.menu.revision += 1
        app.menu.layout_updated()

        async def new_menu() -> bool:
            _rev, (_id, _p, kids) = await panel.layout(service)
            return [k.value[0] for k in kids] == [7]

        await until(new_menu, what="the new menu")
        assert (await panel.layout(service))[0] > revision

    run(buses, tmp_path, body)


def _named(panel: Panel, host: TrayHost) -> list[tuple[str, str]]:
    """The panel's signals with the sender's unique name replaced by the item's name."""
    owners = {
        item.bus.unique_name: item.name
        for link in host.links
        for item in link.items.values()
        if item.bus is not None
    }
    return [(owners.get(s, s), m) for s, m in panel.signals]


def test_markup_and_bidi_from_an_app_arrive_as_plain_text(
    buses: tuple[str, str], tmp_path: Path
) -> None:
    async def body(g: Guest, panel: Panel, host: TrayHost) -> None:
        app = await App.start(buses[0])
        app.item.title_ = "<b>Bank</b>\u202e\x07 &amp; co"
        app.item.tooltip_ = ["", [], "t", '<a href="file:///etc/passwd">x</a> a < b']
        await app.register()
        (service,) = await until(panel.services)
        props = await panel.props(service)
        assert props["Title"] == "[work] Bank  & co"
        # Escaped for panels that read tooltips as markup: shown as the plain text it is.
        assert props["ToolTip"][3] == "x a &lt; b"

    run(buses, tmp_path, body)


def test_an_icon_name_is_rendered_in_the_guest(buses: tuple[str, str], tmp_path: Path) -> None:
    theme = tmp_path / "theme"
    theme.mkdir()
    Image.new("RGBA", (48, 48), (0, 0, 255, 255)).save(theme / "chat-unread.png")

    async def body(g: Guest, panel: Panel, host: TrayHost) -> None:
        app = await App.start(buses[0])
        app.item.pixmaps = []
        app.item.icon_name = "chat-unread"
        app.item.theme_path = str(theme)
        await app.register()
        (service,) = await until(panel.services)
        props = await panel.props(service)
        assert props["IconName"] == ""
        sizes = [(w, h) for w, h, _ in props["IconPixmap"]]
        assert sizes == [(48, 48), (32, 32), (22, 22)]
        w, _h, data = props["IconPixmap"][0]
        at = pixels(w, data)
        assert at(0, 0) == (255, *RED)
        assert at(10, 10) == (255, 0, 0, 255)  # ARGB: blue

    run(buses, tmp_path, body)


def test_registration_by_well_known_name_and_not_by_someone_elses(
    buses: tuple[str, str], tmp_path: Path
) -> None:
    async def body(g: Guest, panel: Panel, host: TrayHost) -> None:
        app = await App.start(buses[0], name="org.kde.StatusNotifierItem-77-1")
        other = await App.start(buses[0])
        await other.register("org.kde.StatusNotifierItem-77-1")  # not its name
        await asyncio.sleep(0.3)
        assert panel.services() == []
        assert g.server is not None and g.server.items.items == {}
        await app.register("org.kde.StatusNotifierItem-77-1")
        (service,) = await until(panel.services)
        assert NAME.fullmatch(service)  # the host's name, not the guest's

    run(buses, tmp_path, body)


def test_the_app_leaving_removes_its_icon(buses: tuple[str, str], tmp_path: Path) -> None:
    async def body(g: Guest, panel: Panel, host: TrayHost) -> None:
        app = await App.start(buses[0])
        await app.register()
        await until(panel.services)
        app.bus.disconnect()
        await until(lambda: not panel.services(), what="the icon to go")

    run(buses, tmp_path, body)


def test_the_vm_going_removes_its_icons_and_coming_back_restores_them(
    buses: tuple[str, str], tmp_path: Path
) -> None:
    async def body(g: Guest, panel: Panel, host: TrayHost) -> None:
        app = await App.start(buses[0])
        await app.register()
        await until(panel.services)
        await g.stop()
        await until(lambda: not panel.services(), timeout=2, what="the icons to go")
        await g.start()
        app2 = await App.start(buses[0])
        await app2.register()
        (service,) = await until(panel.services, timeout=10, what="the reconnection")
        assert (await panel.props(service))["Title"] == "[work] Chat"

    run(buses, tmp_path, body)


def test_a_panel_that_starts_later_still_gets_the_items(
    buses: tuple[str, str], tmp_path: Path
) -> None:
    async def main() -> None:
        guest_bus, host_bus = buses
        g = Guest(guest_bus, tmp_path / "tray15-late.sock")
        await g.start()
        host = TrayHost([VmSpec("work", RED, g.address)], host_bus)
        task = asyncio.ensure_future(host.run())
        app = await App.start(guest_bus)
        await app.register()
        await until(lambda: host.links[0].items, what="the host item")
        panel = await Panel.start(host_bus)
        (service,) = await until(panel.services, what="re-registration")
        assert NAME.fullmatch(service)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    asyncio.run(asyncio.wait_for(main(), 30))
