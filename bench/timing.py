"""Timing helpers shared by the benchmarks: medians of alternating runs, peak memory."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
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


def compile_bytecode() -> None:
    """Byte-compile vmsilo_nix, as an installed package is (Nix's Python builds ship .pyc
    files): with PYTHONDONTWRITEBYTECODE set, a checkout would otherwise be compiled from source
    on every run, and the benchmark would time the compiler instead of vmsilo."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(ROOT / "vmsilo_nix")],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def run_benchmark(
    commands_for: Callable[[Path, int], dict[str, list[str]]], focus: str, repeat: int = 5
) -> None:
    """Command line, measurement and report shared by the benchmarks.

    ``commands_for(tmp, n)`` writes the inputs for ``n`` VMs and returns the commands to time,
    ``nix`` (the bare evaluation) among them; the module system is added when available.
    ``focus`` is the command whose ratios and peak memory are reported.
    """
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 100, 1000])
    parser.add_argument("--repeat", type=int, default=repeat)
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args()
    compile_bytecode()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            cmds = commands_for(Path(tmp), n)
            module = module_eval_command(Path(tmp) / f"config-{n}.nix")
            if module:
                cmds["module"] = module
            rows.append(
                {
                    "vms": n,
                    "median_s": medians(cmds, args.repeat),
                    "rss_kib": peak_rss_kib(cmds[focus]),
                }
            )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    names = list(rows[0]["median_s"])
    print(
        f"{'VMs':>5} "
        + " ".join(f"{n:>9}" for n in names)
        + f" {focus + '/nix':>12} {focus + '/module':>14} {'RSS ' + focus:>12}"
    )
    for r in rows:
        m = r["median_s"]
        mod = f"{m[focus] / m['module']:>14.3f}" if "module" in m else f"{'-':>14}"
        print(
            f"{r['vms']:>5} "
            + " ".join(f"{m[n]:>8.3f}s" for n in names)
            + f" {m[focus] / m['nix']:>12.2f} {mod} {r['rss_kib'] / 1024:>10.1f}Mi"
        )
