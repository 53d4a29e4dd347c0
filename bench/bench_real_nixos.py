"""Evaluating a real NixOS host toplevel with vmsilo: VMs sharing guest systems against one
guest system per VM (what peers do), for the same VMs, in one run.

    eval "$(real-nixos env)"   # VMSILO_NIX, VMSILO_NIXPKGS
    python bench/bench_real_nixos.py [--sizes 1 2 10 50] [--per-vm-sizes 2 10] [--repeat 3] [--json]

  shared   the VMs alternate between 2 guest software sets: 2 guest systems, whatever the count
  per-vm   every VM has a guestConfig of its own: one guest system per VM

Medians of --repeat runs (each a fresh `nix eval` of the toplevel's drvPath) for wall time,
and the peak resident memory of one run. "vs 2 VMs" is the shared time against 2 VMs (the 2
guest systems every larger size also has); the goal is at most 1.5x at 50 VMs, and at most 0.1x
the per-VM way. One guest system costs ~0.35 GiB, so per-vm stops at
--per-vm-sizes (50 guest systems would want ~17 GiB); the ratio is then against the largest
per-vm size measured, scaled linearly, and marked as such.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HOST = Path(__file__).resolve().parent / "real-host.nix"
PROBE = (
    "import resource,subprocess,sys,time;t=time.perf_counter();"
    "subprocess.run(sys.argv[1:],check=True,stdout=subprocess.DEVNULL,stderr=subprocess.DEVNULL);"
    "print(time.perf_counter()-t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def one_run(nix: str, nixpkgs: str, vms: int, mode: str) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one evaluation, in a fresh process."""
    argv = [nix, "--option", "substituters", "", "eval", "--raw"]
    argv += ["--argstr", "nixpkgs", nixpkgs, "--argstr", "vms", str(vms)]
    argv += ["--argstr", "mode", mode, "--file", str(HOST), "toplevel"]
    out = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], check=True, capture_output=True, text=True
    )
    seconds, rss = out.stdout.split()
    return float(seconds), int(rss)


def measure(nix: str, nixpkgs: str, vms: int, mode: str, repeat: int) -> dict[str, float]:
    runs = [one_run(nix, nixpkgs, vms, mode) for _ in range(repeat)]
    return {
        "seconds": statistics.median(s for s, _ in runs),
        "peak_mib": max(r for _, r in runs) / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 10, 50])
    parser.add_argument("--per-vm-sizes", type=int, nargs="+", default=[2, 10])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    args = parser.parse_args()
    nix, nixpkgs = os.environ.get("VMSILO_NIX"), os.environ.get("VMSILO_NIXPKGS")
    if not nix or not nixpkgs:
        sys.exit("VMSILO_NIX and VMSILO_NIXPKGS must be set (a Nix >= 2.18 and a nixpkgs tree)")
    shared = {n: measure(nix, nixpkgs, n, "shared", args.repeat) for n in args.sizes}
    per_vm = {n: measure(nix, nixpkgs, n, "per-vm", args.repeat) for n in args.per_vm_sizes}
    top = max(per_vm)
    base = shared[2 if 2 in shared else min(shared)]["seconds"]
    rows = []
    for n in args.sizes:
        if n in per_vm:
            reference, measured = per_vm[n]["seconds"], True
        else:  # scaled from the largest measured per-VM size: a guest system per VM
            reference, measured = per_vm[top]["seconds"] * n / top, False
        rows.append(
            {
                "vms": n,
                "shared_s": shared[n]["seconds"],
                "shared_peak_mib": shared[n]["peak_mib"],
                "vs_2_vms": shared[n]["seconds"] / base,
                "per_vm_s": reference,
                "per_vm_peak_mib": per_vm[n]["peak_mib"] if measured else None,
                "per_vm_measured": measured,
                "shared_vs_per_vm": shared[n]["seconds"] / reference,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print("| VMs | shared s | shared peak MiB | vs 2 VMs | per-VM s | per-VM peak MiB | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        mark = "" if r["per_vm_measured"] else " (scaled)"
        peak = f"{r['per_vm_peak_mib']:.0f}" if r["per_vm_peak_mib"] is not None else "-"
        print(
            f"| {r['vms']} | {r['shared_s']:.1f} | {r['shared_peak_mib']:.0f} | "
            f"{r['vs_2_vms']:.2f}x | {r['per_vm_s']:.1f}{mark} | {peak} | "
            f"{r['shared_vs_per_vm']:.2f}x |"
        )


if __name__ == "__main__":
    main()
