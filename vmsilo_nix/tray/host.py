"""The host side: each guest item as a host StatusNotifierItem, in the VM's colour.

One process serves every VM of the host session. For each VM a :class:`VmLink` connects to the
guest's tray port (retrying while the VM is down), reads only protocol frames, and keeps a
:class:`HostItem` per guest item: its own bus connection owning a name the host chose
(``org.kde.StatusNotifierItem-<pid>-<n>``), ``/StatusNotifierItem`` and a ``/MenuBar`` DBusMenu
mirror, registered with the host's StatusNotifierWatcher. Titles say the VM's name, every pixmap
gets a border in the VM's colour, and the guest's clicks go back without coordinates.

Any frame the protocol refuses, a flood (more than :data:`RATE` frames a second after a burst
of :data:`BURST`), an event for an unknown item, or silence longer than :data:`SILENCE` drops
the connection: the VM's icons go at once, and the link reconnects with backoff. Nothing else
of the guest reaches the host's bus: no D-Bus message is relayed, and no file descriptor.
"""

import asyncio
import contextlib
import html
import logging
import os
import time
from collections.abc import Sequence
from typing import Annotated, Any

import attrs
from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import (
    DBusBool,
    DBusInt32,
    DBusObjectPath,
    DBusSignature,
    DBusStr,
    DBusUInt32,
    DBusVariant,
)
from dbus_fast.constants import PropertyAccess
from dbus_fast.errors import DBusError
from dbus_fast.service import (
    ServiceInterface,
    dbus_method,
    dbus_property,
    dbus_signal,
)

from vmsilo_nix.channel.transport import Address

from . import bus_names, protocol
from .protocol import Pixmap, Pixmaps, ProtocolError
from .transport import Link, TrayError, add_match, connect, session_bus

log = logging.getLogger("vmsilo.tray")

MENU_PATH = "/MenuBar"  # where each item's menu is, our choice

RATE = 40.0  # frames a second a guest may send, after a burst of
BURST = 128
SILENCE = 30.0  # seconds without a frame (the guest pings every 10) before giving up
HELLO_TIMEOUT = 10.0
BACKOFF = (0.2, 5.0)  # first and longest wait between connection attempts
PENALTY = 60.0  # the longest wait after dropping a guest for what it sent

PixmapList = Annotated[list[Any], DBusSignature("a(iiay)")]
ToolTip = Annotated[list[Any], DBusSignature("(sa(iiay)ss)")]
Layout = Annotated[list[Any], DBusSignature("u(ia{sv}av)")]
GroupProperties = Annotated[list[Any], DBusSignature("a(ia{sv})")]
IntList = Annotated[list[int], DBusSignature("ai")]
StrList = Annotated[list[str], DBusSignature("as")]
Events = Annotated[list[Any], DBusSignature("a(isvu)")]
TwoIntLists = Annotated[list[Any], DBusSignature("aiai")]
RevisionParent = Annotated[list[int], DBusSignature("ui")]
Removed = Annotated[list[Any], DBusSignature("a(ias)")]


@attrs.frozen
class VmSpec:
    name: str
    color: tuple[int, int, int]
    address: Address


# --- pixmaps ---------------------------------------------------------------------------------


def border_width(width: int, height: int) -> int:
    """1 pixel for panel-sized icons, more for larger ones, so the frame stays visible."""
    return max(1, min(width, height) // 16)


def bordered(pixmap: Pixmap, color: tuple[int, int, int]) -> Pixmap:
    """``pixmap`` with an opaque frame in ``color`` over its outer pixels: a guest cannot
    send an icon that looks like a host icon or another VM's."""
    w, h = pixmap.width, pixmap.height
    b = border_width(w, h)
    data = bytearray(pixmap.data)
    px = bytes((0xFF, *color))
    row = px * w
    for y in range(h):
        start = y * w * 4
        if y < b or y >= h - b:
            data[start : start + w * 4] = row
        else:
            data[start : start + b * 4] = px * b
            data[start + (w - b) * 4 : start + w * 4] = px * b
    return Pixmap(w, h, bytes(data))


def placeholder(color: tuple[int, int, int], size: int = 22) -> Pixmap:
    """What an item without an icon shows: an empty frame in the VM's colour."""
    return bordered(Pixmap(size, size, bytes(size * size * 4)), color)


def _dbus_pixmaps(pixmaps: Pixmaps) -> list[Any]:
    return [[p.width, p.height, p.data] for p in pixmaps]


# --- the exported objects --------------------------------------------------------------------


class ItemInterface(ServiceInterface):
    """``org.kde.StatusNotifierItem`` of one guest item, from host-made values only."""

    def __init__(self, item: "HostItem") -> None:
        super().__init__(bus_names.ITEM_IFACE)
        self.item = item

    def _s(self) -> "protocol.Item":
        return self.item.state

    @dbus_property(access=PropertyAccess.READ, name="Category")
    def category(self) -> DBusStr:
        return self._s().category

    @dbus_property(access=PropertyAccess.READ, name="Id")
    def id_(self) -> DBusStr:
        return f"vmsilo-{self.item.vm.name}-{self.item.serial}"

    @dbus_property(access=PropertyAccess.READ, name="Title")
    def title(self) -> DBusStr:
        return self.item.title()

    @dbus_property(access=PropertyAccess.READ, name="Status")
    def status(self) -> DBusStr:
        return self._s().status

    @dbus_property(access=PropertyAccess.READ, name="WindowId")
    def window_id(self) -> DBusInt32:
        return 0

    @dbus_property(access=PropertyAccess.READ, name="IconThemePath")
    def icon_theme_path(self) -> DBusStr:
        return ""

    @dbus_property(access=PropertyAccess.READ, name="IconName")
    def icon_name(self) -> DBusStr:
        return ""  # pixmaps only: a name would be looked up in the host's themes

    @dbus_property(access=PropertyAccess.READ, name="IconPixmap")
    def icon_pixmap(self) -> PixmapList:
        return _dbus_pixmaps(self.item.icon)

    @dbus_property(access=PropertyAccess.READ, name="OverlayIconName")
    def overlay_icon_name(self) -> DBusStr:
        return ""

    @dbus_property(access=PropertyAccess.READ, name="OverlayIconPixmap")
    def overlay_icon_pixmap(self) -> PixmapList:
        return _dbus_pixmaps(self.item.overlay_icon)

    @dbus_property(access=PropertyAccess.READ, name="AttentionIconName")
    def attention_icon_name(self) -> DBusStr:
        return ""

    @dbus_property(access=PropertyAccess.READ, name="AttentionIconPixmap")
    def attention_icon_pixmap(self) -> PixmapList:
        return _dbus_pixmaps(self.item.attention_icon)

    @dbus_property(access=PropertyAccess.READ, name="AttentionMovieName")
    def attention_movie_name(self) -> DBusStr:
        return ""

    @dbus_property(access=PropertyAccess.READ, name="ToolTip")
    def tool_tip(self) -> ToolTip:
        s = self._s()
        # The spec lets panels read the text as markup: escaped, it is plain text.
        return ["", [], self.item.title(s.tooltip_title or s.title), html.escape(s.tooltip_text)]

    @dbus_property(access=PropertyAccess.READ, name="ItemIsMenu")
    def item_is_menu(self) -> DBusBool:
        return self._s().item_is_menu

    @dbus_property(access=PropertyAccess.READ, name="Menu")
    def menu(self) -> DBusObjectPath:
        return MENU_PATH if self._s().has_menu else "/"

    @dbus_method(name="Activate")
    def activate(self, x: DBusInt32, y: DBusInt32) -> None:
        self.item.forward(protocol.Activate(self.item.number, "primary"))

    @dbus_method(name="SecondaryActivate")
    def secondary_activate(self, x: DBusInt32, y: DBusInt32) -> None:
        self.item.forward(protocol.Activate(self.item.number, "secondary"))

    @dbus_method(name="ContextMenu")
    def context_menu(self, x: DBusInt32, y: DBusInt32) -> None:
        self.item.forward(protocol.Activate(self.item.number, "context"))

    @dbus_method(name="Scroll")
    def scroll(self, delta: DBusInt32, orientation: DBusStr) -> None:
        o = orientation.lower()
        if o in protocol.ORIENTATIONS:
            d = max(-protocol.MAX_SCROLL, min(protocol.MAX_SCROLL, delta))
            self.item.forward(protocol.Scroll(self.item.number, d, o))

    @dbus_signal(name="NewTitle")
    def new_title(self) -> None:
        pass

    @dbus_signal(name="NewIcon")
    def new_icon(self) -> None:
        pass

    @dbus_signal(name="NewAttentionIcon")
    def new_attention_icon(self) -> None:
        pass

    @dbus_signal(name="NewOverlayIcon")
    def new_overlay_icon(self) -> None:
        pass

    @dbus_signal(name="NewToolTip")
    def new_tool_tip(self) -> None:
        pass

    @dbus_signal(name="NewStatus")
    def new_status(self, status: str) -> DBusStr:
        return status


def _node_props(node: protocol.MenuNode, names: Sequence[str]) -> dict[str, Variant]:
    props = {
        "label": Variant("s", node.label),
        "enabled": Variant("b", node.enabled),
        "visible": Variant("b", node.visible),
        "type": Variant("s", node.type),
    }
    if node.toggle_type:
        props["toggle-type"] = Variant("s", node.toggle_type)
        props["toggle-state"] = Variant("i", node.toggle_state)
    if node.children:
        props["children-display"] = Variant("s", "submenu")
    return {k: v for k, v in props.items() if not names or k in names}


def _layout(node: protocol.MenuNode, depth: int, names: Sequence[str]) -> list[Any]:
    children = (
        [Variant("(ia{sv}av)", _layout(c, depth - 1, names)) for c in node.children]
        if depth != 0
        else []
    )
    return [node.id, _node_props(node, names), children]


class MenuInterface(ServiceInterface):
    """``com.canonical.dbusmenu`` mirroring the guest's last menu."""

    def __init__(self, item: "HostItem") -> None:
        super().__init__(bus_names.MENU_IFACE)
        self.item = item

    def _find(self, ident: int) -> protocol.MenuNode | None:
        return self.item.menu_nodes.get(ident)

    @dbus_method(name="GetLayout")
    def get_layout(self, parent_id: DBusInt32, depth: DBusInt32, names: StrList) -> Layout:
        node = self._find(parent_id)
        if node is None:
            node = protocol.MenuNode(parent_id) if parent_id == 0 else None
        if node is None:
            raise_unknown(parent_id)
        return [self.item.revision, _layout(node, depth, names)]  # type: ignore[arg-type]

    @dbus_method(name="GetGroupProperties")
    def get_group_properties(self, ids: IntList, names: StrList) -> GroupProperties:
        nodes = self.item.menu_nodes
        chosen = ids or list(nodes)
        return [[i, _node_props(nodes[i], names)] for i in chosen if i in nodes]

    @dbus_method(name="GetProperty")
    def get_property(self, ident: DBusInt32, name: DBusStr) -> DBusVariant:
        node = self._find(ident)
        props = _node_props(node, [name]) if node is not None else {}
        if name not in props:
            raise_unknown(ident)
        return props[name]

    @dbus_method(name="Event")
    def event(self, ident: DBusInt32, event_id: DBusStr, data: DBusVariant, ts: DBusUInt32) -> None:
        self.item.menu_event(ident, event_id)

    @dbus_method(name="EventGroup")
    def event_group(self, events: Events) -> IntList:
        missing = []
        for ident, event_id, _data, _ts in events:
            if not self.item.menu_event(ident, event_id):
                missing.append(ident)
        return missing

    @dbus_method(name="AboutToShow")
    def about_to_show(self, ident: DBusInt32) -> DBusBool:
        return False

    @dbus_method(name="AboutToShowGroup")
    def about_to_show_group(self, ids: IntList) -> TwoIntLists:
        return [[], [i for i in ids if i not in self.item.menu_nodes]]

    @dbus_property(access=PropertyAccess.READ, name="Version")
    def version(self) -> DBusUInt32:
        return 3

    @dbus_property(access=PropertyAccess.READ, name="TextDirection")
    def text_direction(self) -> DBusStr:
        return "ltr"

    @dbus_property(access=PropertyAccess.READ, name="Status")
    def status(self) -> DBusStr:
        return "normal"

    @dbus_property(access=PropertyAccess.READ, name="IconThemePath")
    def icon_theme_path(self) -> StrList:
        return []

    @dbus_signal(name="LayoutUpdated")
    def layout_updated(self, revision: int, parent: int) -> RevisionParent:
        return [revision, parent]

    @dbus_signal(name="ItemsPropertiesUpdated")
    def items_properties_updated(self) -> Annotated[list[Any], DBusSignature("a(ia{sv})a(ias)")]:
        return [[], []]


def raise_unknown(ident: int) -> None:
    raise DBusError("com.canonical.dbusmenu.Error.UnknownId", f"no menu entry {ident}")


_SERIAL = iter(range(1, 2**62))


class HostItem:
    """One guest item on the host's session bus."""

    def __init__(self, link: "VmLink", state: protocol.Item) -> None:
        self.link = link
        self.vm = link.vm
        self.number = state.item
        self.serial = next(_SERIAL)
        self.name = f"org.kde.StatusNotifierItem-{os.getpid()}-{self.serial}"
        self.state = state
        self.icon: Pixmaps = ()
        self.attention_icon: Pixmaps = ()
        self.overlay_icon: Pixmaps = ()
        self._colour(state)
        self.menu: protocol.MenuNode = protocol.MenuNode(0)
        self.menu_nodes: dict[int, protocol.MenuNode] = {0: self.menu}
        self.revision = 0
        self.bus: MessageBus | None = None
        self.item_iface = ItemInterface(self)
        self.menu_iface = MenuInterface(self)

    def title(self, text: str | None = None) -> str:
        text = self.state.title if text is None else text
        return f"[{self.vm.name}] {text}" if text else f"[{self.vm.name}]"

    def _colour(self, state: protocol.Item) -> None:
        c = self.vm.color
        self.icon = tuple(bordered(p, c) for p in state.icon) or (placeholder(c),)
        self.attention_icon = tuple(bordered(p, c) for p in state.attention_icon)
        # Panels draw overlays over the icon, some at full size: framed too, so none can cover
        # the icon's frame.
        self.overlay_icon = tuple(bordered(p, c) for p in state.overlay_icon)

    async def start(self, bus_address: str | None) -> None:
        self.bus = await session_bus(bus_address)
        self.bus.export(bus_names.ITEM_PATH, self.item_iface)
        self.bus.export(MENU_PATH, self.menu_iface)
        await self.bus.request_name(self.name)
        await self.register()

    async def register(self) -> None:
        if self.bus is None:
            return
        reply = await self.bus.call(
            Message(
                destination=bus_names.WATCHER_NAME,
                path=bus_names.WATCHER_PATH,
                interface=bus_names.WATCHER_NAME,
                member="RegisterStatusNotifierItem",
                signature="s",
                body=[self.name],
            )
        )
        if reply is not None and reply.message_type is MessageType.ERROR:
            log.debug("no StatusNotifierWatcher took %s yet: %s", self.name, reply.body)

    def update(self, state: protocol.Item) -> None:
        old, self.state = self.state, state
        self._colour(state)
        i = self.item_iface
        if old.title != state.title:
            i.new_title()
        if old.icon != state.icon:
            i.new_icon()
        if old.attention_icon != state.attention_icon:
            i.new_attention_icon()
        if old.overlay_icon != state.overlay_icon:
            i.new_overlay_icon()
        if (old.tooltip_title, old.tooltip_text) != (state.tooltip_title, state.tooltip_text):
            i.new_tool_tip()
        if old.status != state.status:
            i.new_status(state.status)

    def update_menu(self, root: protocol.MenuNode) -> None:
        self.menu = root
        self.menu_nodes = {n.id: n for n in root.walk()}
        self.revision += 1
        self.menu_iface.layout_updated(self.revision, 0)

    def menu_event(self, ident: int, event_id: str) -> bool:
        if ident not in self.menu_nodes or (ident == 0 and not self.menu.children):
            return False
        if event_id in protocol.MENU_EVENTS:
            self.forward(protocol.MenuEvent(self.number, ident, event_id))
        return True

    def forward(self, msg: protocol.Message) -> None:
        self.link.forward(msg)

    def close(self) -> None:
        if self.bus is not None:
            self.bus.disconnect()
            self.bus = None


class VmLink:
    """The connection to one VM's guest side and the host items it shows."""

    def __init__(self, vm: VmSpec, bus_address: str | None = None) -> None:
        self.vm = vm
        self.bus_address = bus_address
        self.items: dict[int, HostItem] = {}
        self._link: Link | None = None
        self._outbox: asyncio.Queue[protocol.Message] = asyncio.Queue(maxsize=256)
        self.connected = asyncio.Event()

    def forward(self, msg: protocol.Message) -> None:
        if self._link is not None:
            with contextlib.suppress(asyncio.QueueFull):  # a stuck guest loses clicks
                self._outbox.put_nowait(msg)

    async def run(self) -> None:
        """Connect, serve, and reconnect, until cancelled. A guest the host had to drop waits
        longer each time (up to PENALTY), so a hostile one cannot churn the host's bus."""
        delay = BACKOFF[0]
        while True:
            try:
                link = await connect(self.vm.address, protocol.FROM_GUEST)
            except OSError as err:
                log.debug("%s: no tray on %s (%s)", self.vm.name, self.vm.address, err)
                await asyncio.sleep(delay)
                delay = min(delay * 2, max(delay, BACKOFF[1]))
                continue
            log.info("%s: connected to %s", self.vm.name, self.vm.address)
            refused = False
            try:
                await self.serve(link)
            except ProtocolError as err:
                log.warning("%s: dropped the guest's tray: %s", self.vm.name, err)
                refused = True
            except (OSError, ConnectionError, EOFError) as err:
                log.info("%s: the connection ended (%s)", self.vm.name, err)
            except (TrayError, DBusError) as err:
                log.error("%s: cannot show its items: %s", self.vm.name, err)
            finally:
                self.clear()
                await link.close()
            delay = min(delay * 2, PENALTY) if refused else BACKOFF[0]
            await asyncio.sleep(delay)

    def clear(self) -> None:
        for item in self.items.values():
            item.close()
        if self.items:
            log.info("%s: removed its %d tray icons", self.vm.name, len(self.items))
        self.items.clear()
        self._link = None
        self.connected.clear()
        while not self._outbox.empty():
            self._outbox.get_nowait()

    async def serve(self, link: Link) -> None:
        await link.send(protocol.Hello())
        self._link = link
        sender = asyncio.ensure_future(self._send(link))
        watchdog = asyncio.ensure_future(self._watchdog(link))
        try:
            await self._receive(link)
        finally:
            sender.cancel()
            watchdog.cancel()
            # gather, not a suppressed await: were this link's own task cancelled meanwhile
            # (the host shutting down), swallowing that would leave it reconnecting forever
            await asyncio.gather(sender, watchdog, return_exceptions=True)

    async def _send(self, link: Link) -> None:
        with contextlib.suppress(OSError, ConnectionError):
            while True:
                await link.send(await self._outbox.get())

    async def _watchdog(self, link: Link) -> None:
        while True:
            await asyncio.sleep(SILENCE / 4)
            if time.monotonic() - link.last_received > SILENCE:
                log.warning("%s: the guest's tray went silent", self.vm.name)
                link.writer.transport.abort()
                return

    async def _receive(self, link: Link) -> None:
        tokens, last = float(BURST), time.monotonic()
        hello = False
        messages = link.messages()
        async with contextlib.aclosing(messages):  # type: ignore[type-var]
            while True:
                try:
                    # asyncio.timeout, not wait_for: Python 3.11's wait_for returns the result
                    # of a frame that comes just as the link is cancelled and drops the
                    # cancellation, so the host shutting down kept reconnecting forever.
                    async with asyncio.timeout(None if hello else HELLO_TIMEOUT):
                        msg = await anext(messages)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    raise ProtocolError("no HELLO from the guest") from None
                if not hello:
                    if not isinstance(msg, protocol.Hello):
                        raise ProtocolError(f"expected HELLO first, got {type(msg).__name__}")
                    hello = True
                    self.connected.set()
                    continue
                if isinstance(msg, protocol.Ping):
                    continue
                now = time.monotonic()
                tokens = min(BURST, tokens + (now - last) * RATE)
                last = now
                if tokens < 1:
                    raise ProtocolError(f"more than {RATE:g} frames a second (a flood)")
                tokens -= 1
                await self.apply(msg)

    async def apply(self, msg: protocol.Message) -> None:
        match msg:
            case protocol.Item():
                existing = self.items.get(msg.item)
                if existing is not None:
                    existing.update(msg)
                    return
                if len(self.items) >= protocol.MAX_ITEMS:
                    raise ProtocolError(f"more than {protocol.MAX_ITEMS} items")
                item = HostItem(self, msg)
                self.items[msg.item] = item
                await item.start(self.bus_address)
                log.info("%s: shows item %d as %s", self.vm.name, msg.item, item.name)
            case protocol.Menu():
                item = self._known(msg.item)
                if not item.state.has_menu:
                    raise ProtocolError(f"a menu for item {msg.item}, which has none")
                item.update_menu(msg.root)
            case protocol.Remove():
                self._known(msg.item).close()
                del self.items[msg.item]
            case protocol.Hello():
                raise ProtocolError("a second HELLO")
            case _:
                raise ProtocolError(f"{type(msg).__name__} is not allowed from the guest")

    def _known(self, number: int) -> HostItem:
        item = self.items.get(number)
        if item is None:
            raise ProtocolError(f"item {number} is unknown")
        return item

    async def reregister(self) -> None:
        for item in list(self.items.values()):
            await item.register()


class TrayHost:
    """Every VM's link, and the host watcher's comings and goings."""

    def __init__(self, vms: Sequence[VmSpec], bus_address: str | None = None) -> None:
        self.links = [VmLink(vm, bus_address) for vm in vms]
        self.bus_address = bus_address
        self.bus: MessageBus | None = None
        self._tasks: set[asyncio.Future[None]] = set()

    def _on_message(self, msg: Message) -> None:
        if (
            msg.message_type is MessageType.SIGNAL
            and msg.sender == bus_names.DBUS
            and msg.member == "NameOwnerChanged"
            and msg.signature == "sss"
            and msg.body[0] == bus_names.WATCHER_NAME
            and msg.body[2]
        ):
            log.info("a StatusNotifierWatcher appeared; registering every item with it")
            for link in self.links:
                task = asyncio.ensure_future(link.reregister())
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def run(self) -> None:
        self.bus = await session_bus(self.bus_address)
        self.bus.add_message_handler(self._on_message)
        watcher = f"{bus_names.NAME_OWNER_CHANGED},arg0='{bus_names.WATCHER_NAME}'"
        await add_match(self.bus, watcher)
        tasks = [asyncio.ensure_future(link.run()) for link in self.links]
        tasks.append(asyncio.ensure_future(self.bus.wait_for_disconnect()))  # type: ignore[no-untyped-call]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for link in self.links:
                link.clear()
            self.bus.disconnect()
