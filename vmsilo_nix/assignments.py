"""NAME=VALUE, read in one place: environment items, kernel parameters, desktop-file lines and
crosvm's ``--flag=value`` all split at their first ``=``.

On the ground floor (it imports nothing of ours) so that every room may use it. The one copy
it cannot serve is in guest/spawn.py's child program, which runs without vmsilo_nix on its path.
"""

from __future__ import annotations

from collections.abc import Iterable


def split_assignment(text: str) -> tuple[str, str | None]:
    """``(NAME, VALUE)`` split at the first ``=``; VALUE is None when there is no ``=`` (an
    empty VALUE, ``NAME=``, is ``""``). NAME may be empty: callers decide what that means."""
    name, eq, value = text.partition("=")
    return name, value if eq else None


def last_assignment(words: Iterable[str], name: str) -> str | None:
    """The value of the last ``name=VALUE`` among ``words`` (a bare ``name`` sets nothing), as
    the kernel reads its command line; None when there is none."""
    found = None
    for word in words:
        key, value = split_assignment(word)
        if key == name and value is not None:
            found = value
    return found
