"""A simulated host and N guests for vmsilo-balloond: the real daemon, a simulated clock.

The host has ``total`` bytes; its own processes use ``host_used(t)``; every guest occupies its
configured memory less its balloon. A guest's memory holds its demand (anonymous memory, not
reclaimable) and page cache (reclaimable, so counted as available). Kinds of guest:
``follows`` (inflates and deflates at ``rate`` bytes per second, gives memory back on its own
when nearly out: deflate-on-OOM), ``ignores`` (its balloon never moves), ``lies`` (reports
more available memory than it has, and absurd numbers now and then).

Used by the tests (invariants), bench/bench_balloond.py (figures against a naive controller)
and docs/balloond_plot.py (the plot in docs/balloond.md).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Sequence

import attrs

from vmsilo_nix.balloond import policy
from vmsilo_nix.balloond.crosvm_ctl import Reply, Stats
from vmsilo_nix.balloond.daemon import Daemon, Settings, VmSpec
from vmsilo_nix.balloond.policy import MIB, Decision, Host, Params

GIB = 1 << 30
Curve = Callable[[float], float]


@attrs.define
class SimGuest:
    name: str
    memory: int
    demand: Curve  # bytes of anonymous memory the guest wants at time t
    cache: int = 256 * MIB  # page cache it keeps when it can
    kind: str = "follows"  # follows, ignores, lies
    rate: int = 1 * GIB  # balloon bytes per second the guest's driver moves
    actual: int = 0
    target: int = 0
    running: bool = True

    def available(self, t: float) -> int:
        """True available memory: outside the balloon, not used by demand."""
        return max(0, self.memory - self.actual - int(self.demand(t)))

    def step(self, t: float, dt: float) -> None:
        if self.kind == "ignores":
            return
        move = int(self.rate * dt)
        if self.target > self.actual:
            # A guest inflates only from memory it does not use; the driver retries otherwise.
            room = max(0, self.available(t) - 16 * MIB)
            self.actual += min(move, self.target - self.actual, room)
        elif self.target < self.actual:
            self.actual -= min(move, self.actual - self.target)
        if self.available(t) < 32 * MIB and self.actual > 0:
            # deflate-on-OOM: the guest takes pages back from the balloon on its own
            self.actual = max(0, self.actual - 64 * MIB)

    def reported(self, t: float, tick: int) -> Stats:
        available = self.available(t)
        if self.kind == "lies":
            available = 2**63 if tick % 7 == 0 else self.memory * 4
        return Stats(
            available=available,
            total=self.memory - self.actual,
            free=available,
            disk_caches=min(self.cache, available),
            balloon_actual=self.actual,
        )


@attrs.define
class SimHost:
    total: int
    used: Curve  # the host's own processes
    guests: list[SimGuest]
    t: float = 0.0
    tick: int = 0

    def available(self) -> int:
        occupied = sum(g.memory - g.actual for g in self.guests if g.running)
        return self.total - int(self.used(self.t)) - occupied

    def meminfo(self) -> Host:
        return Host(total=self.total, available=max(0, self.available()))

    def psi(self, critical: int) -> float:
        # Stalls begin as available memory nears the critical level.
        short = critical * 2 - self.available()
        return max(0.0, min(100.0, 100.0 * short / max(1, critical * 2)))

    def advance(self, dt: float) -> None:
        steps = max(1, math.ceil(dt / 0.05))
        for _ in range(steps):
            self.t += dt / steps
            for g in self.guests:
                if g.running:
                    g.step(self.t, dt / steps)


@attrs.define
class SimControl:
    """The crosvm stand-in of the simulation: sockets are guest names."""

    host: SimHost

    def _guest(self, socket: str) -> SimGuest | None:
        for g in self.host.guests:
            if g.name == socket and g.running:
                return g
        return None

    def stats(self, socket: str) -> Reply:
        g = self._guest(socket)
        if g is None:
            return Reply("gone", "no socket")
        return Reply("ok", stats=g.reported(self.host.t, self.host.tick))

    def adjust(self, socket: str, size: int) -> Reply:
        g = self._guest(socket)
        if g is None:
            return Reply("gone", "no socket")
        g.target = size // 4096 * 4096
        return Reply("ok")


@attrs.frozen
class Sample:
    t: float
    host_available: int
    critical: int
    interval: float
    guests: dict[str, tuple[int, int, int]]  # name: (balloon actual, true available, target)
    decisions: tuple[Decision, ...]


Controller = Callable[[Params, Host, Sequence[policy.Guest]], tuple[Decision, ...]]


def naive(step: int = 64 * MIB) -> Controller:
    """The comparison: every VM's balloon moves a fixed step per tick, in by the host's sign."""

    def decide(p: Params, host: Host, guests: Sequence[policy.Guest]) -> tuple[Decision, ...]:
        short = host.available < policy.critical_host(p, host)
        comfortable = host.available > 2 * policy.critical_host(p, host) + step
        out = []
        for g in guests:
            actual = max(0, min(g.balloon_actual, g.memory))
            target = actual
            if short and g.available - step >= p.critical_guest_available:
                target = actual + step
            elif comfortable:
                target = max(0, actual - step)
            out.append(Decision(name=g.name, actual=actual, target=target, margin=0, reason=""))
        return tuple(out)

    return decide


def independent(p: Params, host: Host, guests: Sequence[policy.Guest]) -> tuple[Decision, ...]:
    """The policy applied to each VM alone, as if it were the only one: every VM reacts to the
    whole host deficit (what sharing one reservoir prevents)."""
    return tuple(policy.decide(p, host, [g])[0] for g in guests)


def run(
    host: SimHost,
    seconds: float,
    settings: Settings,
    controller: Controller | None = None,
) -> list[Sample]:
    """Run the real daemon (or, with ``controller``, the daemon with another decision
    function) against ``host`` for ``seconds`` of simulated time."""
    control = SimControl(host)
    crit = policy.critical_host(settings.params, host.meminfo())
    daemon = Daemon(
        settings=settings,
        vms=[VmSpec(name=g.name, socket=g.name, memory=g.memory) for g in host.guests],
        control=control,
        read_host=host.meminfo,
        read_psi=lambda: host.psi(crit),
        clock=lambda: host.t,
    )
    if controller is not None:
        daemon.decide = controller
    samples = []
    while host.t < seconds:
        decisions = daemon.tick()
        samples.append(
            Sample(
                t=host.t,
                host_available=host.available(),
                critical=crit,
                interval=daemon.interval,
                guests={
                    g.name: (g.actual, g.available(host.t), g.target)
                    for g in host.guests
                    if g.running
                },
                decisions=decisions,
            )
        )
        host.tick += 1
        host.advance(daemon.interval)
    return samples


def step_curve(base: float, at: float, to: float, until: float = math.inf) -> Curve:
    return lambda t: to if at <= t < until else base


def wave(i: int) -> Curve:
    """Guest ``i``'s demand: 1 to 1.75 GiB, swinging 200 MiB slowly."""
    return lambda t: (1.0 + 0.25 * (i % 4)) * GIB + 0.2 * GIB * math.sin(t / 40 + i)


def standard_host(n: int = 4, spike_at: float = 60.0, spike_until: float = 240.0) -> SimHost:
    """``n`` 4 GiB guests with modest demand on a host with 8 GiB more than their sum; the
    host's own use jumps from 3 GiB by 5 GiB plus 512 MiB per guest between ``spike_at`` and
    ``spike_until``: without ballooning, host memory runs out."""
    guests = [SimGuest(name=f"vm{i}", memory=4 * GIB, demand=wave(i)) for i in range(n)]
    return SimHost(
        total=n * 4 * GIB + 8 * GIB,
        used=step_curve(3 * GIB, spike_at, 8 * GIB + n * GIB / 2, spike_until),
        guests=guests,
    )


def default_settings() -> Settings:
    return Settings(
        params=Params(
            critical_host_percent=5,
            critical_guest_available=256 * MIB,
            guest_available_bias=400 * MIB,
        ),
        poll_interval=2.0,
        min_poll_interval=0.25,
        psi_ceiling=25,
    )


def figures(samples: Sequence[Sample], only: set[str] | None = None) -> dict[str, float]:
    """Time to relieve the host (from its first tick below critical to the first tick back
    above), the deepest shortfall, overshoot (how far the host's margin above critical peaks in
    the 30 s after relief over where it settles in the minute after that: memory taken from
    guests and then given back), ticks a guest (of ``only``, default all) spent below its floor,
    and balloon moves per minute."""
    below = [i for i, s in enumerate(samples) if s.host_available < s.critical]
    start = below[0] if below else 0
    relief = next(
        (i for i in range(start, len(samples)) if samples[i].host_available >= samples[i].critical),
        len(samples) - 1,
    )
    t0 = samples[relief].t
    after = [s.host_available - s.critical for s in samples[relief:] if s.t <= t0 + 30]
    settled = [
        s.host_available - s.critical for s in samples[relief:] if t0 + 30 < s.t <= t0 + 90
    ] or after
    moves = sum(1 for s in samples for d in s.decisions if d.target != d.actual)
    minutes = max(1e-9, (samples[-1].t - samples[0].t) / 60)
    return {
        "relief_s": round(samples[relief].t - samples[start].t, 2),
        "relief_ticks": relief - start,
        "deepest_mib": min(s.host_available - s.critical for s in samples) // MIB,
        "overshoot_mib": max(0, max(after) - int(statistics.median(settled))) // MIB,
        "floor_ticks": sum(
            1
            for s in samples
            for name, (_, av, _) in s.guests.items()
            if av < 256 * MIB and (only is None or name in only)
        ),
        "moves_per_min": round(moves / minutes, 1),
        "ticks": len(samples),
    }
