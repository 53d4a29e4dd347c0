"""vmsilo-balloond: the daemon's own cost per tick, its memory, and the policy against simpler
controllers on the same simulated host, in one run.

    python bench/bench_balloond.py [--vms 50] [--ticks 300] [--json]

  tick     CPU time of one tick with N VMs (median; host files read and parsed, N stats
           replies decided, the state file written), crosvm calls answered in-process: the
           daemon's own work. Target: under 5 ms at 50 VMs.
  spawn    the same tick with every call made through a stand-in crosvm process (a Python
           script, so most of the wall time is its start-up): the daemon's CPU then includes
           starting N programs and reading their output.
  rss      peak RSS of `vmsilo-balloond --once` with N VMs. Target: under 30 MiB.
  sim      the simulation of tests/balloond_sim.py (a host spike with 4 and 8 guests): time
           to relieve the host, deepest shortfall, overshoot, ticks a guest spent below its
           floor and balloon moves per minute, for the policy, the policy applied to each VM
           alone, and a naive fixed-step controller.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from timing import peak_rss_kib

from tests.balloond_guests import Guests, install_crosvm
from tests.balloond_sim import (
    GIB,
    SimControl,
    SimGuest,
    SimHost,
    default_settings,
    figures,
    independent,
    naive,
    run,
    standard_host,
    wave,
)
from vmsilo_nix.balloond import sources
from vmsilo_nix.balloond.crosvm_ctl import CrosvmControl
from vmsilo_nix.balloond.daemon import Daemon, VmSpec
from vmsilo_nix.balloond.policy import Host


def tick_cost(n: int, ticks: int) -> float:
    """Median CPU seconds of one tick of the real daemon with ``n`` VMs."""
    host = SimHost(
        total=n * 4 * GIB + 8 * GIB,
        used=lambda t: 6 * GIB,
        guests=[SimGuest(name=f"vm{i}", memory=4 * GIB, demand=wave(i)) for i in range(n)],
    )
    with tempfile.TemporaryDirectory() as tmp:
        meminfo = Path(tmp) / "meminfo"
        psi = Path(tmp) / "pressure"
        psi.write_text("some avg10=1.00 avg60=0.50 avg300=0.10 total=1000\n")

        def read_host() -> Host:
            # A real file read and parse, as on a host.
            h = host.meminfo()
            meminfo.write_text(
                f"MemTotal: {h.total // 1024} kB\nMemAvailable: {h.available // 1024} kB\n"
            )
            return sources.read_host(meminfo)

        daemon = Daemon(
            settings=default_settings(),
            vms=[VmSpec(name=g.name, socket=g.name, memory=g.memory) for g in host.guests],
            control=SimControl(host),
            read_host=read_host,
            read_psi=lambda: sources.read_psi(psi),
            state_file=Path(tmp) / "state.json",
        )
        times = []
        for _ in range(ticks):
            start = time.process_time()
            daemon.tick()
            times.append(time.process_time() - start)
            host.advance(daemon.interval)
        daemon.close()
    return statistics.median(times)


def spawn_cost(n: int, ticks: int) -> tuple[float, float]:
    """Median (CPU, wall) seconds of one tick with ``n`` VMs behind the stand-in crosvm."""
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["VMSILO_RECORD"] = tmp
        crosvm = install_crosvm(Path(tmp) / "bin")
        guests = Guests(Path(tmp) / "run")
        for i in range(n):
            guests.start(f"vm{i}", memory=4 * GIB, used=1 * GIB)
        meminfo = Path(tmp) / "meminfo"
        meminfo.write_text(f"MemTotal: {64 * GIB // 1024} kB\nMemAvailable: {GIB // 1024} kB\n")
        daemon = Daemon(
            settings=default_settings(),
            vms=[
                VmSpec(name=f"vm{i}", socket=str(guests.path(f"vm{i}")), memory=4 * GIB)
                for i in range(n)
            ],
            control=CrosvmControl(str(crosvm), timeout=30),
            read_host=lambda: sources.read_host(meminfo),
            read_psi=None,
        )
        cpu, wall = [], []
        for _ in range(ticks):
            c, w = time.process_time(), time.perf_counter()
            daemon.tick()
            cpu.append(time.process_time() - c)
            wall.append(time.perf_counter() - w)
        daemon.close()
        guests.close()
    return statistics.median(cpu), statistics.median(wall)


def rss_kib(n: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        argv = [sys.executable, "-m", "vmsilo_nix.balloond", "--once",
                "--state-file", f"{tmp}/state.json"]  # fmt: skip
        for i in range(n):
            argv += ["--vm", f"vm{i}={tmp}/vm{i}.sock", "--vm-memory", f"vm{i}=4g"]
        return peak_rss_kib(argv)


def simulations() -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for n in (4, 8):
        for name, controller in (
            ("policy", None),
            ("each-alone", independent),
            ("naive-64m", naive()),
        ):
            host = standard_host(n=n, spike_at=60.0, spike_until=400.0)
            samples = run(host, 600.0, default_settings(), controller)
            rows.append({"guests": n, "controller": name, **figures(samples)})
    return rows


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--vms", type=int, default=50)
    p.add_argument("--ticks", type=int, default=300)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    result = {
        "vms": args.vms,
        "tick_ms": round(tick_cost(args.vms, args.ticks) * 1000, 3),
        "rss_mib": round(rss_kib(args.vms) / 1024, 1),
        "spawn_tick": [round(x * 1000, 1) for x in spawn_cost(args.vms, 5)],
        "simulation": simulations(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"tick with {args.vms} VMs: {result['tick_ms']} ms CPU (median of {args.ticks})")
    cpu, wall = result["spawn_tick"]
    print(f"tick with {args.vms} stand-in crosvm calls: {cpu} ms CPU, {wall} ms wall")
    print(f"peak RSS of --once with {args.vms} VMs: {result['rss_mib']} MiB")
    keys = ["relief_s", "deepest_mib", "overshoot_mib", "floor_ticks", "moves_per_min"]
    print(f"{'guests':>6} {'controller':<11} " + " ".join(f"{k:>13}" for k in keys))
    for row in result["simulation"]:
        print(
            f"{row['guests']:>6} {row['controller']:<11} " + " ".join(f"{row[k]:>13}" for k in keys)
        )


if __name__ == "__main__":
    main()
