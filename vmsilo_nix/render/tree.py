"""Writing a generated tree so that readers only ever see the old tree or the new one.

The new tree is written beside the target as a hidden sibling and swapped in with one
``renameat2(RENAME_EXCHANGE)`` (two renames where the kernel or filesystem lacks it), so a crash
at any point leaves the previous tree whole. A tree identical to what is on disk is not written
at all: contents, modes and mtimes stay as they were.

A directory that is there already is replaced only when it is empty or holds the writer's
marker file (the manifest of a tree it wrote): nothing a user put there is deleted. Writers of
one target take turns through a lock file beside it, so two runs never interleave their swaps
or clean up each other's half-written trees.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import os
import secrets
import shutil
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import attrs

from vmsilo_nix.errors import WriteError

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


class TreeError(WriteError):
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


def lock_path(out: Path) -> Path:
    """The lock file beside ``out`` (kept: removing it would let a waiter lock a dead inode)."""
    return out.parent / f".{out.name}.lock"


@contextlib.contextmanager
def _locked(out: Path, on_wait: Callable[[], None] | None) -> Iterator[None]:
    fd = os.open(lock_path(out), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


_LISTED = 5  # how many of a foreign directory's entries an error names


def _refuse_foreign(out: Path, marker: str | None) -> None:
    """Raise unless ``out`` is absent, empty, or holds ``marker`` (so it is a tree we wrote)."""
    if marker is None or not out.is_dir():
        return
    found = sorted(e.name + ("/" if e.is_dir() else "") for e in out.iterdir())
    if not found or (out / marker).is_file():
        return
    listed = ", ".join(found[:_LISTED]) + (
        f" and {len(found) - _LISTED} more" if len(found) > _LISTED else ""
    )
    raise TreeError(
        f"{out} is not empty and holds no {marker}, so it is not a tree vmsilo wrote; "
        f"refusing to replace it (found {listed}). Choose an empty or new directory."
    )


def write_tree(
    out: Path,
    tree: Tree,
    *,
    marker: str | None = None,
    on_wait: Callable[[], None] | None = None,
) -> bool:
    """Make ``out`` hold exactly ``tree``; returns False when it already did (nothing written).

    With ``marker`` (a path in ``tree``), an existing non-empty ``out`` without that file is
    refused. ``on_wait`` is called once when another writer holds ``out``'s lock; we then wait.
    """
    out = out.absolute()
    new: Path | None = None
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with _locked(out, on_wait):
            _recover(out)
            if out.is_symlink() or (out.exists() and not out.is_dir()):
                raise TreeError(f"{out} exists and is not a directory")
            _refuse_foreign(out, marker)
            if out.exists() and read_tree(out) == dict(tree):
                return False
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
