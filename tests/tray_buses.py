"""Real D-Bus session buses and a tray app for the tray tests.

:func:`start_bus` runs Debian's dbus-daemon on a socket of its own (one stands for the guest's
session, one for the host's). :class:`App` is a StatusNotifierItem with a DBusMenu as an app
exports it, recording every call it gets. :class:`Panel` is the host panel's side: a
StatusNotifierWatcher (the guest module's own) that remembers who registered, plus readers of
the registered items' properties and menus.
"""

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import pytest
from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusBool, DBusInt32, DBusSignature, DBusStr, DBusUInt32
from dbus_fast.constants import PropertyAccess
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property, dbus_signal

from vmsilo_nix.tray import guest

needs_dbus = pytest.mark.skipif(
    shutil.which("dbus-daemon") is None, reason="dbus-daemon is not installed (Debian: dbus)"
)

_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


@contextmanager
def start_bus(directory: Path) -> Iterator[str]:
    """A private session bus; yields its address."""
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "bus.conf"
    config.write_text(_CONFIG.format(socket=directory / "bus"))
    proc = subprocess.Popen(
        ["dbus-daemon", f"--config-file={config}", "--nofork", "--print-address=1"],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().strip()
        assert address.startswith("unix:"), address
        yield address
    finally:
        proc.terminate()
        proc.wait(5)


Pixmaps = Annotated[list[Any], DBusSignature("a(iiay)")]
ToolTip = Annotated[list[Any], DBusSignature("(sa(iiay)ss)")]
Layout = Annotated[list[Any], DBusSignature("u(ia{sv}av)")]
RevisionParent = Annotated[list[int], DBusSignature("ui")]
StrList = Annotated[list[str], DBusSignature("as")]
Path_ = Annotated[str, DBusSignature("o")]


def solid(width: int, height: int, argb: tuple[int, int, int, int]) -> bytes:
    return bytes(argb) * (width * height)


class AppItem(ServiceInterface):
    """org.kde.StatusNotifierItem of a test app; ``props`` may be changed and ``emit`` called."""

    def __init__(self) -> None:
        super().__init__("org.kde.StatusNotifierItem")
        self.title_ = "Chat"
        self.tooltip_ = ["", [], "Chat", "3 unread"]
        self.pixmaps: list[Any] = [[16, 16, solid(16, 16, (255, 10, 20, 30))]]
        self.icon_name = ""
        self.theme_path = ""
        self.calls: list[tuple[str, tuple[Any, ...]]] = []
        self.status_ = "Active"

    @dbus_property(access=PropertyAccess.READ, name="Category")
    def category(self) -> DBusStr:
        return "Communications"

    @dbus_property(access=PropertyAccess.READ, name="Id")
    def id_(self) -> DBusStr:
        return "chat-app"

    @dbus_property(access=PropertyAccess.READ, name="Title")
    def title(self) -> DBusStr:
        return self.title_

    @dbus_property(access=PropertyAccess.READ, name="Status")
    def status(self) -> DBusStr:
        return self.status_

    @dbus_property(access=PropertyAccess.READ, name="WindowId")
    def window_id(self) -> DBusInt32:
        return 1234

    @dbus_property(access=PropertyAccess.READ, name="IconName")
    def icon(self) -> DBusStr:
        return self.icon_name

    @dbus_property(access=PropertyAccess.READ, name="IconThemePath")
    def icon_theme_path(self) -> DBusStr:
        return self.theme_path

    @dbus_property(access=PropertyAccess.READ, name="IconPixmap")
    def icon_pixmap(self) -> Pixmaps:
        return self.pixmaps

    @dbus_property(access=PropertyAccess.READ, name="ToolTip")
    def tool_tip(self) -> ToolTip:
        return self.tooltip_

    @dbus_property(access=PropertyAccess.READ, name="ItemIsMenu")
    def item_is_menu(self) -> DBusBool:
        return False

    @dbus_property(access=PropertyAccess.READ, name="Menu")
    def menu(self) -> Path_:
        return "/AppMenu"

    @dbus_method(name="Activate")
    def activate(self, x: DBusInt32, y: DBusInt32) -> None:
        self.calls.append(("Activate", (x, y)))

    @dbus_method(name="SecondaryActivate")
    def secondary_activate(self, x: DBusInt32, y: DBusInt32) -> None:
        self.calls.append(("SecondaryActivate", (x, y)))

    @dbus_method(name="Scroll")
    def scroll(self, delta: DBusInt32, orientation: DBusStr) -> None:
        self.calls.append(("Scroll", (delta, orientation)))

    @dbus_signal(name="NewIcon")
    def new_icon(self) -> None:
        pass

    @dbus_signal(name="NewTitle")
    def new_title(self) -> None:
        pass

    @dbus_signal(name="NewToolTip")
    def new_tool_tip(self) -> None:
        pass


def entry(ident: int, label: str, *children: list[Any], **extra: Variant) -> list[Any]:
    props = {"label": Variant("s", label), **extra}
    if children:
        props["children-display"] = Variant("s", "submenu")
    return [ident, props, [Variant("(ia{sv}av)", c) for c in children]]


class AppMenu(ServiceInterface):
    def __init__(self) -> None:
        super().__init__("com.canonical.dbusmenu")
        self.revision = 1
        self.root = entry(
            0,
            "",
            entry(1, "_Open"),
            entry(2, "", type=Variant("s", "separator")),
            entry(3, "Status", entry(4, "Online", **{"toggle-type": Variant("s", "radio")})),
            entry(5, "Quit"),
        )
        self.events: list[tuple[int, str]] = []

    @dbus_method(name="GetLayout")
    def get_layout(self, parent: DBusInt32, depth: DBusInt32, names: StrList) -> Layout:
        return [self.revision, self.root]

    @dbus_method(name="Event")
    def event(
        self,
        ident: DBusInt32,
        event_id: DBusStr,
        data: Annotated[Any, DBusSignature("v")],
        ts: DBusUInt32,
    ) -> None:
        self.events.append((ident, event_id))

    @dbus_method(name="AboutToShow")
    def about_to_show(self, ident: DBusInt32) -> DBusBool:
        return False

    @dbus_signal(name="LayoutUpdated")
    def layout_updated(self) -> RevisionParent:
        return [self.revision, 0]


class App:
    """A tray app on a bus: its item at /StatusNotifierItem, its menu at /AppMenu."""

    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus
        self.item = AppItem()
        self.menu = AppMenu()
        bus.export("/StatusNotifierItem", self.item)
        bus.export("/AppMenu", self.menu)

    @classmethod
    async def start(cls, address: str, name: str | None = None) -> "App":
        app = cls(await MessageBus(bus_address=address).connect())
        if name:
            await app.bus.request_name(name)
        return app

    async def register(self, service: str | None = None) -> Message | None:
        return await self.bus.call(
            Message(
                destination="org.kde.StatusNotifierWatcher",
                path="/StatusNotifierWatcher",
                interface="org.kde.StatusNotifierWatcher",
                member="RegisterStatusNotifierItem",
                signature="s",
                body=[service or self.bus.unique_name],
            )
        )


class Panel:
    """The host's panel: owns the host's StatusNotifierWatcher and reads registered items."""

    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus
        self.items = guest.Items(bus, lambda _n: None, limit=1000)  # a panel shows all
        self.signals: list[tuple[str, str]] = []
        bus.add_message_handler(self._signal)

    def _signal(self, msg: Message) -> None:
        if msg.message_type is MessageType.SIGNAL and msg.member and msg.sender:
            self.signals.append((msg.sender, msg.member))

    @classmethod
    async def start(cls, address: str) -> "Panel":
        panel = cls(await MessageBus(bus_address=address).connect())
        await panel.items.start()
        return panel

    def services(self) -> list[str]:
        return [i.service for i in self.items.items.values()]

    async def call(  # noqa: PLR0917 - in the order D-Bus names a call's parts
        self,
        service: str,
        path: str,
        interface: str,
        member: str,
        signature: str = "",
        body: list[Any] | None = None,
    ) -> Any:
        reply = await self.bus.call(
            Message(
                destination=service,
                path=path,
                interface=interface,
                member=member,
                signature=signature,
                body=body or [],
            )
        )
        assert reply is not None
        if reply.message_type is MessageType.ERROR:
            raise RuntimeError(f"{member}: {reply.error_name} {reply.body}")
        return reply.body

    async def props(self, service: str) -> dict[str, Any]:
        (values,) = await self.call(
            service,
            "/StatusNotifierItem",
            "org.freedesktop.DBus.Properties",
            "GetAll",
            "s",
            ["org.kde.StatusNotifierItem"],
        )
        return {k: v.value for k, v in values.items()}

    async def layout(self, service: str) -> Any:
        return await self.call(
            service, "/MenuBar", "com.canonical.dbusmenu", "GetLayout", "iias", [0, -1, []]
        )


async def until(check: Any, timeout: float = 5.0, what: str = "the condition") -> Any:
    """Poll ``check`` (sync or async) until it returns something true."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
