"""`vmsilo generate` of 1, 10, 100 and 1000 VMs, and regeneration with nothing changed.

    python bench/bench_generate.py [--sizes ...] [--repeat 5]

Each size: the median wall time of generating the tree afresh from the module-evaluated JSON
(every option present), of regenerating it unchanged, and how many files that regeneration
wrote (by mtime and inode; it must be zero). Target: 1000 VMs under 2 s on 2 cores.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from configs import write
from timing import VMSILO, wall


def snapshot(root: Path) -> dict[Path, tuple[int, int]]:
    return {p: (p.lstat().st_mtime_ns, p.lstat().st_ino) for p in root.rglob("*")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 10, 100, 1000])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"{'VMs':>5} {'generate':>10} {'unchanged':>10} {'files':>7} {'rewritten':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.sizes:
            json_path, _ = write(Path(tmp), n)
            full = Path(tmp) / f"full-{n}.json"
            eval_argv = [*VMSILO, "eval", "--file", str(json_path)]
            full.write_text(
                subprocess.run(eval_argv, check=True, capture_output=True, text=True).stdout
            )
            out = Path(tmp) / f"tree-{n}"
            argv = [*VMSILO, "generate", "--file", str(full), "--out", str(out)]
            fresh = []
            for _ in range(args.repeat):
                shutil.rmtree(out, ignore_errors=True)
                fresh.append(wall(argv))
            before = snapshot(out)
            again = statistics.median(wall(argv) for _ in range(args.repeat))
            after = snapshot(out)
            rewritten = sum(1 for p in after if before.get(p) != after[p])
            files = sum(1 for p in after if not p.is_dir())
            print(
                f"{n:>5} {statistics.median(fresh):>9.3f}s {again:>9.3f}s {files:>7} "
                f"{rewritten:>10}"
            )


if __name__ == "__main__":
    main()
