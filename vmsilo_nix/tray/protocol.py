"""The tray's wire format between a guest and the host: small typed, versioned frames.

A frame is the channel's (:class:`~vmsilo_nix.channel.protocol.Frames`): message type, 1 byte;
payload length, 4 bytes big endian; then the payload, here a JSON object. Every type has its
own payload limit, checked from the header before the payload is read, so the host never
buffers more than :data:`MAX_PAYLOAD` for one frame.

Guest to host: HELLO, PING, ITEM (the whole state of one item), MENU (its whole menu), REMOVE.
Host to guest: HELLO, PING, ACTIVATE, SCROLL, MENU_EVENT.

The guest is untrusted. Decoding is strict: exactly the documented fields, each of its type and
within its bounds; pixmaps exactly width x height x 4 bytes and at most 256 x 256; text without
control or bidi characters or markup (:func:`check_text`); menus of bounded size and depth.
Anything else raises :class:`ProtocolError` and the host drops the connection (and with it that
VM's icons, never anyone else's). No field names a bus name, object path, file or icon theme:
the guest renders icon names to pixmaps itself, and the host chooses every D-Bus name it exports.
Nothing in this module does I/O.
"""

from __future__ import annotations

import base64
import binascii
import enum
import html
import re
import unicodedata
from collections.abc import Mapping
from typing import Any

import attrs

from vmsilo_nix.channel.protocol import Frames, ProtocolError, json_payload, json_value, pack
from vmsilo_nix.facts import TRAY_VSOCK_PORT

__all__ = ["ProtocolError"]

VERSION = 1
#: The guest side's vsock port when none is given.
DEFAULT_PORT = TRAY_VSOCK_PORT
MAX_PAYLOAD = 1024 * 1024
MAX_SMALL = 256
MAX_EVENT = 1024

MAX_ITEMS = 16  # items one VM may show at once
MAX_PIXMAPS = 4  # sizes of one icon
MAX_PIXMAP_SIDE = 256
MAX_MENU_NODES = 500
MAX_MENU_DEPTH = 8
MAX_ID = 2**31 - 1  # item and menu ids are D-Bus int32s
MAX_TITLE = 256
MAX_TEXT = 1024
MAX_SCROLL = 10_000


class MessageType(enum.IntEnum):
    HELLO = 1
    PING = 2
    ITEM = 16
    MENU = 17
    REMOVE = 18
    ACTIVATE = 32
    SCROLL = 33
    MENU_EVENT = 34


LIMITS: Mapping[MessageType, int] = {
    MessageType.HELLO: MAX_SMALL,
    MessageType.PING: 0,
    MessageType.ITEM: MAX_PAYLOAD,
    MessageType.MENU: MAX_PAYLOAD,
    MessageType.REMOVE: MAX_SMALL,
    MessageType.ACTIVATE: MAX_EVENT,
    MessageType.SCROLL: MAX_EVENT,
    MessageType.MENU_EVENT: MAX_EVENT,
}
FROM_GUEST = frozenset(
    {MessageType.HELLO, MessageType.PING, MessageType.ITEM, MessageType.MENU, MessageType.REMOVE}
)
FROM_HOST = frozenset(
    {
        MessageType.HELLO,
        MessageType.PING,
        MessageType.ACTIVATE,
        MessageType.SCROLL,
        MessageType.MENU_EVENT,
    }
)

CATEGORIES = ("ApplicationStatus", "Communications", "SystemServices", "Hardware")
STATUSES = ("Passive", "Active", "NeedsAttention")
ACTIVATIONS = ("primary", "secondary", "context")
ORIENTATIONS = ("vertical", "horizontal")
MENU_EVENTS = ("clicked", "opened", "closed")
MENU_TYPES = ("standard", "separator")
TOGGLE_TYPES = ("", "checkmark", "radio")


# --- text ------------------------------------------------------------------------------------

# Explicit directional formatting characters (Unicode's bidi controls): they can reorder what a
# panel shows ("[work] evil" reading as "[banking] ...").
BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
# What a markup-reading panel (tooltips are "may contain markup" in the spec) would take as a
# tag or an entity.
_MARKUP = re.compile(r"<[A-Za-z/!?]|&(#|[A-Za-z][A-Za-z0-9]*;)")
_TAG = re.compile(r"<[A-Za-z/!?][^<>]*>")


def _bad_char(c: str) -> bool:
    return c in BIDI or unicodedata.category(c) in ("Cc", "Cs", "Zl", "Zp")


def check_text(name: str, value: object, limit: int) -> str:
    """``value`` if it is protocol text: a string of at most ``limit`` characters without
    control, bidi or separator characters and without markup."""
    if not isinstance(value, str):
        raise ProtocolError(f"{name} must be a string")
    if len(value) > limit:
        raise ProtocolError(f"{name} is longer than {limit} characters")
    if any(_bad_char(c) for c in value):
        raise ProtocolError(f"{name} contains a control or bidi character")
    if _MARKUP.search(value):
        raise ProtocolError(f"{name} contains markup")
    return value


def plain_text(value: str, limit: int) -> str:
    """What an app gave, as protocol text (the guest's side of :func:`check_text`): markup
    becomes the text it shows, control characters spaces, bidi characters nothing."""
    text = value
    for _ in range(4):  # entities may spell tags; a few rounds undo any real nesting
        stripped = html.unescape(_TAG.sub("", text))
        if stripped == text:
            break
        text = stripped
    text = "".join(
        " " if unicodedata.category(c) in ("Cc", "Zl", "Zp") else c
        for c in text
        if c not in BIDI and unicodedata.category(c) != "Cs"
    )
    text = _MARKUP.sub(lambda m: m.group(0)[0] + " " + m.group(0)[1:], text)
    return text[:limit].rstrip() if len(text) > limit else text


# --- messages --------------------------------------------------------------------------------


@attrs.frozen
class Pixmap:
    """One icon size: ARGB32 pixels in network byte order, row by row."""

    width: int
    height: int
    data: bytes = attrs.field(repr=lambda d: f"<{len(d)} bytes>")


Pixmaps = tuple[Pixmap, ...]


@attrs.frozen
class Hello:
    version: int = VERSION


@attrs.frozen
class Ping:
    pass


@attrs.frozen
class Item:
    """Everything the host shows of one guest item. ``item`` is the guest's number for it; the
    host never uses it in a D-Bus name."""

    item: int
    category: str = "ApplicationStatus"
    title: str = ""
    status: str = "Active"
    icon: Pixmaps = ()
    attention_icon: Pixmaps = ()
    overlay_icon: Pixmaps = ()
    tooltip_title: str = ""
    tooltip_text: str = ""
    item_is_menu: bool = False
    has_menu: bool = False


@attrs.frozen
class MenuNode:
    id: int
    label: str = ""
    type: str = "standard"
    enabled: bool = True
    visible: bool = True
    toggle_type: str = ""
    toggle_state: int = -1
    children: tuple[MenuNode, ...] = ()

    def walk(self) -> list[MenuNode]:
        out = [self]
        for child in self.children:
            out += child.walk()
        return out


@attrs.frozen
class Menu:
    item: int
    root: MenuNode


@attrs.frozen
class Remove:
    item: int


@attrs.frozen
class Activate:
    """A click on the host's icon; coordinates are not sent (host geometry stays on the host)."""

    item: int
    kind: str  # one of ACTIVATIONS


@attrs.frozen
class Scroll:
    item: int
    delta: int
    orientation: str  # one of ORIENTATIONS


@attrs.frozen
class MenuEvent:
    item: int
    id: int
    event: str  # one of MENU_EVENTS


Message = Hello | Ping | Item | Menu | Remove | Activate | Scroll | MenuEvent


# --- encoding --------------------------------------------------------------------------------


def _pixmaps_json(pixmaps: Pixmaps) -> list[dict[str, Any]]:
    return [
        {"w": p.width, "h": p.height, "argb": base64.b64encode(p.data).decode()} for p in pixmaps
    ]


def _node_json(node: MenuNode) -> dict[str, Any]:
    return {
        "id": node.id,
        "label": node.label,
        "type": node.type,
        "enabled": node.enabled,
        "visible": node.visible,
        "toggle_type": node.toggle_type,
        "toggle_state": node.toggle_state,
        "children": [_node_json(c) for c in node.children],
    }


def _body(msg: Message) -> tuple[MessageType, dict[str, Any] | None]:
    match msg:
        case Hello():
            return MessageType.HELLO, {"version": msg.version}
        case Ping():
            return MessageType.PING, None
        case Item():
            return MessageType.ITEM, {
                "item": msg.item,
                "category": msg.category,
                "title": msg.title,
                "status": msg.status,
                "icon": _pixmaps_json(msg.icon),
                "attention_icon": _pixmaps_json(msg.attention_icon),
                "overlay_icon": _pixmaps_json(msg.overlay_icon),
                "tooltip_title": msg.tooltip_title,
                "tooltip_text": msg.tooltip_text,
                "item_is_menu": msg.item_is_menu,
                "has_menu": msg.has_menu,
            }
        case Menu():
            return MessageType.MENU, {"item": msg.item, "root": _node_json(msg.root)}
        case Remove():
            return MessageType.REMOVE, {"item": msg.item}
        case Activate():
            return MessageType.ACTIVATE, {"item": msg.item, "kind": msg.kind}
        case Scroll():
            return MessageType.SCROLL, {
                "item": msg.item,
                "delta": msg.delta,
                "orientation": msg.orientation,
            }
        case MenuEvent():
            return MessageType.MENU_EVENT, {"item": msg.item, "id": msg.id, "event": msg.event}


def encode(msg: Message) -> bytes:
    """One frame; raises ValueError when the message is over its type's limit (the guest
    makes its items fit before encoding them)."""
    kind, body = _body(msg)
    return pack(kind, b"" if body is None else json_payload(body), LIMITS)


def encoded_size(pixmaps: Pixmaps) -> int:
    """Roughly what ``pixmaps`` add to a frame (base64 and field names)."""
    return sum((len(p.data) + 2) // 3 * 4 + 40 for p in pixmaps)


# --- decoding --------------------------------------------------------------------------------


def _object(where: str, value: object, keys: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(f"{where}: expected a JSON object")
    if set(value) != keys:
        raise ProtocolError(
            f"{where}: expected the fields {sorted(keys)}, got {sorted(value)[:16]}"
        )
    return value


def _int(where: str, value: object, low: int, high: int) -> int:
    # bool is an int in Python but not in the protocol.
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ProtocolError(f"{where} must be an integer from {low} to {high}")
    return value


def _bool(where: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ProtocolError(f"{where} must be true or false")
    return value


def _choice(where: str, value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ProtocolError(f"{where} must be one of {', '.join(repr(c) for c in choices)}")
    return value


def _pixmaps(where: str, value: object) -> Pixmaps:
    if not isinstance(value, list) or len(value) > MAX_PIXMAPS:
        raise ProtocolError(f"{where} must be a list of at most {MAX_PIXMAPS} pixmaps")
    out = []
    for i, raw in enumerate(value):
        p = _object(f"{where}[{i}]", raw, {"w", "h", "argb"})
        w = _int(f"{where}[{i}].w", p["w"], 1, MAX_PIXMAP_SIDE)
        h = _int(f"{where}[{i}].h", p["h"], 1, MAX_PIXMAP_SIDE)
        if not isinstance(p["argb"], str):
            raise ProtocolError(f"{where}[{i}].argb must be base64 text")
        try:
            data = base64.b64decode(p["argb"], validate=True)
        except (binascii.Error, ValueError):
            raise ProtocolError(f"{where}[{i}].argb is not base64") from None
        if len(data) != w * h * 4:
            raise ProtocolError(
                f"{where}[{i}]: {len(data)} bytes of pixels for {w}x{h} (needs {w * h * 4})"
            )
        out.append(Pixmap(w, h, data))
    return tuple(out)


_NODE_KEYS = {
    "id",
    "label",
    "type",
    "enabled",
    "visible",
    "toggle_type",
    "toggle_state",
    "children",
}


def _menu(raw: object) -> MenuNode:
    count = 0

    def node(value: object, depth: int, where: str) -> MenuNode:
        nonlocal count
        count += 1
        if count > MAX_MENU_NODES:
            raise ProtocolError(f"the menu has more than {MAX_MENU_NODES} entries")
        if depth > MAX_MENU_DEPTH:
            raise ProtocolError(f"the menu is deeper than {MAX_MENU_DEPTH} levels")
        n = _object(where, value, _NODE_KEYS)
        children = n["children"]
        if not isinstance(children, list):
            raise ProtocolError(f"{where}.children must be a list")
        return MenuNode(
            id=_int(f"{where}.id", n["id"], 0, MAX_ID),
            label=check_text(f"{where}.label", n["label"], MAX_TITLE),
            type=_choice(f"{where}.type", n["type"], MENU_TYPES),
            enabled=_bool(f"{where}.enabled", n["enabled"]),
            visible=_bool(f"{where}.visible", n["visible"]),
            toggle_type=_choice(f"{where}.toggle_type", n["toggle_type"], TOGGLE_TYPES),
            toggle_state=_int(f"{where}.toggle_state", n["toggle_state"], -1, 1),
            children=tuple(
                node(c, depth + 1, f"{where}.children[{i}]") for i, c in enumerate(children)
            ),
        )

    root = node(raw, 1, "MENU.root")
    ids = [n.id for n in root.walk()]
    if len(set(ids)) != len(ids):
        raise ProtocolError("MENU: two entries have the same id")
    return root


def decode(kind: MessageType, payload: bytes) -> Message:
    """The message of one complete frame whose type is known to be allowed."""
    if kind is MessageType.PING:
        return Ping()
    value = json_value(kind, payload)
    name = kind.name
    match kind:
        case MessageType.HELLO:
            body = _object(name, value, {"version"})
            if body["version"] != VERSION or isinstance(body["version"], bool):
                raise ProtocolError(
                    f"HELLO: protocol version {body['version']!r} is not supported "
                    f"(this is {VERSION})"
                )
            return Hello(VERSION)
        case MessageType.ITEM:
            body = _object(name, value, {f.name for f in attrs.fields(Item)})
            return Item(
                item=_int("ITEM.item", body["item"], 0, MAX_ID),
                category=_choice("ITEM.category", body["category"], CATEGORIES),
                title=check_text("ITEM.title", body["title"], MAX_TITLE),
                status=_choice("ITEM.status", body["status"], STATUSES),
                icon=_pixmaps("ITEM.icon", body["icon"]),
                attention_icon=_pixmaps("ITEM.attention_icon", body["attention_icon"]),
                overlay_icon=_pixmaps("ITEM.overlay_icon", body["overlay_icon"]),
                tooltip_title=check_text("ITEM.tooltip_title", body["tooltip_title"], MAX_TITLE),
                tooltip_text=check_text("ITEM.tooltip_text", body["tooltip_text"], MAX_TEXT),
                item_is_menu=_bool("ITEM.item_is_menu", body["item_is_menu"]),
                has_menu=_bool("ITEM.has_menu", body["has_menu"]),
            )
        case MessageType.MENU:
            body = _object(name, value, {"item", "root"})
            return Menu(item=_int("MENU.item", body["item"], 0, MAX_ID), root=_menu(body["root"]))
        case MessageType.REMOVE:
            body = _object(name, value, {"item"})
            return Remove(_int("REMOVE.item", body["item"], 0, MAX_ID))
        case MessageType.ACTIVATE:
            body = _object(name, value, {"item", "kind"})
            return Activate(
                item=_int("ACTIVATE.item", body["item"], 0, MAX_ID),
                kind=_choice("ACTIVATE.kind", body["kind"], ACTIVATIONS),
            )
        case MessageType.SCROLL:
            body = _object(name, value, {"item", "delta", "orientation"})
            return Scroll(
                item=_int("SCROLL.item", body["item"], 0, MAX_ID),
                delta=_int("SCROLL.delta", body["delta"], -MAX_SCROLL, MAX_SCROLL),
                orientation=_choice("SCROLL.orientation", body["orientation"], ORIENTATIONS),
            )
        case MessageType.MENU_EVENT:
            body = _object(name, value, {"item", "id", "event"})
            return MenuEvent(
                item=_int("MENU_EVENT.item", body["item"], 0, MAX_ID),
                id=_int("MENU_EVENT.id", body["id"], 0, MAX_ID),
                event=_choice("MENU_EVENT.event", body["event"], MENU_EVENTS),
            )
    raise AssertionError(kind)  # pragma: no cover


class FrameReader(Frames[MessageType, Message]):
    """The tray's frames from a peer that may send ``allowed`` (FROM_GUEST or FROM_HOST)."""

    def __init__(self, allowed: frozenset[MessageType]) -> None:
        super().__init__(MessageType, allowed, LIMITS, decode)
