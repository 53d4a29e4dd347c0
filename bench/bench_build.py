"""`vmsilo build --dry-run` against one bare `nix eval` of the same drvPaths, and the speed of
the progress parser, in one run.

    python bench/bench_build.py [--vms 1000] [--sets 3] [--repeat 5] [--lines 100000]

  nix       `nix eval --json` of the drvPaths `vmsilo build` would build: the four of the
            fixture flake's base system, the two of each program image (one per set), the
            host packages (the floor)
  dry-run   `vmsilo build --dry-run` of the same flake, run in this process (evaluation,
            planning, output), so that Python's start-up is not counted
  process   the same as a fresh `python -m vmsilo_nix` process (start-up and imports included)
  parse     folding a 100k-line internal-json log (the recorded one, repeated) into progress
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from timing import NIX, ROOT, VMSILO, medians

from vmsilo_nix.build.progress import Progress
from vmsilo_nix.cli import app as cli

FIXTURE = ROOT / "tests" / "fixtures" / "build-flake"
LOG = ROOT / "tests" / "fixtures" / "nix-logs" / "partial-failure.log"
DRV_PATHS = (
    "p: { systems = builtins.mapAttrs (_: vms: let c = p.guestSystems.${builtins.head vms}.config; "
    "b = c.system.build; in [ c.boot.kernelPackages.kernel.drvPath b.initialRamdisk.drvPath "
    "b.vmsiloRootImage.drvPath b.toplevel.drvPath ]) p.guestSoftwareSets; "
    "images = builtins.mapAttrs (_: vms: let i = p.programImages.${builtins.head vms}; in "
    "[ i.drvPath i.profile.drvPath ]) p.programImageSets; "
    "packages = builtins.mapAttrs (_: d: d.drvPath) p.artifacts.packages; }"
)


def in_process(argv: list[str], repeat: int) -> float:
    """Median wall time of ``vmsilo ARGV`` called in this process (its output discarded)."""
    times = []
    for _ in range(repeat):
        with open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
            start = time.perf_counter()
            code = cli.main(argv)
            times.append(time.perf_counter() - start)
        assert code == 0, code
    return statistics.median(times)


def parse_seconds(lines: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        progress = Progress()
        start = time.perf_counter()
        for line in lines:
            progress.feed(line)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vms", type=int, default=1000)
    parser.add_argument("--sets", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--lines", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        flake = Path(tmp) / "flake"
        shutil.copytree(FIXTURE, flake)
        vms = {f"vm{i}": f"set{i % args.sets}" for i in range(args.vms)}
        (flake / "vms.json").write_text(json.dumps({"vms": vms}))
        ref = f"path:{flake}"
        pkg = f"{ref}#nixosConfigurations.host.config.programs.vmsilo.package"
        dry = ["build", "--dry-run", "--no-eval-jobs", "--flake", f"{ref}#host"]
        nix_eval = [*NIX, "--extra-experimental-features", "flakes", "eval", "--json", pkg]
        m = medians(
            {"nix": [*nix_eval, "--apply", DRV_PATHS], "process": [*VMSILO, *dry]}, args.repeat
        )
        m["dry-run"] = in_process(["--option", "substituters", "", *dry], args.repeat)
    recorded = LOG.read_text().splitlines()
    lines = (recorded * (args.lines // len(recorded) + 1))[: args.lines]
    parse = parse_seconds(lines, args.repeat)
    print(f"{args.vms} VMs, {args.sets} software sets, medians of {args.repeat} runs")
    print(f"  nix eval of the drvPaths   {m['nix']:.3f}s")
    print(
        f"  vmsilo build --dry-run     {m['dry-run']:.3f}s   ratio {m['dry-run'] / m['nix']:.2f}"
        " (target <= 1.2)"
    )
    print(f"  ... as a fresh process     {m['process']:.3f}s   ratio {m['process'] / m['nix']:.2f}")
    print(f"  progress of {len(lines)} log lines  {parse:.3f}s (target < 0.5s)")


if __name__ == "__main__":
    main()
