"""Icons as the protocol carries them: ARGB32 pixmaps, made in the guest.

Items name icons (``IconName`` in a theme, or in ``IconThemePath``) or send pixels. The host must
never look a guest-chosen name up (it could name a host icon or a host file), so the guest
resolves names in its own icon themes here, decodes the file with Pillow (SVG files are first
drawn to PNG by librsvg's ``rsvg-convert``) and sends pixels only. Pixmaps an app sends are
checked and cut down to what the protocol allows.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from PIL import Image

from vmsilo_nix import process
from vmsilo_nix.errors import VmsiloError

from .protocol import MAX_PIXMAP_SIDE, MAX_PIXMAPS, Pixmap, Pixmaps

log = logging.getLogger("vmsilo.tray")

#: The sizes rendered from an icon file, largest first.
SIZES = (64, 32, 22)
_THEMES = ("hicolor", "Adwaita", "breeze")
_EXTENSIONS = (".png", ".xpm", ".svg")  # raster first: what Pillow reads without a renderer
_MAX_FILE = 4 * 1024 * 1024
_MAX_SOURCE_PIXELS = 4096 * 4096
_SVG_TIMEOUT = 5.0


def _data_dirs() -> list[Path]:
    dirs = [os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")]
    dirs += (os.environ.get("XDG_DATA_DIRS") or "/usr/local/share:/usr/share").split(":")
    return [Path(d) for d in dirs if d]


def _candidates(name: str, theme_path: str) -> Iterable[Path]:
    if name.startswith("/"):
        yield Path(name)
        return
    if "/" in name or name in ("", ".", ".."):
        return
    names = [name] if name.endswith(_EXTENSIONS) else [name + e for e in _EXTENSIONS]
    roots = [Path(theme_path)] if theme_path.startswith("/") else []
    for root in roots:
        for n in names:
            yield root / n
        # SIZE/apps/NAME or THEME/SIZE/apps/NAME below it
        for pattern in ("*/*/{}", "*/*/*/{}"):
            yield from (p for n in names for p in sorted(root.glob(pattern.format(n))))
    for data in _data_dirs():
        for theme in _THEMES:
            for size in ("256x256", "128x128", "64x64", "48x48", "32x32", "22x22", "scalable"):
                for n in names:
                    yield from sorted((data / "icons" / theme / size).glob(f"*/{n}"))
        for n in names:
            yield data / "pixmaps" / n


def find(name: str, theme_path: str = "") -> Path | None:
    """The guest file an icon name stands for, if any."""
    for path in _candidates(name, theme_path):
        if path.is_file():
            return path
    return None


def _argb(image: Image.Image) -> Pixmap:
    rgba = image.convert("RGBA")
    r, g, b, a = rgba.split()
    data = Image.merge("RGBA", (a, r, g, b)).tobytes()
    return Pixmap(rgba.width, rgba.height, data)


def _svg(path: Path, sizes: Sequence[int]) -> Pixmaps:
    """An SVG drawn by rsvg-convert at each of ``sizes``, or () when it cannot be."""
    out: list[Pixmap] = []
    with tempfile.TemporaryDirectory(prefix="vmsilo-tray-") as tmp:
        for size in sizes:
            png = Path(tmp) / f"{size}.png"
            argv = ["rsvg-convert", "-w", str(size), "-h", str(size), "-f", "png", "-o", str(png)]
            try:
                done = process.run([*argv, str(path)], timeout=_SVG_TIMEOUT)
            except VmsiloError as err:  # not installed, or stuck on a hostile file
                log.debug("cannot draw the icon %s: %s", path, err)
                return ()
            if done.returncode != 0:
                log.debug("cannot draw the icon %s: %s", path, done.stderr.strip())
                return ()
            out += load(png, (size,))
    return tuple(out)


def load(path: Path, sizes: Sequence[int] = SIZES) -> Pixmaps:
    """The file decoded at ``sizes`` (never upscaled past its own size), or () when it is not
    an image Pillow reads (or, for SVG, rsvg-convert draws)."""
    try:
        if path.stat().st_size > _MAX_FILE:
            return ()
        if path.suffix == ".svg":
            return _svg(path, sizes)
        with Image.open(path) as image:
            if image.width * image.height > _MAX_SOURCE_PIXELS:
                return ()
            image.load()
            out: list[Pixmap] = []
            for size in sizes:
                copy = image.copy()
                copy.thumbnail((size, size), Image.Resampling.LANCZOS)
                if all((p.width, p.height) != copy.size for p in out):
                    out.append(_argb(copy))
            return tuple(out)
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        log.debug("cannot read the icon %s: %s", path, err)
        return ()


def render(name: str, theme_path: str = "") -> Pixmaps:
    """An icon name as pixmaps, or () when the guest has no raster file for it."""
    path = find(name, theme_path) if name else None
    return load(path) if path is not None else ()


def _scaled(width: int, height: int, data: bytes) -> Pixmap:
    argb = Image.frombytes("RGBA", (width, height), data)
    a, r, g, b = argb.split()
    return _argb(Image.merge("RGBA", (r, g, b, a)).resize(_fit(width, height)))


def _fit(width: int, height: int) -> tuple[int, int]:
    scale = MAX_PIXMAP_SIDE / max(width, height)
    return max(1, int(width * scale)), max(1, int(height * scale))


def pixmaps(raw: object) -> Pixmaps:
    """An app's ``a(iiay)`` value as at most MAX_PIXMAPS protocol pixmaps, largest first:
    wrong-sized entries are dropped, ones over 256 x 256 scaled down."""
    if not isinstance(raw, list):
        return ()
    good: dict[tuple[int, int], Pixmap] = {}
    for entry in raw:
        if not (isinstance(entry, list | tuple) and len(entry) == 3):
            continue
        w, h, data = entry
        if not (isinstance(w, int) and isinstance(h, int) and isinstance(data, bytes)):
            continue
        if w < 1 or h < 1 or w * h > _MAX_SOURCE_PIXELS or len(data) != w * h * 4:
            continue
        pixmap = Pixmap(w, h, data) if max(w, h) <= MAX_PIXMAP_SIDE else _scaled(w, h, data)
        good.setdefault((pixmap.width, pixmap.height), pixmap)
    ordered = sorted(good.values(), key=lambda p: p.width * p.height, reverse=True)
    return tuple(ordered[:MAX_PIXMAPS])
