"""Command lines that remember where each part came from, and crosvm's key=value syntax.

A planned command is a sequence of ``Arg``: one flag with the values that follow it, plus the
option paths that produced it (``vmsilo show`` prints them beside each flag). ``words`` are exec
arguments, not shell text: shell quoting is the renderers' job.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from itertools import chain
from operator import itemgetter
from typing import NamedTuple

from vmsilo_nix.config.paths import Segment, format_path
from vmsilo_nix.config.schema import ROOT

OptionPath = tuple[Segment, ...]
KvValue = str | int | bool


class Arg(NamedTuple):
    """One flag and its values (or one positional), and the options that decided it.

    A named tuple rather than an attrs class: a 1000-VM plan makes some 70,000 of them, and a
    tuple is built several times faster. The option paths are kept as data and rendered only
    when shown (``explain``, ``vmsilo plan --json``).
    """

    words: tuple[str, ...]
    sources: tuple[OptionPath, ...] = ()
    note: str = ""  # why, when vmsilo chose this itself rather than an option

    def explain(self, vm_names: Sequence[str | None] = (), root: str = ROOT) -> str:
        """The option paths (or the note) for people."""
        if self.sources:
            return ", ".join(format_path(s, vm_names, root) for s in self.sources)
        return self.note


def arg(
    *words: str,
    source: OptionPath | None = None,
    sources: Iterable[OptionPath] = (),
    note: str = "",
) -> Arg:
    # tuple.__new__ directly: the named tuple's own __new__ is a Python function, and this is
    # called for every word of every VM's command lines.
    if source is None:
        return _new_arg(Arg, (words, tuple(sources), note))
    return _new_arg(Arg, (words, (source, *sources), note))


_new_arg = tuple.__new__


def flatten(args: Iterable[Arg]) -> list[str]:
    # C all the way (itemgetter(0) is ``words``): this runs for every command of every VM.
    return list(chain.from_iterable(map(_WORDS, args)))


_WORDS = itemgetter(0)


# --- crosvm key=value values (serde_keyvalue) ------------------------------------------------

# An unquoted value ends at ',', '[' or ']'; a value that reads as a number or boolean would be
# taken as one where the field's type is not known (flattened structs such as --net).
_NEEDS_QUOTES = re.compile(r'[,\[\]"\'=\s\\]')
_LOOKS_TYPED = re.compile(r"true|false|[+-]?(0[xob])?[0-9a-fA-F_]+")


def kv_value(value: KvValue) -> str:
    """One value as crosvm's key=value parser reads it back exactly.

    A string that is a whole bracketed list (``[[mode=windowed[1920,1080]]]`` for ``--gpu
    displays``) is crosvm syntax the user wrote on purpose and goes through as it is; any other
    string holding a separator, bracket or quote is quoted.
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if value and not _NEEDS_QUOTES.search(value) and not _LOOKS_TYPED.fullmatch(value):
        return value
    if is_bracketed_list(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def is_bracketed_list(value: str) -> bool:
    """``[...]`` whose brackets balance and close only at the end, with no quotes inside."""
    if not (value.startswith("[") and value.endswith("]")) or '"' in value or "'" in value:
        return False
    depth = 0
    for i, ch in enumerate(value):
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if depth == 0 and i != len(value) - 1:
            return False
    return depth == 0


def kv_list(pairs: Iterable[tuple[str, KvValue | None]]) -> str:
    """``key=value,...``; a None value leaves its key out (how the options spell "unset")."""
    return ",".join(f"{k}={kv_value(v)}" for k, v in pairs if v is not None)
