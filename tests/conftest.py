"""Shared fixtures: real Nix (offline), the fetched nixpkgs lib, the examples, the CLI."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from vmsilo_nix.cli import app as cli
from vmsilo_nix.nixeval.nix import NixOptions

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SEED = ROOT.parent / "shared" / "seed" / "options.nix"
# Offline: no binary cache to wait for, no flake registry to download; as vmsilo's flags, and
# as the options of the engine's Nix calls.
_OFFLINE = {"substituters": "", "flake-registry": ""}
OFFLINE = [word for name, value in _OFFLINE.items() for word in ("--option", name, value)]
OFFLINE_NIX = NixOptions(options=_OFFLINE)
NO_CACHE_NIX = NixOptions(options={"substituters": ""})

needs_nix = pytest.mark.skipif(shutil.which("nix") is None, reason="nix is not installed")

# Real NixOS (../shared/tools/real-nixos env): a Nix >= 2.18 and a real nixpkgs tree.
NIX = os.environ.get("VMSILO_NIX", "")
NIXPKGS = os.environ.get("VMSILO_NIXPKGS", "")
needs_real_nixos = pytest.mark.skipif(
    not (NIX and NIXPKGS),
    reason="VMSILO_NIX and VMSILO_NIXPKGS are not set (a Nix >= 2.18 and a nixpkgs tree)",
)


def cargo_program(name: str) -> str | None:
    """A real program scripts/setup builds with cargo: on PATH, else in ~/.cargo/bin."""
    cargo = Path.home() / ".cargo/bin" / name
    return shutil.which(name) or (str(cargo) if cargo.exists() else None)


DRV = re.compile(r"^/nix/store/[0-9a-z]{32}-[^/]+\.drv$")


@pytest.fixture
def nixpkgs_lib() -> Path:
    """The real nixpkgs `lib` directory, from VMSILO_NIXPKGS_LIB (a nix-community/nixpkgs.lib
    snapshot). Tests of the module system skip without it; this machine has no nixpkgs."""
    value = os.environ.get("VMSILO_NIXPKGS_LIB")
    if not value:
        pytest.skip("VMSILO_NIXPKGS_LIB is not set (point it at a nixpkgs.lib checkout's lib/)")
    path = Path(value)
    if (path / "lib" / "default.nix").exists():
        path = path / "lib"
    if not (path / "default.nix").exists():
        pytest.fail(f"VMSILO_NIXPKGS_LIB={value} holds no nixpkgs lib (no default.nix)")
    return path


@pytest.fixture
def seed() -> Path:
    if not SEED.exists():
        pytest.skip(f"the option spec {SEED} is not beside this checkout")
    return SEED


@pytest.fixture
def example_flake(tmp_path: Path) -> str:
    """The example flake copied out of the checkout, as a `path:` ref (no git needed)."""
    dest = tmp_path / "examples"
    shutil.copytree(EXAMPLES, dest)
    return f"path:{dest}"


@attrs.frozen
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Iterator[Any]:
    """Run the `vmsilo` CLI in-process: run("check", "--file", ...) -> Result."""

    def go(*args: str, offline: bool = True) -> Result:
        code = cli.main([*(OFFLINE if offline else []), *args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    yield go


def install_program(bin_dir: Path, name: str, text: str) -> Path:
    """An executable ``name`` in ``bin_dir`` running ``text``: a stand-in for a program."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / name
    path.write_text(text)
    path.chmod(0o755)
    return path


def minimal(**vm: Any) -> dict[str, Any]:
    """A one-VM configuration with `vm`'s options set."""
    return {"user": "alice", "nixosVms": [{"name": "a", **vm}]}


EVAL_JOBS_STANDIN = ROOT / "tests" / "standins" / "nix_eval_jobs.py"


@attrs.frozen
class EvalJobs:
    """The stand-in nix-eval-jobs (tests/standins/nix_eval_jobs.py), first on PATH from
    ``dir / "bin"``; what it prints comes from :meth:`answer`, and $EVAL_JOBS_STDERR and
    $EVAL_JOBS_STATUS."""

    dir: Path

    @property
    def program(self) -> Path:
        return self.dir / "bin" / "nix-eval-jobs"

    def answer(self, lines: Iterable[str]) -> None:
        """What it prints next time, a line each."""
        (self.dir / "lines.jsonl").write_text("".join(f"{line}\n" for line in lines))

    def argv(self) -> Any:
        """The arguments of its last run."""
        return json.loads((self.dir / "argv.json").read_text())


@pytest.fixture
def eval_jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> EvalJobs:
    stand_in = EvalJobs(tmp_path / "nix-eval-jobs")
    # Run by this Python, whatever PATH a test leaves it.
    text = EVAL_JOBS_STANDIN.read_text().split("\n", 1)[1]
    install_program(stand_in.program.parent, "nix-eval-jobs", f"#!{sys.executable}\n{text}")
    stand_in.answer([])
    monkeypatch.setenv("PATH", f"{stand_in.program.parent}:{os.environ.get('PATH', '')}")
    monkeypatch.setenv("EVAL_JOBS_ARGV", str(stand_in.dir / "argv.json"))
    monkeypatch.setenv("EVAL_JOBS_LINES", str(stand_in.dir / "lines.jsonl"))
    return stand_in
