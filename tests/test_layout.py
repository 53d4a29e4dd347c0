"""The rooms of vmsilo_nix import one way: each stage only from the stages below it.

This is the architecture of docs/development.md as a test: moving an import against the flow
(a rule importing a planner, the Nix layer importing the model) fails here.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "vmsilo_nix"

# room -> the rooms it may import (besides itself). The ground floor imports nothing of ours.
ALLOWED: dict[str, set[str]] = {
    "facts": set(),
    "errors": set(),
    "sd_notify": set(),
    "assignments": set(),
    "process": {"errors"},
    "nixeval": {"process", "errors", "facts"},
    "config": {"nixeval", "errors", "facts", "assignments"},
    "plan": {"config", "errors", "facts", "assignments"},
    "pipeline": {"plan", "config", "nixeval", "errors"},
    "render": {"plan", "config", "errors", "facts", "assignments"},
    "channel": {"errors", "facts", "assignments"},
    "guest": {
        "channel",
        "plan",
        "config",
        "process",
        "errors",
        "facts",
        "sd_notify",
        "assignments",
    },
    "wayland_context": {"errors", "facts", "sd_notify"},
    "files": set(),
    "balloond": {"files", "config", "process", "errors", "facts", "sd_notify", "assignments"},
    "tray": {"channel", "process", "errors", "facts", "sd_notify", "assignments"},
    "build": {"pipeline", "plan", "config", "nixeval", "process", "errors", "facts", "assignments"},
    "cli": set(),  # the top floor: checked only for not being imported
}
TOP = {"cli", "__main__", "__init__"}


def room_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0].removesuffix(".py")


def imported_rooms(path: Path) -> set[str]:
    rooms: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "vmsilo_nix" and len(parts) > 1:
                rooms.add(parts[1])
    return rooms


SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if room_of(p) not in TOP)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_flow_one_way(path: Path) -> None:
    room = room_of(path)
    assert room in ALLOWED, f"{room} is a new room: add it to ALLOWED and docs/development.md"
    wrong = imported_rooms(path) - ALLOWED[room] - {room}
    assert not wrong, f"{path.relative_to(PACKAGE)} imports {sorted(wrong)} against the flow"


def test_nothing_but_the_top_imports_the_cli() -> None:
    for path in SOURCES:
        assert "cli" not in imported_rooms(path), path


def test_the_test_sees_an_import_against_the_flow(tmp_path: Path) -> None:
    bad = tmp_path / "rule.py"
    bad.write_text("from vmsilo_nix.plan.kernel import command_line_length\n")
    assert imported_rooms(bad) - ALLOWED["config"] == {"plan"}


def test_the_library_api_is_importable_lazily() -> None:
    """Every public name is where __init__ says, is the object of its room (the planner, not
    its subpackage, for `plan`), and `import vmsilo_nix` alone does not load the engine."""
    import vmsilo_nix  # noqa: PLC0415

    for name in vmsilo_nix.__all__:
        if name == "__version__":
            continue
        home = importlib.import_module(vmsilo_nix._HOME[name])
        assert getattr(vmsilo_nix, name) is getattr(home, name), name
    assert callable(vmsilo_nix.plan)
    probe = (
        "import sys, vmsilo_nix; print(sorted(m for m in ('attrs', 'cattrs') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"
