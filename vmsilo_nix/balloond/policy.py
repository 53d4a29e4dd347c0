"""The balloon policy: how big each VM's balloon should be. Pure; the options are parameters.

It follows ChromeOS's balance-available policy: memory above the critical level is compared
between the host and a guest, and the balloon moves so that both end with the same margin.
A guest's margin is its available memory above ``criticalGuestAvailable`` less a bias that grows
with how full its balloon is, so that a squeezed guest is squeezed less. With several VMs the
host is one reservoir they share: the level is found for all of them at once (the host and
every unclamped guest end on the same margin), so N VMs never each react to the whole host
deficit. Bounds per VM: inflation never takes a guest below its floor nor beyond its size less
the floor, no balloon moves more than ``max_step`` per tick, deflation stops at an empty
balloon, and a guest that does not follow its balloon is not inflated further.

Everything a guest reports is untrusted: sizes are clamped to the VM's configured memory.
Sizes are bytes; positive deltas inflate (memory goes to the host).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import attrs

MIB = 1 << 20
PAGE = 4096
#: Moves smaller than this fraction of a VM's memory (or ``MIN_MOVE``) are not worth a call,
#: and skipping them keeps a balanced system still.
DEAD_BAND_FRACTION = 0.01
MIN_MOVE = 4 * MIB


@attrs.frozen(kw_only=True)
class Params:
    """The options that shape decisions (``vmsilo-balloond.*``), sizes in bytes."""

    critical_host_percent: float
    critical_guest_available: int
    guest_available_bias: int
    max_step: int = 512 * MIB


@attrs.frozen(kw_only=True)
class Host:
    total: int
    available: int


@attrs.frozen(kw_only=True)
class Guest:
    """One running VM as the policy sees it this tick.

    ``available`` and ``balloon_actual`` are as reported (untrusted); ``memory`` is the
    configured size; ``requested`` the balloon size we asked for last; ``following`` is False
    while the guest is held for not following its balloon.
    """

    name: str
    memory: int
    available: int
    balloon_actual: int
    requested: int
    following: bool = True


@attrs.frozen(kw_only=True)
class Decision:
    name: str
    actual: int  # the balloon's size, clamped to the VM
    target: int  # the balloon size to ask for (== requested: no call needed)
    margin: int  # the guest's margin above its floor and bias, before the move
    reason: str

    @property
    def delta(self) -> int:
        return self.target - self.actual


@attrs.frozen
class _Bounds:
    above: float  # the guest's margin
    lo: int  # most deflation (negative)
    hi: int  # most inflation
    top: int  # the largest balloon: the VM less its floor


def _clamp(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


def critical_host(params: Params, host: Host) -> int:
    return int(host.total * params.critical_host_percent / 100)


def _bounds(p: Params, g: Guest) -> tuple[int, int, _Bounds]:
    memory = max(0, g.memory)
    actual = int(_clamp(g.balloon_actual, 0, memory))
    # A guest cannot have more available than the memory outside its balloon.
    available = int(_clamp(g.available, 0, memory - actual))
    floor = p.critical_guest_available
    max_balloon = max(0, memory - floor)
    fullness = min(1.0, actual / max_balloon) if max_balloon else 1.0
    above = available - floor - p.guest_available_bias * fullness
    hi = max(0, min(available - floor, max_balloon - actual, p.max_step))
    if not g.following:
        hi = 0
    lo = -min(actual, p.max_step)
    return actual, available, _Bounds(above, lo, hi, max_balloon)


def _level(host_above: float, bounds: Sequence[_Bounds]) -> float:
    """The common margin L: host_above + sum(clamp(above_i - L, lo_i, hi_i)) == L.

    The left side less L falls strictly with L and is linear between the points where a VM
    reaches a bound, so the root is found exactly: binary search for its segment, then solve.
    """

    def excess(level: float) -> float:
        return host_above + sum(_clamp(b.above - level, b.lo, b.hi) for b in bounds) - level

    points = sorted({b.above - b.lo for b in bounds} | {b.above - b.hi for b in bounds})
    if not points:
        return host_above
    # The first point where excess <= 0; excess is decreasing.
    i = bisect.bisect_left(points, 0.0, key=lambda x: -excess(x))
    if i == 0:
        return points[0] + excess(points[0])  # below every point all VMs sit at hi: slope 1
    left = points[i - 1]
    # Unclamped VMs between this point and the next: those with above - hi < L < above - lo.
    mid = (left + points[i]) / 2 if i < len(points) else left + 1.0
    free = sum(1 for b in bounds if b.above - b.hi < mid < b.above - b.lo)
    return left + excess(left) / (1 + free)


def decide(params: Params, host: Host, guests: Sequence[Guest]) -> tuple[Decision, ...]:
    """Each guest's balloon target, in the order given."""
    host_above = host.available - critical_host(params, host)
    prepared = [_bounds(params, g) for g in guests]
    level = _level(host_above, [b for _, _, b in prepared])
    out = []
    for g, (actual, available, b) in zip(guests, prepared, strict=True):
        delta = _clamp(b.above - level, b.lo, b.hi)
        # A balloon reported beyond the VM less its floor (a lie, or set by hand) comes down.
        desired = max(0, min(actual + int(delta), b.top) // PAGE * PAGE)
        band = max(MIN_MOVE, int(max(0, g.memory) * DEAD_BAND_FRACTION))
        requested = int(_clamp(g.requested, 0, max(0, g.memory)))
        if abs(desired - requested) < band and (g.following or requested <= actual):
            target, reason = requested, "balanced"
        else:
            target, reason = desired, _reason(params, desired - actual, b, available, host_above)
        if target == requested and not g.following:
            reason = "held: the guest does not follow its balloon"
        out.append(
            Decision(name=g.name, actual=actual, target=target, margin=int(b.above), reason=reason)
        )
    return tuple(out)


def _reason(p: Params, delta: int, b: _Bounds, available: int, host_above: float) -> str:
    if delta > 0:
        why = "the host needs memory" if host_above < 0 else "the guest has more to spare"
        if delta >= b.hi - PAGE and b.hi == available - p.critical_guest_available:
            why += "; stopped at the guest's floor"
        elif delta >= b.hi - PAGE and b.hi == p.max_step:
            why += "; one step per tick"
        return f"inflate {delta // MIB} MiB: {why}"
    if delta < 0:
        why = "the guest needs memory" if b.above < 0 else "the host has more to spare"
        if delta <= b.lo + PAGE and -b.lo == p.max_step:
            why += "; one step per tick"
        return f"deflate {-delta // MIB} MiB: {why}"
    if b.hi == 0 and host_above < 0:
        return "held at the guest's floor while the host is short"
    return "balanced"


def poll_interval(slow: float, fast: float, psi_ceiling: float, psi_avg10: float | None) -> float:
    """Seconds to the next tick: ``slow`` when the host is calm, down to ``fast`` as memory
    pressure (PSI some avg10, percent) rises to ``psi_ceiling``. Without PSI: ``slow``."""
    if psi_avg10 is None or psi_ceiling <= 0:
        return slow
    share = _clamp(psi_avg10 / psi_ceiling, 0.0, 1.0)
    return slow - (slow - fast) * share


#: Ticks a guest may stay behind its balloon target without progress before it is held.
STALL_TICKS = 3
#: Seconds a guest that did not follow its balloon is left alone before it is inflated again.
HOLD_SECONDS = 60.0
#: Inflation counts as progress when the balloon grew at least this much since the last tick.
PROGRESS = MIB


@attrs.frozen(kw_only=True)
class Follow:
    """Whether a guest follows its balloon: ticks behind without progress, and the time until
    which it is held (not inflated) for not following."""

    behind: int = 0
    held_until: float = 0.0

    def following(self, now: float) -> bool:
        return now >= self.held_until


def track(prev: Follow, requested: int, actual: int, last_actual: int, now: float) -> Follow:
    """Update ``prev`` with this tick's balloon size. A guest behind its target either refuses
    to inflate (no progress for ``STALL_TICKS`` ticks) or gives memory back on its own
    (deflate-on-OOM: the balloon shrank): both mean it is not pushed further for a while."""
    if actual >= requested - MIN_MOVE:
        return Follow(held_until=prev.held_until)
    if actual < last_actual - MIN_MOVE:
        return Follow(held_until=now + HOLD_SECONDS)
    if actual - last_actual >= PROGRESS:
        return Follow(held_until=prev.held_until)
    if prev.behind + 1 >= STALL_TICKS:
        return Follow(held_until=now + HOLD_SECONDS)
    return Follow(behind=prev.behind + 1, held_until=prev.held_until)
