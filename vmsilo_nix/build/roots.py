"""Garbage-collector roots for what `vmsilo build` built, registered the way Nix does it.

Each output of each unit that built gets a symlink in the roots directory (``--out-link DIR``,
by default beside the artifacts file), made by ``nix-store --add-root LINK --indirect
--realise PATH``: Nix writes the link (replacing an old one by a rename, so it is never
missing) and registers it as an indirect root, exactly as ``nix build --out-link`` does.
``nix-collect-garbage`` then keeps the outputs while the links exist; removing a link (or the
directory) lets it collect them. The links are named ``UNIT-PART`` (``base-1a2b-kernel``,
``programs-3f9c-programImage``, ``package-crosvm``), so a rebuilt unit replaces its own links.

After a build, links this build did not make and whose output the artifacts file no longer
names are removed: nothing keeps alive what no launcher can use any more.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from vmsilo_nix import process
from vmsilo_nix.build.planner import Unit
from vmsilo_nix.errors import VmsiloError
from vmsilo_nix.nixeval.nix import NixOptions, nix_store


class RootsError(VmsiloError):
    """A root could not be registered (the directory, or nix-store, refused)."""


def link_name(unit: Unit, part: str) -> str:
    """``base-1a2b-kernel``; a package's one output is the unit itself: ``package-crosvm``."""
    return unit.id if unit.kind == "package" else f"{unit.id}-{part}"


def add_root_argv(link: Path, path: str, opts: NixOptions) -> list[str]:
    """``nix-store --add-root LINK --indirect --realise PATH`` (with the ``--option`` pairs)."""
    argv = [nix_store(opts)]
    for key, value in opts.options:
        argv += ["--option", key, value]
    return [*argv, "--add-root", str(link), "--indirect", "--realise", path]


def register(directory: Path, units: Iterable[Unit], opts: NixOptions) -> list[Path]:
    """A root for every output of ``units`` in ``directory``; the links made, in order."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise RootsError(f"{directory}: cannot make the GC roots directory: {err}") from None
    made = []
    for unit in units:
        for part, target in unit.targets.items():
            link = directory.absolute() / link_name(unit, part)
            made.append(link)
            if _points_at(link, target.out_path):
                continue  # Nix registered it when it made it; a root lasts as long as its link
            result = process.run(add_root_argv(link, target.out_path, opts))
            if result.returncode != 0:
                raise RootsError(
                    f"cannot register a GC root for {target.out_path} at {link}: "
                    f"{result.stderr.strip()} (--no-out-link builds without roots)"
                )
    return made


def _points_at(link: Path, path: str) -> bool:
    try:
        return os.readlink(link) == path
    except OSError:
        return False


def prune(directory: Path, keep: set[str], made: Sequence[Path]) -> list[Path]:
    """Remove the links of ``directory`` not in ``made`` whose target is not in ``keep``
    (store paths); only symlinks, never anything else. The links removed."""
    fresh = {link.name for link in made}
    removed = []
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return []
    for entry in entries:
        if entry.name in fresh or not entry.is_symlink():
            continue
        if os.readlink(entry.path) not in keep:
            os.unlink(entry.path)
            removed.append(Path(entry.path))
    return removed
