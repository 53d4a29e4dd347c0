"""`vmsilo check` against a bare `nix eval --json` of the same file, in one run.

    python bench/bench_check.py [--sizes 1 10 100 1000] [--repeat 7]

For each size, medians of interleaved runs of:
  nix      `nix eval --json --file config-N.nix`      (the floor: Nix reading the file)
  check    `vmsilo check --file config-N.nix`         (one nix eval + structuring + validation)
  json     `vmsilo check --file config-N.json`        (vmsilo's own work, no Nix at all)
  module   (with VMSILO_NIXPKGS_LIB) the NixOS module system evaluating config.programs.vmsilo
           of the same file, which a rebuild pays anyway
and the ratios against `nix` and `module`, and peak memory of `check`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from configs import write
from timing import NIX, VMSILO, medians, module_eval_command, peak_rss_kib


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
            module = module_eval_command(nix_path)
            if module:
                cmds["module"] = module
            med = medians(cmds, args.repeat)
            rows.append({"vms": n, "median_s": med, "rss_check_kib": peak_rss_kib(cmds["check"])})
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(
        f"{'VMs':>5} {'nix eval':>9} {'check .nix':>11} {'check .json':>12} {'check/nix':>10} "
        f"{'json/nix':>9} {'module':>9} {'json/module':>12} {'RSS check':>10}"
    )
    for r in rows:
        m = r["median_s"]
        mod = m.get("module")
        module_cols = f"{mod:>8.3f}s {m['json'] / mod:>12.3f}" if mod else f"{'-':>9} {'-':>12}"
        print(
            f"{r['vms']:>5} {m['nix']:>8.3f}s {m['check']:>10.3f}s {m['json']:>11.3f}s "
            f"{m['check'] / m['nix']:>10.2f} {m['json'] / m['nix']:>9.2f} {module_cols} "
            f"{r['rss_check_kib'] / 1024:>8.1f}Mi"
        )


if __name__ == "__main__":
    main()
