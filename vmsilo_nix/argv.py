"""Command lines that remember where each part came from, and crosvm's key=value syntax.

A planned command is a sequence of ``Arg``: one flag with the values that follow it, plus the
option paths that produced it (``vmsilo show`` prints them beside each flag). ``words`` are exec
arguments, not shell text: shell quoting is the renderers' job.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

import attrs

from .paths import Segment, format_path

OptionPath = tuple[Segment, ...]
KvValue = str | int | bool


@attrs.frozen
class Arg:
    """One flag and its values (or one positional), and the options that decided it."""

    words: tuple[str, ...]
    sources: tuple[OptionPath, ...] = ()
    note: str = ""  # why, when vmsilo chose this itself rather than an option

    def explain(self, vm_names: Sequence[str | None] = ()) -> str:
        """The option paths (or the note) for people."""
        if self.sources:
            return ", ".join(format_path(s, vm_names) for s in self.sources)
        return self.note


def arg(
    *words: str,
    source: OptionPath | None = None,
    sources: Iterable[OptionPath] = (),
    note: str = "",
) -> Arg:
    all_sources = ((source,) if source is not None else ()) + tuple(sources)
    return Arg(tuple(words), all_sources, note)


def flatten(args: Iterable[Arg]) -> list[str]:
    return [w for a in args for w in a.words]


# --- crosvm key=value values (serde_keyvalue) ------------------------------------------------

# An unquoted value ends at ',', '[' or ']'; a value that reads as a number or boolean would be
# taken as one where the field's type is not known (flattened structs such as --net).
_NEEDS_QUOTES = re.compile(r'[,\[\]"\'=\s\\]')
_LOOKS_TYPED = re.compile(r"^(true|false|[+-]?(0[xob])?[0-9a-fA-F_]+)$")


def kv_value(value: KvValue) -> str:
    """One value as crosvm's key=value parser reads it back exactly."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if value and not _NEEDS_QUOTES.search(value) and not _LOOKS_TYPED.match(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def kv_list(pairs: Iterable[tuple[str, KvValue | None]]) -> str:
    """``key=value,...``; a None value leaves its key out (how the options spell "unset")."""
    return ",".join(f"{k}={kv_value(v)}" for k, v in pairs if v is not None)
