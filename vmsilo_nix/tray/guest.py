"""The guest side: a StatusNotifierWatcher on the guest's session bus, and the host's link.

Apps in the guest register their StatusNotifierItems with :class:`Watcher` (by well-known name,
by unique name, or by object path). :class:`Items` reads each item's properties and its
DBusMenu layout, follows their change signals, turns icon names into pixmaps (:mod:`.icons`)
and all text into protocol text, and keeps the latest :class:`~.protocol.Item` and
:class:`~.protocol.Menu` of every item. :class:`GuestServer` listens on vsock for the host and
sends it every item, then every change, coalesced and rate-limited so an app that flickers its
icon cannot make the host drop this VM. The host's clicks come back as calls on the app.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Annotated, Any

import attrs
from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.annotations import DBusBool, DBusInt32, DBusSignature, DBusStr
from dbus_fast.constants import PropertyAccess
from dbus_fast.service import (
    ServiceInterface,
    dbus_method,
    dbus_property,
    dbus_signal,
)

from vmsilo_nix.channel.transport import Address

from . import icons, protocol
from .bus_names import (
    DBUS,
    DBUS_PATH,
    ITEM_IFACE,
    ITEM_PATH,
    MENU_IFACE,
    NAME_OWNER_CHANGED,
    WATCHER_NAME,
    WATCHER_PATH,
)
from .protocol import MAX_TEXT, MAX_TITLE, plain_text
from .transport import Link, add_match, serve, session_bus

log = logging.getLogger("vmsilo.tray")

#: Frames per second the guest sends at most, and its burst: half of what the host allows.
SEND_RATE = 20.0
SEND_BURST = 64
PING_EVERY = 10.0

StrList = Annotated[list[str], DBusSignature("as")]


def _call(
    destination: str, path: str, interface: str, member: str, *, signature: str = "", body: Any = ()
) -> Message:
    return Message(
        destination=destination,
        path=path,
        interface=interface,
        member=member,
        signature=signature,
        body=list(body),
    )


class Watcher(ServiceInterface):
    """``org.kde.StatusNotifierWatcher``. Registration calls are answered by
    :meth:`Items.on_message`, which knows the caller; these methods only describe them."""

    def __init__(self, items: "Items") -> None:
        super().__init__(WATCHER_NAME)
        self._items = items

    @dbus_method(name="RegisterStatusNotifierItem")
    def register_item(self, service: DBusStr) -> None:  # pragma: no cover - intercepted
        pass

    @dbus_method(name="RegisterStatusNotifierHost")
    def register_host(self, service: DBusStr) -> None:  # pragma: no cover - intercepted
        pass

    @dbus_property(access=PropertyAccess.READ, name="RegisteredStatusNotifierItems")
    def registered(self) -> StrList:
        return self._items.registered()

    @dbus_property(access=PropertyAccess.READ, name="IsStatusNotifierHostRegistered")
    def host_registered(self) -> DBusBool:
        return True  # the host side stands for every host panel

    @dbus_property(access=PropertyAccess.READ, name="ProtocolVersion")
    def protocol_version(self) -> DBusInt32:
        return 0

    @dbus_signal(name="StatusNotifierItemRegistered")
    def item_registered(self, service: str) -> DBusStr:
        return service

    @dbus_signal(name="StatusNotifierItemUnregistered")
    def item_unregistered(self, service: str) -> DBusStr:
        return service

    @dbus_signal(name="StatusNotifierHostRegistered")
    def host_registered_signal(self) -> None:
        pass


@attrs.define
class _Item:
    number: int
    owner: str  # the unique name
    service: str  # what it registered as
    path: str
    menu_path: str = ""
    item: protocol.Item | None = None
    menu: protocol.Menu | None = None
    menu_ids: frozenset[int] = frozenset()
    want: set[str] = attrs.field(factory=set)
    task: "asyncio.Task[None] | None" = None


def _str(props: dict[str, Variant], name: str) -> str:
    v = props.get(name)
    return v.value if isinstance(v, Variant) and isinstance(v.value, str) else ""


def _icon(props: dict[str, Variant], prefix: str, theme_path: str) -> protocol.Pixmaps:
    v = props.get(f"{prefix}Pixmap")
    pixmaps = icons.pixmaps(v.value) if isinstance(v, Variant) and v.signature == "a(iiay)" else ()
    if pixmaps:
        return pixmaps
    return icons.render(_str(props, f"{prefix}Name"), theme_path)


def item_message(number: int, props: dict[str, Variant], has_menu: bool) -> protocol.Item:
    """An item's D-Bus properties as the protocol's item: text made plain, icons pixels."""
    theme_path = _str(props, "IconThemePath")
    category = _str(props, "Category")
    status = _str(props, "Status")
    tip_title, tip_text, tip = "", "", props.get("ToolTip")
    if isinstance(tip, Variant) and tip.signature == "(sa(iiay)ss)":
        tip_title, tip_text = tip.value[2], tip.value[3]
    is_menu = props.get("ItemIsMenu")
    icon = _icon(props, "Icon", theme_path)
    attention = _icon(props, "AttentionIcon", theme_path)
    overlay = _icon(props, "OverlayIcon", theme_path)
    # Everything must fit one frame: drop the largest sizes until it does.
    budget = protocol.MAX_PAYLOAD - 16 * 1024
    while protocol.encoded_size(icon + attention + overlay) > budget:
        biggest = max((icon, attention, overlay), key=protocol.encoded_size)
        if biggest is icon:
            icon = icon[1:]
        elif biggest is attention:
            attention = attention[1:]
        else:
            overlay = overlay[1:]
    return protocol.Item(
        item=number,
        category=category if category in protocol.CATEGORIES else "ApplicationStatus",
        title=plain_text(_str(props, "Title") or _str(props, "Id"), MAX_TITLE),
        status=status if status in protocol.STATUSES else "Active",
        icon=icon,
        attention_icon=attention,
        overlay_icon=overlay,
        tooltip_title=plain_text(tip_title, MAX_TITLE),
        tooltip_text=plain_text(tip_text, MAX_TEXT),
        item_is_menu=isinstance(is_menu, Variant) and is_menu.value is True,
        has_menu=has_menu,
    )


def menu_node(
    raw: Any, budget: list[int], depth: int = 1, seen: set[int] | None = None
) -> protocol.MenuNode | None:
    """A DBusMenu ``(ia{sv}av)`` as a protocol menu node, cut to the protocol's size and depth
    (``budget`` holds the nodes still allowed); entries with bad or repeated ids are left out."""
    seen = set() if seen is None else seen
    if not (isinstance(raw, list | tuple) and len(raw) == 3) or budget[0] <= 0:
        return None
    ident, props, children = raw
    if not isinstance(ident, int) or not 0 <= ident <= protocol.MAX_ID or ident in seen:
        return None
    seen.add(ident)
    budget[0] -= 1

    def prop(name: str, kind: type, default: Any) -> Any:
        v = props.get(name) if isinstance(props, dict) else None
        value = v.value if isinstance(v, Variant) else None
        # bool is an int to Python, not to D-Bus
        ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
        return value if ok else default

    kids: list[protocol.MenuNode] = []
    if depth < protocol.MAX_MENU_DEPTH and isinstance(children, list):
        for child in children:
            node = menu_node(
                child.value if isinstance(child, Variant) else None, budget, depth + 1, seen
            )
            if node is not None:
                kids.append(node)
    kind = prop("type", str, "standard")
    toggle = prop("toggle-type", str, "")
    state = prop("toggle-state", int, -1)
    return protocol.MenuNode(
        id=ident,
        label=plain_text(prop("label", str, ""), MAX_TITLE),
        type=kind if kind in protocol.MENU_TYPES else "standard",
        enabled=prop("enabled", bool, True),
        visible=prop("visible", bool, True),
        toggle_type=toggle if toggle in protocol.TOGGLE_TYPES else "",
        toggle_state=state if state in (-1, 0, 1) else -1,
        children=tuple(kids),
    )


class Items:
    """The registered items of the guest session and their latest state. ``changed`` is
    called with an item number whenever its ITEM, MENU or removal is due to the host."""

    def __init__(
        self, bus: MessageBus, changed: Callable[[int], None], limit: int = protocol.MAX_ITEMS
    ) -> None:
        self.bus = bus
        self.limit = limit
        self.changed = changed
        self.items: dict[int, _Item] = {}
        self._next = 0
        self.watcher = Watcher(self)
        self._signals_from: set[str] = set()
        self._tasks: set[asyncio.Future[None]] = set()

    async def start(self) -> None:
        self.bus.add_message_handler(self.on_message)
        await add_match(self.bus, NAME_OWNER_CHANGED)
        self.bus.export(WATCHER_PATH, self.watcher)
        await self.bus.request_name(WATCHER_NAME)
        self.watcher.host_registered_signal()

    def registered(self) -> list[str]:
        return [
            i.service if not i.service.startswith("/") else f"{i.owner}{i.path}"
            for i in self.items.values()
        ]

    # --- D-Bus messages ------------------------------------------------------------------

    def on_message(self, msg: Message) -> Message | bool | None:
        if msg.message_type is MessageType.METHOD_CALL and msg.path == WATCHER_PATH:
            if msg.member == "RegisterStatusNotifierItem" and msg.interface in (WATCHER_NAME, None):
                if msg.signature != "s" or not msg.sender:
                    return Message.new_error(msg, f"{DBUS}.Error.InvalidArgs", "expected (s)")
                task = asyncio.ensure_future(self.register(msg.sender, msg.body[0]))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                return Message.new_method_return(msg)
            if msg.member == "RegisterStatusNotifierHost" and msg.interface in (WATCHER_NAME, None):
                return Message.new_method_return(msg)
            return None
        if msg.message_type is not MessageType.SIGNAL:
            return None
        if msg.sender == DBUS and msg.member == "NameOwnerChanged" and msg.signature == "sss":
            name, _old, new = msg.body
            if not new:
                for item in [i for i in self.items.values() if name in (i.owner, i.service)]:
                    self.unregister(item)
            return None
        for item in self.items.values():
            if msg.sender != item.owner:
                continue
            if msg.path == item.path and msg.interface == ITEM_IFACE:
                self._refresh(item, "props")
            elif item.menu_path and msg.path == item.menu_path and msg.interface == MENU_IFACE:
                self._refresh(item, "menu")
        return None

    async def register(self, sender: str, service: str) -> None:
        """``RegisterStatusNotifierItem(service)`` from ``sender``: a well-known name (which
        the sender must own: no registering someone else), its unique name, or an object
        path on the sender's connection."""
        if service.startswith("/"):
            owner, path = sender, service
        else:
            owner, path = sender, ITEM_PATH
            if service != sender:
                reply = await self.bus.call(
                    _call(
                        DBUS,
                        DBUS_PATH,
                        DBUS,
                        "GetNameOwner",
                        signature="s",
                        body=[service],
                    )
                )
                if (
                    reply is None
                    or reply.message_type is MessageType.ERROR
                    or reply.body != [sender]
                ):
                    log.warning("%s registered %r, a name it does not own", sender, service)
                    return
        if any(i.owner == owner and i.path == path for i in self.items.values()):
            return
        if len(self.items) >= self.limit:
            log.warning("more than %d items; %s is not shown", self.limit, service)
            return
        number = self._next
        self._next += 1
        item = _Item(number=number, owner=owner, service=service, path=path)
        self.items[number] = item
        if owner not in self._signals_from:
            self._signals_from.add(owner)
            await add_match(self.bus, f"type='signal',sender='{owner}'")
        log.info("item %d registered: %s %s", number, owner, path)
        self.watcher.item_registered(self.registered()[-1])
        self._refresh(item, "props")

    def unregister(self, item: _Item) -> None:
        if self.items.pop(item.number, None) is None:
            return
        if item.task is not None:
            item.task.cancel()
        log.info("item %d unregistered", item.number)
        self.watcher.item_unregistered(item.service)
        self.changed(item.number)

    # --- reading items -------------------------------------------------------------------

    def _refresh(self, item: _Item, what: str) -> None:
        item.want.add(what)
        if item.task is None or item.task.done():
            item.task = asyncio.ensure_future(self._read(item))

    async def _read(self, item: _Item) -> None:
        while item.want and item.number in self.items:
            want, item.want = item.want, set()
            try:
                if "props" in want:
                    await self._read_props(item)
                if "menu" in want and item.menu_path:
                    await self._read_menu(item)
            except (OSError, EOFError, ValueError, TypeError) as err:
                log.debug("cannot read item %d: %s", item.number, err)

    async def _read_props(self, item: _Item) -> None:
        reply = await self.bus.call(
            _call(
                item.owner,
                item.path,
                "org.freedesktop.DBus.Properties",
                "GetAll",
                signature="s",
                body=[ITEM_IFACE],
            )
        )
        if reply is None or reply.message_type is MessageType.ERROR or reply.signature != "a{sv}":
            log.debug("item %d: no properties (%s)", item.number, reply and reply.body)
            return
        props: dict[str, Variant] = reply.body[0]
        menu = props.get("Menu")
        menu_path = menu.value if isinstance(menu, Variant) and menu.signature == "o" else ""
        menu_path = "" if menu_path == "/" else menu_path
        # Icon files are read and drawn off the event loop: one slow icon must not stall the
        # other items.
        new = await asyncio.to_thread(item_message, item.number, props, bool(menu_path))
        first_menu = menu_path != item.menu_path
        item.menu_path = menu_path
        if new != item.item:
            item.item = new
            self.changed(item.number)
        if first_menu and menu_path:
            await self._read_menu(item)

    async def _read_menu(self, item: _Item) -> None:
        reply = await self.bus.call(
            _call(
                item.owner,
                item.menu_path,
                MENU_IFACE,
                "GetLayout",
                signature="iias",
                body=[0, -1, []],
            )
        )
        if reply is None or reply.message_type is MessageType.ERROR:
            return
        if reply.signature != "u(ia{sv}av)":
            return
        root = menu_node(reply.body[1], [protocol.MAX_MENU_NODES])
        if root is None:
            return
        menu = protocol.Menu(item.number, root)
        item.menu_ids = frozenset(n.id for n in root.walk())
        if menu != item.menu:
            item.menu = menu
            self.changed(item.number)

    # --- the host's clicks ---------------------------------------------------------------

    async def act(self, msg: protocol.Message) -> None:
        """A click, scroll or menu event from the host, for an item it was told about."""
        item = self.items.get(getattr(msg, "item", -1))
        if item is None:
            log.debug("an event for item %r, which is gone", getattr(msg, "item", None))
            return
        match msg:
            case protocol.Activate(kind=kind):
                member = {
                    "primary": "Activate",
                    "secondary": "SecondaryActivate",
                    "context": "ContextMenu",
                }[kind]
                call = _call(item.owner, item.path, ITEM_IFACE, member, signature="ii", body=[0, 0])
            case protocol.Scroll(delta=delta, orientation=orientation):
                call = _call(
                    item.owner,
                    item.path,
                    ITEM_IFACE,
                    "Scroll",
                    signature="is",
                    body=[delta, orientation],
                )
            case protocol.MenuEvent(id=ident, event=event):
                if ident not in item.menu_ids or not item.menu_path:
                    log.debug("a menu event for entry %d, which is not in the menu", ident)
                    return
                call = _call(
                    item.owner,
                    item.menu_path,
                    MENU_IFACE,
                    "Event",
                    signature="isvu",
                    body=[ident, event, Variant("i", 0), int(time.time()) & 0xFFFFFFFF],
                )
            case _:
                return
        reply = await self.bus.call(call)
        if reply is not None and reply.message_type is MessageType.ERROR:
            log.debug("item %d refused %s: %s", item.number, call.member, reply.body)


class GuestServer:
    """Serves one host connection at a time (a new one replaces the old)."""

    def __init__(self, items_bus: MessageBus) -> None:
        self.items = Items(items_bus, self._changed)
        self._dirty: dict[int, None] = {}
        self._wake = asyncio.Event()
        self._current: Link | None = None

    def _changed(self, number: int) -> None:
        self._dirty[number] = None
        self._wake.set()

    def _frames(self, number: int) -> list[protocol.Message]:
        item = self.items.items.get(number)
        if item is None:
            return [protocol.Remove(number)]
        if item.item is None:
            return []
        out: list[protocol.Message] = [item.item]
        if item.menu is not None and item.item.has_menu:
            out.append(item.menu)
        return out

    async def handle(self, link: Link) -> None:
        if self._current is not None:
            await self._current.close()
        self._current = link
        log.info("the host connected")
        await link.send(protocol.Hello())
        # Everything known now, then changes as they come.
        self._dirty = dict.fromkeys(n for n in self.items.items)
        self._wake.set()
        sender = asyncio.ensure_future(self._send(link))
        try:
            async for msg in link.messages():
                if isinstance(msg, protocol.Hello | protocol.Ping):
                    continue
                await self.items.act(msg)
        except protocol.ProtocolError as err:
            log.warning("the host sent something the protocol refuses: %s", err)
        except (OSError, ConnectionError):
            pass
        finally:
            sender.cancel()
            # gather, not a suppressed await: a cancellation of this handler itself (shutdown)
            # must not be swallowed here
            await asyncio.gather(sender, return_exceptions=True)
            if self._current is link:
                self._current = None
            log.info("the host disconnected")

    async def _send(self, link: Link) -> None:
        tokens, last = float(SEND_BURST), time.monotonic()
        try:
            while True:
                # asyncio.timeout, not wait_for: Python 3.11's wait_for drops a cancellation
                # that comes as the event is set, and this sender would then never stop.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(PING_EVERY):
                        await self._wake.wait()
                self._wake.clear()
                if not self._dirty:
                    await link.send(protocol.Ping())
                    continue
                while self._dirty:
                    number = next(iter(self._dirty))
                    del self._dirty[number]
                    for msg in self._frames(number):
                        now = time.monotonic()
                        tokens = min(SEND_BURST, tokens + (now - last) * SEND_RATE)
                        last = now
                        if tokens < 1:
                            await asyncio.sleep((1 - tokens) / SEND_RATE)
                            tokens = 1.0
                        tokens -= 1
                        await link.send(msg)
        except (OSError, ConnectionError):
            await link.close()


async def run_guest(listen: Address, bus_address: str | None = None) -> None:
    """Serve the host until cancelled."""
    bus = await session_bus(bus_address)
    server = GuestServer(bus)
    await server.items.start()
    listener = await serve(listen, protocol.FROM_HOST, server.handle)
    log.info("the tray watcher is on the session bus; serving the host on %s", listen)
    try:
        await bus.wait_for_disconnect()  # type: ignore[no-untyped-call]
    finally:
        listener.close()
        bus.disconnect()
