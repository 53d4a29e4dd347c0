"""`vmsilo plan --json` against a bare `nix eval --json` of the same file, in one run.

    python bench/bench_plan.py [--sizes 1 10 100 1000] [--repeat 5] [--json]

For each size, medians of interleaved runs of:
  nix      `nix eval --json --file config-N.nix`               (the floor)
  plan     `vmsilo plan --json --file config-N.nix`            (one nix eval + all of vmsilo)
  own      `vmsilo plan --json --file config-N.full.json`      (vmsilo's own work, fed the
           module-evaluated config as JSON, every option present)
  module   (with VMSILO_NIXPKGS_LIB) the NixOS module system evaluating config.programs.vmsilo
The target: at 1000 VMs, own/module <= 0.15; peak memory of `own` growing linearly.
vmsilo_nix is byte-compiled first (timing.compile_bytecode), as an installed package is.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from configs import write
from timing import NIX, VMSILO, run_benchmark


def commands(tmp: Path, n: int) -> dict[str, list[str]]:
    json_path, nix_path = write(tmp, n)
    # Every option present, as the module system prints it (a test proves that `vmsilo eval`
    # equals the module system's own output).
    full = tmp / f"config-{n}.full.json"
    eval_argv = [*VMSILO, "eval", "--file", str(json_path)]
    full.write_text(subprocess.run(eval_argv, check=True, capture_output=True, text=True).stdout)
    return {
        "nix": [*NIX, "eval", "--json", "--file", str(nix_path)],
        "plan": [*VMSILO, "plan", "--json", "--file", str(nix_path)],
        "own": [*VMSILO, "plan", "--json", "--file", str(full)],
    }


if __name__ == "__main__":
    run_benchmark(commands, focus="own")
