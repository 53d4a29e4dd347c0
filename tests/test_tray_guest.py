"""The guest side's reading of apps: whatever an app's properties and menu hold, what the guest
sends passes the host's validation (so an odd app costs its own icon at most, never the VM's
connection)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import Variant
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from vmsilo_nix.tray import guest, icons, protocol
from vmsilo_nix.tray.protocol import FROM_GUEST, FrameReader

_TEXT = st.text(max_size=300)
_PIXMAP = st.tuples(
    st.integers(-2, 300), st.integers(-2, 300), st.binary(max_size=64)
) | st.integers(1, 8).flatmap(
    lambda n: st.tuples(st.just(n), st.just(n), st.just(bytes(n * n * 4)))
)


def _variants() -> st.SearchStrategy[Variant]:
    return st.one_of(
        _TEXT.map(lambda t: Variant("s", t)),
        st.integers(-(2**31), 2**31 - 1).map(lambda i: Variant("i", i)),
        st.booleans().map(lambda b: Variant("b", b)),
        st.lists(_PIXMAP, max_size=6).map(
            lambda ps: Variant("a(iiay)", [[w, h, d] for w, h, d in ps if -(2**31) < w < 2**31])
        ),
        st.tuples(_TEXT, _TEXT).map(lambda t: Variant("(sa(iiay)ss)", ["", [], t[0], t[1]])),
        st.just(Variant("o", "/x")),
    )


_NAMES = st.sampled_from(
    [
        "Category", "Id", "Title", "Status", "IconName", "IconThemePath", "IconPixmap",
        "AttentionIconPixmap", "OverlayIconPixmap", "ToolTip", "ItemIsMenu", "Menu",
    ]
)  # fmt: skip


@pytest.fixture(autouse=True)
def no_icon_themes(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """Random icon names are looked up in an empty data directory (fast, and the same here as
    anywhere)."""
    empty = tmp_path_factory.mktemp("no-icons")
    monkeypatch.setenv("XDG_DATA_DIRS", str(empty))
    monkeypatch.setenv("XDG_DATA_HOME", str(empty))
    yield


def _sent(msg: protocol.Message) -> protocol.Message:
    (back,) = FrameReader(FROM_GUEST).feed(protocol.encode(msg))
    return back


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(_NAMES, _variants(), max_size=12), st.booleans())
def test_any_item_properties_become_an_item_the_host_accepts(
    props: dict[str, Variant], has_menu: bool
) -> None:
    item = guest.item_message(3, props, has_menu)
    assert _sent(item) == item


def _menu(depth: int) -> st.SearchStrategy[Any]:
    props = st.dictionaries(
        st.sampled_from(["label", "type", "enabled", "visible", "toggle-type", "toggle-state"]),
        _variants(),
        max_size=6,
    )
    leaf: st.SearchStrategy[tuple[int, dict[str, Variant], list[Any]]] = st.tuples(
        st.integers(-5, 2**31 - 1), props, st.just([])
    )
    if depth == 0:
        return leaf.map(list)
    return st.tuples(
        st.integers(-5, 40),
        props,
        st.lists(_menu(depth - 1).map(lambda c: Variant("(ia{sv}av)", c)), max_size=4),
    ).map(list)


@settings(max_examples=100, deadline=None)
@given(_menu(3))
def test_any_menu_becomes_a_menu_the_host_accepts_or_none(raw: Any) -> None:
    root = guest.menu_node(raw, [protocol.MAX_MENU_NODES])
    if root is None:
        return
    menu = protocol.Menu(0, root)
    assert _sent(menu) == menu


def test_a_huge_deep_menu_is_cut_to_the_protocols_size() -> None:
    def chain(depth: int, start: int) -> list[Any]:
        node: list[Any] = [start + depth, {}, []]
        for i in range(depth - 1, -1, -1):
            node = [start + i, {}, [Variant("(ia{sv}av)", node)]]
        return node

    deep = chain(20, 0)
    root = guest.menu_node(deep, [protocol.MAX_MENU_NODES])
    assert root is not None and len(root.walk()) == protocol.MAX_MENU_DEPTH
    twins = [0, {}, [Variant("(ia{sv}av)", [1, {}, []]), Variant("(ia{sv}av)", [1, {}, []])]]
    root = guest.menu_node(twins, [protocol.MAX_MENU_NODES])
    assert root is not None and [c.id for c in root.children] == [1]
    wide = [0, {}, [Variant("(ia{sv}av)", [i, {}, []]) for i in range(1, 900)]]
    root = guest.menu_node(wide, [protocol.MAX_MENU_NODES])
    assert root is not None and len(root.walk()) == protocol.MAX_MENU_NODES
    assert _sent(protocol.Menu(0, root)) == protocol.Menu(0, root)


def test_oversized_and_wrong_pixmaps_are_cut_down() -> None:
    big = [600, 300, bytes(600 * 300 * 4)]
    short = [4, 4, bytes(10)]
    good = [[n, n, bytes(n * n * 4)] for n in (16, 22, 24, 32, 48)]
    got = icons.pixmaps([big, short, *good])
    assert [(p.width, p.height) for p in got] == [(256, 128), (48, 48), (32, 32), (24, 24)]


SVG = """<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 16 16">
<rect width="16" height="16" fill="#00ff00"/></svg>
"""


@pytest.mark.skipif(shutil.which("rsvg-convert") is None, reason="rsvg-convert is not installed")
def test_an_svg_icon_name_is_drawn_in_the_guest(tmp_path: Path) -> None:
    theme = tmp_path / "icons" / "hicolor" / "scalable" / "apps"
    theme.mkdir(parents=True)
    (theme / "vpn.svg").write_text(SVG)
    got = icons.render("vpn", str(tmp_path / "icons"))
    assert [(p.width, p.height) for p in got] == [(64, 64), (32, 32), (22, 22)]
    assert got[0].data[:4] == bytes((255, 0, 255, 0))  # ARGB: opaque green
    # a PNG of the same name is preferred (no renderer needed)
    png_dir = tmp_path / "icons" / "hicolor" / "48x48" / "apps"
    png_dir.mkdir(parents=True)
    Image.new("RGBA", (48, 48), (255, 0, 0, 255)).save(png_dir / "vpn.png")
    assert icons.render("vpn", str(tmp_path / "icons"))[0].data[:4] == bytes((255, 255, 0, 0))


def test_a_broken_svg_is_no_icon(tmp_path: Path) -> None:
    (tmp_path / "bad.svg").write_text("<svg")
    assert icons.render("bad", str(tmp_path)) == ()


def test_no_renderer_is_no_icon(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "vpn.svg").write_text(SVG)
    monkeypatch.setenv("PATH", str(tmp_path / "nothing-here"))
    assert icons.render("vpn", str(tmp_path)) == ()


class _Link:
    def __init__(self) -> None:
        self.sent: list[object] = []

    async def send(self, msg: object) -> None:
        self.sent.append(msg)

    async def close(self) -> None:
        pass


def test_the_sender_stops_when_cancelled_as_a_change_comes() -> None:
    """A change and the host's disconnect in the same moment: the sender must still stop (with
    Python 3.11's wait_for it swallowed the cancellation and pinged a closed link forever)."""

    async def scenario() -> tuple[bool, list[object]]:
        server = object.__new__(guest.GuestServer)  # the sender needs no D-Bus
        server._dirty, server._wake = {}, asyncio.Event()
        link = _Link()
        sender = asyncio.ensure_future(server._send(link))  # type: ignore[arg-type]
        await asyncio.sleep(0)  # it waits for a change
        server._wake.set()
        sender.cancel()
        await asyncio.wait({sender}, timeout=2)
        stopped = sender.done() and sender.cancelled()
        sender.cancel()
        return stopped, link.sent

    stopped, sent = asyncio.run(scenario())
    assert stopped and sent == []
