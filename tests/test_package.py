"""nix/package.nix against the real nixpkgs: it evaluates, and its Python dependencies are the
ones pyproject.toml declares (pyproject.toml owns the list; package.nix restates it for Nix)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest

from .conftest import ROOT

PACKAGE = "p: { drv = p.drvPath; deps = map (d: d.pname or d.name) p.propagatedBuildInputs; }"


def declared() -> list[str]:
    """pyproject.toml's runtime dependencies, by name."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return sorted(re.split(r"[<>=!~ ;\[]", r, maxsplit=1)[0] for r in project["dependencies"])


def test_nix_package_has_the_declared_dependencies(tmp_path: Path) -> None:
    nix, nixpkgs = os.environ.get("VMSILO_NIX"), os.environ.get("VMSILO_NIXPKGS")
    if not nix or not nixpkgs:
        pytest.skip("VMSILO_NIX and VMSILO_NIXPKGS are not set (a real nixpkgs and a Nix for it)")
    expr = (
        f'let pkgs = import {nixpkgs} {{ system = "x86_64-linux"; }}; in '
        f"({PACKAGE}) (pkgs.python3Packages.callPackage {ROOT}/nix/package.nix {{ }})"
    )
    argv = [nix, "--extra-experimental-features", "nix-command", "eval", "--impure", "--json"]
    argv += ["--store", str(tmp_path / "store"), "--expr", expr]  # a store of the test's own
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["drv"].endswith("-vmsilo-nix-0.1.0.drv")
    assert sorted(d for d in got["deps"] if not d.startswith("python3")) == declared()
