"""docs/mapping.md explains every option: each path of the model has exactly one row (or bullet)
there, so the page cannot silently fall behind when the model grows."""

from __future__ import annotations

import re
from collections import Counter

from vmsilo_nix.config import model
from vmsilo_nix.config import options as options_render
from vmsilo_nix.config.schema import ROOT as OPTION_ROOT

from .conftest import ROOT

MAPPING = ROOT / "docs" / "mapping.md"
REFERENCE = ROOT / "docs" / "options.md"

# A line that explains one option: a table row or a bullet whose first cell is the path.
_ENTRY = re.compile(r"^(?:\|\s*|[-*]\s+)`(programs\.vmsilo\.[^`]+)`", re.MULTILINE)
# Any option path written in backticks, anywhere on the page.
_MENTION = re.compile(r"`(programs\.vmsilo\.[^`\s\[\]()]+)`")
_HEADING = re.compile(r"^## `([^`]+)`$", re.MULTILINE)


def option_paths() -> list[str]:
    """Every option path, computed from the model the way the options reference lists them."""
    return [row.path for row in options_render._rows(model.Config, OPTION_ROOT)]


def test_paths_from_the_model_are_the_reference_headings() -> None:
    assert _HEADING.findall(REFERENCE.read_text()) == option_paths()


def test_every_option_has_exactly_one_entry() -> None:
    entries = Counter(_ENTRY.findall(MAPPING.read_text()))
    missing = [p for p in option_paths() if entries[p] == 0]
    repeated = sorted(p for p, n in entries.items() if n > 1)
    assert not missing, f"docs/mapping.md does not explain: {', '.join(missing)}"
    assert not repeated, f"docs/mapping.md explains these more than once: {', '.join(repeated)}"


def test_every_option_appears_in_backticks() -> None:
    text = MAPPING.read_text()
    assert [p for p in option_paths() if f"`{p}`" not in text] == []


def test_mapping_names_no_unknown_option() -> None:
    known = set(option_paths())
    unknown = sorted(set(_MENTION.findall(MAPPING.read_text())) - known)
    assert not unknown, f"docs/mapping.md names options the model lacks: {', '.join(unknown)}"
