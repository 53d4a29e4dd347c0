"""Draws docs/balloond.png from the simulation in tests/balloond_sim.py.

    pip install matplotlib   # docs tooling only: the daemon and the tests do not need it
    python docs/balloond_plot.py

Four 4 GiB guests on a host whose own memory use jumps by 7 GiB for three minutes: the host's
available memory with vmsilo-balloond and with a naive fixed-step controller, each guest's
balloon, the guests' available memory against their floor, and the poll interval.
"""

from __future__ import annotations

import sys
from pathlib import Path

import matplotlib.pyplot as plt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.balloond_sim import GIB, default_settings, naive, run, standard_host

ROOT = Path(__file__).resolve().parent.parent

SPIKE = (60.0, 240.0)


def main() -> None:
    plt.switch_backend("Agg")  # a file, no display
    ours = run(standard_host(4, *SPIKE), 360.0, default_settings())
    fixed = run(standard_host(4, *SPIKE), 360.0, default_settings(), naive())
    floor = default_settings().params.critical_guest_available
    fig, axes = plt.subplots(4, 1, figsize=(9, 11), sharex=True)
    host, balloons, guests, interval = axes
    t = [s.t for s in ours]
    host.plot(t, [s.host_available / GIB for s in ours], label="vmsilo-balloond")
    host.plot(
        [s.t for s in fixed],
        [s.host_available / GIB for s in fixed],
        label="fixed 64 MiB steps",
        linestyle="--",
    )
    host.axhline(ours[0].critical / GIB, color="red", linewidth=0.8, label="criticalHostPercent")
    host.set_ylabel("host available (GiB)")
    host.legend(loc="upper right", fontsize=8)
    names = list(ours[0].guests)
    for name in names:
        balloons.plot(t, [s.guests[name][0] / GIB for s in ours], label=name)
        guests.plot(t, [s.guests[name][1] / GIB for s in ours], label=name)
    balloons.set_ylabel("balloon (GiB)")
    balloons.legend(loc="upper right", fontsize=8, ncol=4)
    guests.axhline(floor / GIB, color="red", linewidth=0.8, label="criticalGuestAvailable")
    guests.set_ylabel("guest available (GiB)")
    guests.legend(loc="upper right", fontsize=8, ncol=5)
    interval.plot(t, [s.interval for s in ours], drawstyle="steps-post")
    interval.set_ylabel("poll interval (s)")
    interval.set_xlabel("seconds (the host's own use jumps by 7 GiB from 60 s to 240 s)")
    for ax in axes:
        ax.axvspan(*SPIKE, color="grey", alpha=0.1)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = ROOT / "docs" / "balloond.png"
    fig.savefig(out, dpi=80)
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
