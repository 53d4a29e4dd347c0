"""The one NAME=VALUE reader, and that it stays the one."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from vmsilo_nix.assignments import last_assignment, split_assignment

PACKAGE = Path(__file__).resolve().parent.parent / "vmsilo_nix"


@given(st.text().filter(lambda t: "=" not in t), st.text())
def test_split_at_the_first_equals_sign(name: str, value: str) -> None:
    assert split_assignment(f"{name}={value}") == (name, value)
    assert split_assignment(name) == (name, None)


def test_split_edges() -> None:
    assert split_assignment("A=") == ("A", "")
    assert split_assignment("=x") == ("", "x")
    assert split_assignment("A=b=c") == ("A", "b=c")


def test_the_last_assignment_wins() -> None:
    words = ["console=ttyS0", "vmsilo.x=1", "quiet", "vmsilo.x", "vmsilo.x=2", "xvmsilo.x=3"]
    assert last_assignment(words, "vmsilo.x") == "2"
    assert last_assignment(words, "quiet") is None  # bare: sets nothing
    assert last_assignment(words, "absent") is None
    assert last_assignment(["a="], "a") == ""


# guest/spawn.py's child program runs without vmsilo_nix on its path, so it keeps its own.
OWN_COPY = {"assignments.py", "guest/spawn.py"}
SPLITS = re.compile(r"""\.partition\(\s*["']=["']\s*\)|\.split\(\s*["']=["']\s*,""")


def test_no_other_name_value_reader() -> None:
    found = [
        str(p.relative_to(PACKAGE))
        for p in sorted(PACKAGE.rglob("*.py"))
        if str(p.relative_to(PACKAGE)) not in OWN_COPY and SPLITS.search(p.read_text())
    ]
    assert found == []
    assert SPLITS.search('key, _, value = word.partition("=")')
    assert SPLITS.search("k = a.split('=', 1)[0]")
