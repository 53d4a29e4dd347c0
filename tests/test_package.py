"""nix/package.nix against the real nixpkgs: it evaluates, and its Python dependencies are the
ones pyproject.toml declares (pyproject.toml owns the list; package.nix restates it for Nix)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from .conftest import ROOT

PACKAGE = ROOT / "tests" / "nix" / "package-deps.nix"


def declared() -> list[str]:
    """pyproject.toml's runtime dependencies, by name."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return sorted(re.split(r"[<>=!~ ;\[]", r, maxsplit=1)[0] for r in project["dependencies"])


def _package(src: Path, store: Path) -> dict[str, Any]:
    nix, nixpkgs = os.environ.get("VMSILO_NIX"), os.environ.get("VMSILO_NIXPKGS")
    if not nix or not nixpkgs:
        pytest.skip("VMSILO_NIX and VMSILO_NIXPKGS are not set (a real nixpkgs and a Nix for it)")
    argv = [nix, "--extra-experimental-features", "nix-command", "eval", "--impure", "--json"]
    argv += ["--store", str(store), "--file", str(PACKAGE)]  # a store of the test's own
    argv += ["--argstr", "nixpkgs", nixpkgs, "--argstr", "src", str(src), "facts"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    got: dict[str, Any] = json.loads(done.stdout)
    return got


def test_nix_package_has_the_declared_dependencies(tmp_path: Path) -> None:
    got = _package(ROOT, tmp_path / "store")
    assert got["drv"].endswith("-vmsilo-nix-0.1.0.drv")
    assert sorted(d for d in got["deps"] if not d.startswith("python3")) == declared()


def test_nix_package_leaves_bytecode_out(tmp_path: Path) -> None:
    """A checkout's __pycache__ is not in the package's source: the package (and every guest
    system holding it) is the same whichever Python last ran in the checkout."""
    ignore = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*_cache", "result*")
    clean, used = tmp_path / "clean", tmp_path / "used"
    for copy in (clean, used):
        shutil.copytree(ROOT, copy, ignore=ignore)
    (used / "vmsilo_nix" / "__pycache__").mkdir()
    (used / "vmsilo_nix" / "__pycache__" / "facts.cpython-311.pyc").write_bytes(b"\x00bytecode")
    store = tmp_path / "store"
    assert _package(used, store)["drv"] == _package(clean, store)["drv"]
