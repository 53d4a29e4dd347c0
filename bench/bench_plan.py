"""`vmsilo plan --json` against a bare `nix eval --json` of the same file, in one run.

    python bench/bench_plan.py [--sizes 1 10 100 1000] [--repeat 5]

For each size, medians of interleaved runs of:
  nix      `nix eval --json --file config-N.nix`               (the floor)
  plan     `vmsilo plan --json --file config-N.nix`            (one nix eval + all of vmsilo)
  own      `vmsilo plan --json --file config-N.full.json`      (vmsilo's own work, fed the
           module-evaluated config as JSON, every option present)
  module   (with VMSILO_NIXPKGS_LIB) the NixOS module system evaluating config.programs.vmsilo
The target: at 1000 VMs, own/module <= 0.25. Also peak memory of `own` per size (it should
grow linearly with the number of VMs).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from configs import write
from timing import NIX, VMSILO, medians, module_eval_command, peak_rss_kib


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 100, 1000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            json_path, nix_path = write(Path(tmp), n)
            # Every option present, exactly as the module system prints it (a test proves
            # `vmsilo eval` equals the module system's output).
            full = Path(tmp) / f"config-{n}.full.json"
            full.write_text(
                subprocess.run(
                    [*VMSILO, "eval", "--file", str(json_path)],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
            )
            cmds = {
                "nix": [*NIX, "eval", "--json", "--file", str(nix_path)],
                "plan": [*VMSILO, "plan", "--json", "--file", str(nix_path)],
                "own": [*VMSILO, "plan", "--json", "--file", str(full)],
            }
            module = module_eval_command(nix_path)
            if module:
                cmds["module"] = module
            med = medians(cmds, args.repeat)
            rows.append({"vms": n, "median_s": med, "rss_own_kib": peak_rss_kib(cmds["own"])})
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(
        f"{'VMs':>5} {'nix eval':>9} {'plan .nix':>10} {'own':>8} {'plan/nix':>9} "
        f"{'own/nix':>8} {'module':>9} {'own/module':>11} {'RSS own':>9}"
    )
    for r in rows:
        m = r["median_s"]
        mod = m.get("module")
        module_cols = f"{mod:>8.3f}s {m['own'] / mod:>11.3f}" if mod else f"{'-':>9} {'-':>11}"
        print(
            f"{r['vms']:>5} {m['nix']:>8.3f}s {m['plan']:>9.3f}s {m['own']:>7.3f}s "
            f"{m['plan'] / m['nix']:>9.2f} {m['own'] / m['nix']:>8.2f} {module_cols} "
            f"{r['rss_own_kib'] / 1024:>7.1f}Mi"
        )


if __name__ == "__main__":
    main()
