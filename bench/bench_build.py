"""`vmsilo build --dry-run` against one bare `nix eval` of the same drvPaths, and the speed of
the progress parser, in one run.

    python bench/bench_build.py [--vms 1000] [--sets 3] [--repeat 5] [--lines 100000]

  nix      `nix eval --json` of the four drvPaths of every VM of the fixture flake (the floor)
  dry-run  `vmsilo build --dry-run --json` of the same flake (evaluation, planning, output)
  parse    folding a 100k-line internal-json log (the recorded one, repeated) into progress
"""

from __future__ import annotations

import argparse
import json
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

FIXTURE = ROOT / "tests" / "fixtures" / "build-flake"
LOG = ROOT / "tests" / "fixtures" / "nix-logs" / "partial-failure.log"
DRV_PATHS = (
    "ss: builtins.mapAttrs (_: s: let c = s.config; b = c.system.build; in "
    "[ c.boot.kernelPackages.kernel.drvPath b.initialRamdisk.drvPath "
    "b.vmsiloRootImage.drvPath b.toplevel.drvPath ]) ss"
)


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
        guest = f"{ref}#nixosConfigurations.host.config.programs.vmsilo.package.guestSystems"
        m = medians(
            {
                "nix": [
                    *NIX,
                    "--extra-experimental-features",
                    "flakes",
                    "eval",
                    "--json",
                    guest,
                    "--apply",
                    DRV_PATHS,
                ],
                "dry-run": [
                    *VMSILO,
                    "build",
                    "--dry-run",
                    "--json",
                    "--no-eval-jobs",
                    "--flake",
                    f"{ref}#host",
                ],
            },
            args.repeat,
        )
    recorded = LOG.read_text().splitlines()
    lines = (recorded * (args.lines // len(recorded) + 1))[: args.lines]
    parse = parse_seconds(lines, args.repeat)
    print(f"{args.vms} VMs, {args.sets} software sets, medians of {args.repeat} runs")
    print(f"  nix eval of the drvPaths   {m['nix']:.3f}s")
    print(
        f"  vmsilo build --dry-run     {m['dry-run']:.3f}s   ratio {m['dry-run'] / m['nix']:.2f}"
        " (target <= 1.2)"
    )
    print(f"  progress of {len(lines)} log lines  {parse:.3f}s (target < 0.5s)")


if __name__ == "__main__":
    main()
