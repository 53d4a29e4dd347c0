"""`vmsilo check` against a bare `nix eval --json` of the same file, in one run.

    python bench/bench_check.py [--sizes 1 10 100 1000] [--repeat 7] [--json]

For each size, medians of interleaved runs of:
  nix      `nix eval --json --file config-N.nix`      (the floor: Nix reading the file)
  check    `vmsilo check --file config-N.nix`         (one nix eval + structuring + validation)
  json     `vmsilo check --file config-N.json`        (vmsilo's own work, no Nix at all)
  module   (with VMSILO_NIXPKGS_LIB) the NixOS module system evaluating config.programs.vmsilo
           of the same file, which a rebuild pays anyway
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from configs import write
from timing import NIX, VMSILO, run_benchmark


def commands(tmp: Path, n: int) -> dict[str, list[str]]:
    json_path, nix_path = write(tmp, n)
    return {
        "nix": [*NIX, "eval", "--json", "--file", str(nix_path)],
        "check": [*VMSILO, "check", "--file", str(nix_path)],
        "json": [*VMSILO, "check", "--file", str(json_path)],
    }


if __name__ == "__main__":
    run_benchmark(commands, focus="json", repeat=7)
