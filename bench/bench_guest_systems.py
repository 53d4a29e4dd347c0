"""Guest systems with real nixpkgs: a host's toplevel evaluation with many software sets.

    eval "$(../shared/tools/real-nixos env)"       # VMSILO_NIX, VMSILO_NIXPKGS
    python bench/bench_guest_systems.py [--repeat 3] [--closures] [--json]

Evaluates `config.system.build.toplevel.drvPath` of a real NixOS host (bench/real-host.nix,
mode sets) with 2 VMs in 2 guestPrograms sets and with 50 VMs in 50 sets, interleaved;
reports median wall time, peak memory, the ratios 50/2 (the target: at most 1.3 for both) and
how many guest systems and program images each host has.

--closures: the example desktop with three sets (firefox; thunderbird and libreoffice;
keepassxc; bench/closures.nix). Nothing can be built offline, so no byte sizes exist;
what the evaluated closures say is how many derivations each disk can hold (the build closure,
an upper bound of the runtime closure): the base once plus each program image's own part,
against one full guest system per set as before.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import ROOT, medians, peak_rss_kib

SIZES = ((2, 2), (50, 50))


def nix_argv(*args: str) -> list[str]:
    return [
        os.environ["VMSILO_NIX"],
        "--extra-experimental-features",
        "nix-command",
        "--option",
        "substituters",
        "",
        *args,
    ]


def host_argv(vms: int, attr: str) -> list[str]:
    """bench/real-host.nix (shared with bench_real_nixos.py), every VM in a set of its own."""
    return nix_argv(
        "eval", "--json", "--argstr", "nixpkgs", os.environ["VMSILO_NIXPKGS"],
        "--argstr", "vms", str(vms), "--argstr", "mode", "sets",
        "--file", str(ROOT / "bench/real-host.nix"), attr,
    )  # fmt: skip


def evaluation(repeat: int) -> dict[str, object]:
    commands = {f"{v} VMs/{s} sets": host_argv(v, "toplevel") for v, s in SIZES}
    counts = {
        f"{v} VMs/{s} sets": json.loads(
            subprocess.run(host_argv(v, "counts"), check=True, capture_output=True).stdout
        )
        for v, s in SIZES
    }
    times = medians(commands, repeat)
    rss = {name: peak_rss_kib(argv) for name, argv in commands.items()}
    small, large = commands
    return {
        "median_s": times,
        "rss_kib": rss,
        "systems": {n: c["systems"] for n, c in counts.items()},
        "images": {n: c["images"] for n, c in counts.items()},
        "time_ratio": times[large] / times[small],
        "rss_ratio": rss[large] / rss[small],
    }


def drv_closure(drvs: list[str]) -> set[str]:
    out = subprocess.run(
        nix_argv("path-info", "--recursive", *drvs), check=True, capture_output=True, text=True
    ).stdout
    return {p for p in out.split() if p.endswith(".drv")}


def closures() -> dict[str, object]:
    argv = nix_argv(
        "eval", "--json", "--argstr", "nixpkgs", os.environ["VMSILO_NIXPKGS"],
        "--file", str(ROOT / "bench/closures.nix"), "result",
    )  # fmt: skip
    r = json.loads(subprocess.run(argv, check=True, capture_output=True).stdout)
    base = drv_closure([r["base"]])
    own = {vm: len(drv_closure([p]) - base) for vm, p in r["profiles"].items()}
    full = {vm: len(drv_closure([p])) for vm, p in r["full"].items()}
    now = len(base) + sum(own.values())
    before = sum(full.values())
    return {
        "base": len(base),
        "programImages": own,
        "fullSystems": full,
        "now": now,
        "before": before,
        "ratio": now / before,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--closures", action="store_true", help="also count the closures")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args()
    if not (os.environ.get("VMSILO_NIX") and os.environ.get("VMSILO_NIXPKGS")):
        sys.exit("set VMSILO_NIX and VMSILO_NIXPKGS (../shared/tools/real-nixos env)")
    result: dict[str, object] = {"evaluation": evaluation(args.repeat)}
    if args.closures:
        result["closures"] = closures()
    if args.json:
        print(json.dumps(result, indent=2))
        return
    e = result["evaluation"]
    assert isinstance(e, dict)
    print(f"{'host':>16} {'median':>9} {'peak RSS':>10} {'systems':>8} {'images':>7}")
    for name, t in e["median_s"].items():
        rss = e["rss_kib"][name] / 1024
        print(f"{name:>16} {t:>8.2f}s {rss:>8.0f}Mi {e['systems'][name]:>8} {e['images'][name]:>7}")
    print(f"50/2: time {e['time_ratio']:.2f}x, peak memory {e['rss_ratio']:.2f}x (target <= 1.3)")
    if args.closures:
        c = result["closures"]
        assert isinstance(c, dict)
        print(f"derivations a disk can hold: base {c['base']} once")
        for vm, n in c["programImages"].items():
            print(f"  {vm}: program image {n}, as a full system before {c['fullSystems'][vm]}")
        print(f"  all disks: {c['now']} now, {c['before']} before ({c['ratio']:.2f}x)")


if __name__ == "__main__":
    main()
