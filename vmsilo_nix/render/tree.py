"""Writing a generated tree so that readers only ever see the old tree or the new one.

The new tree is written beside the target as a hidden sibling and swapped in with one
``renameat2(RENAME_EXCHANGE)`` (two renames where the kernel or filesystem lacks it), so a crash
at any point leaves the previous tree whole. A tree identical to what is on disk is not written
at all: contents, modes and mtimes stay as they were.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import secrets
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path

import attrs

from vmsilo_nix.errors import VmsiloError

EXECUTABLE = 0o755
REGULAR = 0o644


@attrs.frozen
class File:
    content: bytes
    mode: int = REGULAR


@attrs.frozen
class Link:
    target: str  # relative symlink target


Entry = File | Link
Tree = Mapping[str, Entry]  # relative POSIX paths -> entries


class TreeError(VmsiloError):
    """The output directory cannot be written."""


def read_tree(root: Path) -> dict[str, Entry]:
    """What is on disk under ``root``, in the same form (directories implied by paths)."""
    out: dict[str, Entry] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        base = Path(dirpath)
        for name in [*filenames, *(d for d in dirnames if (base / d).is_symlink())]:
            path = base / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                out[rel] = Link(os.readlink(path))
            else:
                out[rel] = File(path.read_bytes(), path.stat().st_mode & 0o777)
    return out


def _write(root: Path, tree: Tree) -> None:
    root.mkdir(mode=0o755)
    for rel, entry in sorted(tree.items()):
        path = root / rel
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        if isinstance(entry, Link):
            os.symlink(entry.target, path)
            continue
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, entry.mode)
        with os.fdopen(fd, "wb") as f:
            f.write(entry.content)
        os.chmod(path, entry.mode)  # the umask must not decide the mode


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths; False when this system cannot."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    libc = ctypes.CDLL(libc_name, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    rc = renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _siblings(out: Path, kind: str) -> Iterator[Path]:
    yield from out.parent.glob(f".{out.name}.{kind}-*")


def _recover(out: Path) -> None:
    """Undo what a killed run left: a half-written new tree, or (fallback swap only) the
    previous tree moved aside before the new one took its place."""
    for stale in _siblings(out, "new"):
        shutil.rmtree(stale)
    for old in sorted(_siblings(out, "old")):
        if not out.exists() and not out.is_symlink():
            os.rename(old, out)
        else:
            shutil.rmtree(old)


def write_tree(out: Path, tree: Tree) -> bool:
    """Make ``out`` hold exactly ``tree``; returns False when it already did (nothing written)."""
    out = out.absolute()
    new: Path | None = None
    try:
        _recover(out)
        if out.is_symlink() or (out.exists() and not out.is_dir()):
            raise TreeError(f"{out} exists and is not a directory")
        if out.exists() and read_tree(out) == dict(tree):
            return False
        out.parent.mkdir(parents=True, exist_ok=True)
        new = out.parent / f".{out.name}.new-{secrets.token_hex(4)}"
        _write(new, tree)
        if not out.exists():
            os.rename(new, out)
        elif _exchange(new, out):
            shutil.rmtree(new)  # now the previous tree
        else:
            old = out.parent / f".{out.name}.old-{secrets.token_hex(4)}"
            os.rename(out, old)
            os.rename(new, out)
            shutil.rmtree(old)
        return True
    except OSError as e:
        if new is not None:
            shutil.rmtree(new, ignore_errors=True)
        raise TreeError(f"cannot write {out}: {e.strerror or e}") from None
