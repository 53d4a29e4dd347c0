"""The terminal filter of `vm-run`'s output, against the bare UTF-8 round trip it must do anyway.

    python bench/bench_terminal_filter.py [--json]

For 64 KiB chunks (the protocol's largest) of plain ASCII, UTF-8 text, text with bidi controls
and coloured output with CR LF line ends: the median time of TerminalFilter.feed and of
`data.decode("utf-8", "replace").encode()`, and their ratio, in one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vmsilo_nix.channel.terminal import TerminalFilter

CHUNK = 64 * 1024
SAMPLES = {
    "ascii": b"build step 123: compiling foo.c -> foo.o\n",
    "utf8": "Grüße, 世界! ✓ naïve café עברית\n".encode(),
    "bidi": "Grüße \u202eevil\u202c text ✓\n".encode(),
    "coloured": b"\x1b[32mok\x1b[0m line of output\r\n",
}


def median_seconds(fn: object, number: int = 20, repeat: int = 9) -> float:
    runs = timeit.repeat(fn, number=number, repeat=repeat)  # type: ignore[arg-type]
    return statistics.median(runs) / number


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {}
    for name, line in SAMPLES.items():
        data = (line * (CHUNK // len(line) + 1))[:CHUNK]
        base = median_seconds(lambda data=data: data.decode("utf-8", "replace").encode())
        filt = median_seconds(lambda data=data: TerminalFilter().feed(data))
        results[name] = {"filter_ms": filt * 1e3, "baseline_ms": base * 1e3, "ratio": filt / base}
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for name, r in results.items():
        print(
            f"{name:9s} filter {r['filter_ms']:6.2f} ms  decode+encode {r['baseline_ms']:5.2f} ms"
            f"  ratio {r['ratio']:6.1f}  ({CHUNK / r['filter_ms'] / 1e3:.0f} MB/s)"
        )


if __name__ == "__main__":
    main()
