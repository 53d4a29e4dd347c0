"""`vmsilo check` against a bare `nix eval --json` of the same file, in one run.

    python bench/bench_check.py [--sizes 1 10 100 1000] [--repeat 7]

For each size it times, alternating so that machine noise hits all alike:
  nix      `nix eval --json --file config-N.nix`      (the floor: Nix reading the file)
  check    `vmsilo check --file config-N.nix`         (one nix eval + structuring + validation)
  json     `vmsilo check --file config-N.json`        (vmsilo's own work, no Nix at all)
and, when VMSILO_NIXPKGS_LIB points at a nixpkgs lib,
  module   the real NixOS module system evaluating config.programs.vmsilo of the same file
           (with vmsilo's generated options module), which is what a rebuild pays anyway;
and prints medians and the ratios against `nix`. Also prints peak memory (max RSS).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from configs import write

ROOT = Path(__file__).resolve().parent.parent
MODULE_EVAL = ROOT / "tests" / "nix" / "module-eval.nix"
NIX = ["nix", "--extra-experimental-features", "nix-command", "--option", "substituters", ""]
VMSILO = [sys.executable, "-m", "vmsilo_nix", "--option", "substituters", ""]


def timed(argv: list[str]) -> tuple[float, int]:
    """Wall seconds and the child's peak RSS in KiB."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    return elapsed, max(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, before)


def rss_of(argv: list[str]) -> int:
    """Peak RSS (KiB) of one run, measured in a fresh process so earlier runs do not mask it."""
    probe = (
        "import resource,subprocess,sys;"
        "subprocess.run(sys.argv[1:],check=True,stdout=subprocess.DEVNULL);"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, *argv], check=True, capture_output=True, text=True
    )
    return int(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 100, 1000])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            json_path, nix_path = write(Path(tmp), n)
            cmds = {
                "nix": [*NIX, "eval", "--json", "--file", str(nix_path)],
                "check": [*VMSILO, "check", "--file", str(nix_path)],
                "json": [*VMSILO, "check", "--file", str(json_path)],
            }
            if os.environ.get("VMSILO_NIXPKGS_LIB"):
                os.environ["OPTIONS_MODULE"] = str(ROOT / "nix" / "options.nix")
                os.environ["CONFIG_FILE"] = str(nix_path)
                cmds["module"] = [*NIX, "eval", "--json", "--file", str(MODULE_EVAL)]
            times: dict[str, list[float]] = {k: [] for k in cmds}
            for _ in range(args.repeat):
                for name, argv in cmds.items():
                    times[name].append(timed(argv)[0])
            med = {k: statistics.median(v) for k, v in times.items()}
            rss = {k: rss_of(argv) for k, argv in cmds.items()}
            rows.append(
                {
                    "vms": n,
                    "median_s": med,
                    "max_rss_kib": rss,
                    "check_over_nix": med["check"] / med["nix"],
                    "json_over_nix": med["json"] / med["nix"],
                }
            )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(
        f"{'VMs':>5} {'nix eval':>9} {'check .nix':>11} {'check .json':>12} "
        f"{'check/nix':>10} {'json/nix':>9} {'module':>9} {'json/module':>12} "
        f"{'RSS check (MiB)':>16}"
    )
    for r in rows:
        m = r["median_s"]
        module = m.get("module")
        mod = f"{module:>8.3f}s {m['json'] / module:>12.2f}" if module else f"{'-':>9} {'-':>12}"
        print(
            f"{r['vms']:>5} {m['nix']:>8.3f}s {m['check']:>10.3f}s {m['json']:>11.3f}s "
            f"{r['check_over_nix']:>10.2f} {r['json_over_nix']:>9.2f} {mod} "
            f"{r['max_rss_kib']['check'] / 1024:>16.1f}"
        )


if __name__ == "__main__":
    main()
