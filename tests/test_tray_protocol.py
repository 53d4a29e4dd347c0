"""The tray's frames: round trips, strict refusals, fuzzing of the host's parser."""

from __future__ import annotations

import base64
import contextlib
import json
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmsilo_nix.tray import protocol
from vmsilo_nix.tray.host import border_width, bordered, placeholder
from vmsilo_nix.tray.protocol import (
    FROM_GUEST,
    FROM_HOST,
    FrameReader,
    MessageType,
    Pixmap,
    ProtocolError,
    check_text,
    plain_text,
)

PIX = Pixmap(2, 2, bytes(range(16)))
ITEM = protocol.Item(
    item=3,
    category="Communications",
    title="Chat",
    status="NeedsAttention",
    icon=(PIX,),
    tooltip_title="Chat",
    tooltip_text="3 unread",
    has_menu=True,
)
MENU = protocol.Menu(
    3,
    protocol.MenuNode(
        0,
        children=(
            protocol.MenuNode(1, "_Open"),
            protocol.MenuNode(2, type="separator"),
            protocol.MenuNode(
                3, "Mode", children=(protocol.MenuNode(4, "A", toggle_type="radio"),)
            ),
        ),
    ),
)


def frame(kind: int, payload: bytes) -> bytes:
    return struct.pack(">BI", kind, len(payload)) + payload


def item_json(**changes: Any) -> dict[str, Any]:
    body = json.loads(protocol.encode(ITEM)[5:])
    body.update(changes)
    return body  # type: ignore[no-any-return]


def guest_frame(kind: MessageType, body: object) -> bytes:
    return frame(kind, json.dumps(body).encode())


@pytest.mark.parametrize(
    "msg",
    [
        protocol.Hello(),
        protocol.Ping(),
        ITEM,
        MENU,
        protocol.Remove(3),
    ],
)
def test_guest_messages_round_trip(msg: protocol.Message) -> None:
    assert FrameReader(FROM_GUEST).feed(protocol.encode(msg)) == [msg]


@pytest.mark.parametrize(
    "msg",
    [
        protocol.Activate(1, "secondary"),
        protocol.Scroll(1, -120, "horizontal"),
        protocol.MenuEvent(1, 4, "clicked"),
    ],
)
def test_host_messages_round_trip(msg: protocol.Message) -> None:
    assert FrameReader(FROM_HOST).feed(protocol.encode(msg)) == [msg]


def test_frames_split_anywhere_still_decode() -> None:
    data = protocol.encode(ITEM) + protocol.encode(MENU)
    reader = FrameReader(FROM_GUEST)
    got = [m for b in data for m in reader.feed(bytes([b]))]
    assert got == [ITEM, MENU]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (frame(99, b""), "unknown message type 99"),
        (frame(MessageType.ACTIVATE, b"{}"), "ACTIVATE is not allowed in this direction"),
        (struct.pack(">BI", MessageType.ITEM, protocol.MAX_PAYLOAD + 1), "over its limit"),
        (guest_frame(MessageType.HELLO, {"version": 2}), "version 2 is not supported"),
        (guest_frame(MessageType.HELLO, {"version": True}), "not supported"),
        (frame(MessageType.ITEM, b"\xff"), "not valid JSON"),
        (frame(MessageType.ITEM, b'{"item": NaN}'), "not valid JSON"),
        (guest_frame(MessageType.ITEM, [1]), "expected a JSON object"),
        (guest_frame(MessageType.ITEM, item_json(icon_name="firefox")), "expected the fields"),
        (guest_frame(MessageType.ITEM, item_json(bus_name=":1.5")), "expected the fields"),
        (guest_frame(MessageType.ITEM, item_json(item=-1)), "ITEM.item must be an integer"),
        (guest_frame(MessageType.ITEM, item_json(item=True)), "ITEM.item must be an integer"),
        (guest_frame(MessageType.ITEM, item_json(status="Urgent")), "ITEM.status must be one"),
        (guest_frame(MessageType.ITEM, item_json(title="a\x1bb")), "control or bidi"),
        (guest_frame(MessageType.ITEM, item_json(title="bank\u202eknab")), "control or bidi"),
        (guest_frame(MessageType.ITEM, item_json(title="x\u2028y")), "control or bidi"),
        (guest_frame(MessageType.ITEM, item_json(title="<b>x</b>")), "contains markup"),
        (guest_frame(MessageType.ITEM, item_json(tooltip_text="&lt;")), "contains markup"),
        (guest_frame(MessageType.ITEM, item_json(tooltip_text="&#60;")), "contains markup"),
        (guest_frame(MessageType.ITEM, item_json(title="x" * 257)), "longer than 256"),
        (
            guest_frame(
                MessageType.ITEM,
                item_json(icon=[{"w": 2, "h": 2, "argb": base64.b64encode(b"x" * 15).decode()}]),
            ),
            r"15 bytes of pixels for 2x2 \(needs 16\)",
        ),
        (
            guest_frame(
                MessageType.ITEM,
                item_json(
                    icon=[{"w": 257, "h": 1, "argb": base64.b64encode(b"x" * 1028).decode()}]
                ),
            ),
            "w must be an integer from 1 to 256",
        ),
        (
            guest_frame(MessageType.ITEM, item_json(icon=[{"w": 1, "h": 1, "argb": "!!!!"}])),
            "not base64",
        ),
        (
            guest_frame(
                MessageType.ITEM,
                item_json(icon=[{"w": 1, "h": 1, "argb": base64.b64encode(b"abcd").decode()}] * 5),
            ),
            "at most 4 pixmaps",
        ),
        (
            guest_frame(
                MessageType.ITEM,
                item_json(
                    icon=[{"w": 1, "h": 1, "argb": "YWJjZA==", "path": "/usr/share/icons/x.png"}]
                ),
            ),
            "expected the fields",
        ),
    ],
)
def test_the_host_refuses(data: bytes, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        FrameReader(FROM_GUEST).feed(data)


def _chain(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = json.loads(json.dumps(_node_json(protocol.MenuNode(depth))))
    for i in range(depth - 1, -1, -1):
        parent = _node_json(protocol.MenuNode(i))
        parent["children"] = [node]
        node = parent
    return node


def _node_json(node: protocol.MenuNode) -> dict[str, Any]:
    return json.loads(protocol.encode(protocol.Menu(0, node))[5:])["root"]  # type: ignore[no-any-return]


def test_menu_limits() -> None:
    reader = FrameReader(FROM_GUEST)
    assert reader.feed(guest_frame(MessageType.MENU, {"item": 0, "root": _chain(7)}))
    with pytest.raises(ProtocolError, match="deeper than 8"):
        reader.feed(guest_frame(MessageType.MENU, {"item": 0, "root": _chain(8)}))
    wide = _node_json(
        protocol.MenuNode(0, children=tuple(protocol.MenuNode(i) for i in range(1, 500)))
    )
    assert FrameReader(FROM_GUEST).feed(guest_frame(MessageType.MENU, {"item": 0, "root": wide}))
    wide["children"].append(_node_json(protocol.MenuNode(500)))
    with pytest.raises(ProtocolError, match="more than 500 entries"):
        FrameReader(FROM_GUEST).feed(guest_frame(MessageType.MENU, {"item": 0, "root": wide}))
    twins = _node_json(protocol.MenuNode(0, children=(protocol.MenuNode(1), protocol.MenuNode(1))))
    with pytest.raises(ProtocolError, match="same id"):
        FrameReader(FROM_GUEST).feed(guest_frame(MessageType.MENU, {"item": 0, "root": twins}))


def test_the_guest_side_refuses_guest_messages_too() -> None:
    with pytest.raises(ProtocolError, match="ITEM is not allowed"):
        FrameReader(FROM_HOST).feed(protocol.encode(ITEM))
    with pytest.raises(ProtocolError, match=r"MENU_EVENT\.event must be one"):
        FrameReader(FROM_HOST).feed(
            guest_frame(MessageType.MENU_EVENT, {"item": 0, "id": 1, "event": "hovered"})
        )


def test_plain_text() -> None:
    assert plain_text("<b>Bank</b> &amp; co", 100) == "Bank & co"
    assert plain_text("&lt;script&gt;x", 100) == "x"
    assert plain_text("a\tb\u202ec\n", 100) == "a bc "
    assert plain_text("a <b", 100) == "a < b"
    assert plain_text("&amp;lt;b&amp;gt;", 100) == ""
    assert plain_text("x" * 300, 256) == "x" * 256
    assert check_text("t", "a < b & c", 10)


@given(st.text(max_size=400))
def test_plain_text_is_always_protocol_text(text: str) -> None:
    out = plain_text(text, protocol.MAX_TITLE)
    assert check_text("t", out, protocol.MAX_TITLE) == out


@settings(max_examples=300)
@given(st.binary(max_size=2000))
def test_fuzz_raw_bytes_never_crash_the_host_parser(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        FrameReader(FROM_GUEST).feed(data)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
_FIELDS = st.sampled_from(sorted(item_json()))


@settings(max_examples=300)
@given(st.dictionaries(_FIELDS, _JSON, max_size=6), st.sampled_from(list(FROM_GUEST)))
def test_fuzz_property_values(changes: dict[str, Any], kind: MessageType) -> None:
    """Whatever the values, the parser either refuses or returns values the protocol allows."""
    body = item_json(**changes) if kind is MessageType.ITEM else changes
    try:
        (msg,) = FrameReader(FROM_GUEST).feed(guest_frame(kind, body))
    except ProtocolError:
        return
    if isinstance(msg, protocol.Item):
        assert msg.status in protocol.STATUSES and msg.category in protocol.CATEGORIES
        for text in (msg.title, msg.tooltip_title, msg.tooltip_text):
            check_text("t", text, protocol.MAX_TEXT)
        for p in msg.icon + msg.attention_icon + msg.overlay_icon:
            assert 1 <= p.width <= 256 and 1 <= p.height <= 256
            assert len(p.data) == p.width * p.height * 4


@settings(max_examples=100)
@given(
    st.integers(1, 64),
    st.integers(1, 64),
    st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255)),
)
def test_border_covers_the_edge_and_keeps_the_inside(
    w: int, h: int, rgb: tuple[int, int, int]
) -> None:
    source = Pixmap(w, h, bytes([7, 8, 9, 10]) * (w * h))
    out = bordered(source, rgb)
    b = border_width(w, h)
    assert len(out.data) == w * h * 4
    for y in range(h):
        for x in range(w):
            px = out.data[(y * w + x) * 4 : (y * w + x) * 4 + 4]
            edge = x < b or y < b or x >= w - b or y >= h - b
            assert px == (bytes((255, *rgb)) if edge else bytes([7, 8, 9, 10]))


def test_border_golden() -> None:
    out = bordered(Pixmap(4, 3, bytes(48)), (1, 2, 3))
    f, z = "ff010203", "00000000"
    assert out.data.hex() == f * 4 + f + z + z + f + f * 4
    assert border_width(16, 16) == 1 and border_width(22, 22) == 1 and border_width(64, 64) == 4
    p = placeholder((9, 9, 9))
    assert (p.width, p.height) == (22, 22) and p.data[:4] == bytes((255, 9, 9, 9))
