"""Timing helpers shared by the benchmarks: medians of alternating runs, peak memory."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULE_EVAL = ROOT / "tests" / "nix" / "module-eval.nix"
NIX = ["nix", "--extra-experimental-features", "nix-command", "--option", "substituters", ""]
VMSILO = [sys.executable, "-m", "vmsilo_nix", "--option", "substituters", ""]


def wall(argv: Sequence[str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def peak_rss_kib(argv: Sequence[str]) -> int:
    """Peak RSS of one run, measured in a fresh process so that earlier runs do not mask it."""
    probe = (
        "import resource,subprocess,sys;"
        "subprocess.run(sys.argv[1:],check=True,stdout=subprocess.DEVNULL);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, *argv], check=True, capture_output=True, text=True
    )
    return int(out.stdout)


def medians(commands: Mapping[str, Sequence[str]], repeat: int) -> dict[str, float]:
    """Median wall time of each command, runs interleaved so that noise hits all alike."""
    times: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(repeat):
        for name, argv in commands.items():
            times[name].append(wall(argv))
    return {k: statistics.median(v) for k, v in times.items()}


def module_eval_command(nix_file: Path) -> list[str] | None:
    """The real NixOS module system evaluating config.programs.vmsilo of ``nix_file`` (with the
    generated options module), when VMSILO_NIXPKGS_LIB points at a nixpkgs lib."""
    if not os.environ.get("VMSILO_NIXPKGS_LIB"):
        return None
    os.environ["OPTIONS_MODULE"] = str(ROOT / "nix" / "options.nix")
    os.environ["CONFIG_FILE"] = str(nix_file)
    return [*NIX, "eval", "--json", "--file", str(MODULE_EVAL)]
