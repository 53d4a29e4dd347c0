"""Host menu entries for a VM's guest programs: found in their packages, written for the host.

A host copy shows the program in the host's application menu, marked with its VM, and starts it
there through `vm-run VM ARGV...`. The guest entry's Exec is split into its arguments and its
field codes are dropped: they stand for host files and URLs, which do not exist in the VM. The
syntax of the files themselves is `desktop_entry`'s.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

from vmsilo_nix.render.desktop_entry import (
    GROUP,
    REGISTERED_CATEGORIES,
    SUFFIX,
    DesktopEntry,
    escape_list,
    escape_string,
    parse_desktop_entry,
    quote_exec,
)


def find_entries(package_path: str | os.PathLike[str]) -> list[tuple[str, DesktopEntry]]:
    """(file name, entry) for each application in `<package>/share/applications/*.desktop`,
    by file name; files that cannot be read, are not UTF-8 or should not be shown are skipped."""
    apps = Path(package_path) / "share" / "applications"
    try:
        names = sorted(p.name for p in apps.iterdir() if p.name.endswith(SUFFIX))
    except OSError:
        return []
    found: list[tuple[str, DesktopEntry]] = []
    for name in names:
        try:
            text = (apps / name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        entry = parse_desktop_entry(text)
        if entry is not None:
            found.append((name, entry))
    return found


_ICON_EXTENSIONS = (".svg", ".png")
_PIXMAP_EXTENSIONS = (".svg", ".png", ".xpm")
_SIZE_DIR = re.compile(r"(\d+)x(\d+)(?:@(\d+))?")


def find_icon(package_path: str | os.PathLike[str], icon: str | None) -> str | None:
    """An absolute path to the package's file for an Icon value, or None.

    An absolute Icon is returned as it is. Otherwise the hicolor theme's `apps` icons are
    searched, the scalable one first, then the largest (size times scale), SVG before PNG at
    equal size; then `share/pixmaps` (SVG, PNG, XPM, then any other extension). An Icon written
    with an image extension (`foo.png`) is looked up without it.
    """
    if not icon:
        return None
    if icon.startswith("/"):
        return icon
    base = icon
    if base.endswith(_PIXMAP_EXTENSIONS):
        base = base[:-4]
    if not base or "/" in base or base in (".", ".."):
        return None
    share = Path(package_path).absolute() / "share"
    best: tuple[int, int, int] | None = None
    best_path: Path | None = None
    for size_dir in _list_dir(share / "icons" / "hicolor"):
        if size_dir == "scalable":
            size = 1 << 30
        elif m := _SIZE_DIR.fullmatch(size_dir):
            size = int(m[1]) * int(m[3] or 1)
        else:
            continue
        for rank, ext in enumerate(reversed(_ICON_EXTENSIONS)):
            path = share / "icons" / "hicolor" / size_dir / "apps" / (base + ext)
            # Equal size and extension (48x48@1 beside 48x48): the plain directory wins.
            key = (size, rank, -len(size_dir))
            if (best is None or key > best) and path.is_file():
                best, best_path = key, path
    if best_path is not None:
        return str(best_path)
    pixmaps = share / "pixmaps"
    candidates = [
        name
        for name in _list_dir(pixmaps)
        if name.startswith(base + ".")
        and "." not in name[len(base) + 1 :]
        and (pixmaps / name).is_file()
    ]

    def preference(name: str) -> tuple[int, str]:
        ext = name[len(base) :]
        order = _PIXMAP_EXTENSIONS.index(ext) if ext in _PIXMAP_EXTENSIONS else 99
        return (order, name)

    if candidates:
        return str(pixmaps / min(candidates, key=preference))
    return None


def _list_dir(path: Path) -> list[str]:
    try:
        return sorted(p.name for p in path.iterdir())
    except OSError:
        return []


def host_file_name(vm: str, file_name: str) -> str:
    """`vmsilo-<vm>-<guest file name>`, always ending in `.desktop`."""
    base = os.path.basename(file_name)
    if not base or base != file_name:
        raise ValueError(f"not a file name: {file_name!r}")
    return f"vmsilo-{vm}-{base if base.endswith(SUFFIX) else base + SUFFIX}"


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def host_categories(categories: Iterable[str]) -> list[str]:
    """The categories a host entry may carry: registered ones and `X-` extensions, once each.
    Reserved ones (Screensaver, TrayIcon, Applet, Shell) would need OnlyShowIn; unknown ones
    are errors for desktop-file-validate."""
    return _unique(c for c in categories if c in REGISTERED_CATEGORIES or c.startswith("X-"))


def render_host_entry(
    vm: str, file_name: str, entry: DesktopEntry, vm_run: str, icon: str | None
) -> tuple[str, str]:
    """(host file name, contents) of the host menu entry that runs `entry` in `vm`.

    Name (and each translation) gets ` (<vm>)`; the VM name joins the keywords, so searching
    the menu for the VM finds its programs. GenericName, Comment, Terminal and StartupWMClass
    are copied (the window class lets a dock match the VM's windows to the entry; a Comment
    equal to GenericName is dropped, desktop-file-validate warns about it); Categories keeps
    what the host menu spec knows. Icon is `icon` (a path found by `find_icon`), else the guest
    entry's Icon as a theme name. Exec is `<vm_run> <vm> <argv...>`.

    Not copied, since each would make the host act on guest-only facts: MimeType (the host
    would offer the program for its own files and then pass paths the VM cannot see; the field
    codes that would carry them are dropped as well), TryExec (a guest path: the host would
    hide the entry), Path (a guest directory), DBusActivatable (the host would activate a
    service it does not have), Actions (their Exec lines are the guest's too) and
    OnlyShowIn/NotShowIn (they name the guest's desktop, not the host's).
    """
    suffix = f" ({vm})"
    lines = ["[" + GROUP + "]", "Type=Application"]

    def put(key: str, value: str) -> None:
        lines.append(f"{key}={value}")

    put("Name", escape_string(entry.name + suffix))
    for lang, value in sorted(entry.names.items()):
        put(f"Name[{lang}]", escape_string(value + suffix))
    if entry.generic_name:
        put("GenericName", escape_string(entry.generic_name))
    for lang, value in sorted(entry.generic_names.items()):
        put(f"GenericName[{lang}]", escape_string(value))
    if entry.comment and not _same_text(entry.comment, entry.generic_name):
        put("Comment", escape_string(entry.comment))
    for lang, value in sorted(entry.comments.items()):
        if not _same_text(value, entry.generic_names.get(lang)):
            put(f"Comment[{lang}]", escape_string(value))
    put("Keywords", escape_list(_unique([*entry.keywords, vm])))
    for lang, words in sorted(entry.localized_keywords.items()):
        put(f"Keywords[{lang}]", escape_list(_unique([*words, vm])))
    chosen_icon = icon if icon is not None else entry.icon
    if chosen_icon:
        put("Icon", escape_string(chosen_icon))
    put("Exec", escape_string(quote_exec([vm_run, vm, *entry.argv])))
    put("Terminal", "true" if entry.terminal else "false")
    categories = host_categories(entry.categories)
    if categories:
        put("Categories", escape_list(categories))
    if entry.startup_wm_class:
        put("StartupWMClass", escape_string(entry.startup_wm_class))
    put("X-Vmsilo-VM", escape_string(vm))
    return host_file_name(vm, file_name), "\n".join(lines) + "\n"


def _same_text(a: str, b: str | None) -> bool:
    return b is not None and a.casefold() == b.casefold()
