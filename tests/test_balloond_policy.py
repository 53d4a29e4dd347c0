"""vmsilo-balloond's decisions, from tables: ChromeOS's balance-available cases, the bounds,
several VMs sharing one host deficit, and properties over arbitrary (hostile) guest numbers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmsilo_nix.balloond.policy import (
    HOLD_SECONDS,
    MIB,
    PAGE,
    Follow,
    Guest,
    Host,
    Params,
    decide,
    poll_interval,
    track,
)

GIB = 1 << 30
P = Params(
    critical_host_percent=5,
    critical_guest_available=256 * MIB,
    guest_available_bias=400 * MIB,
    max_step=8 * GIB,
)
HOST_TOTAL = 16 * GIB
CRIT_HOST = HOST_TOTAL * 5 // 100


def host(above: int) -> Host:
    return Host(total=HOST_TOTAL, available=CRIT_HOST + above)


def guest(available: int, actual: int = 0, memory: int = 4 * GIB, **kw: object) -> Guest:
    return Guest(
        name=str(kw.pop("name", "a")),
        memory=memory,
        available=available,
        balloon_actual=actual,
        requested=int(kw.pop("requested", actual)),  # type: ignore[call-overload]
        following=bool(kw.pop("following", True)),
    )


def chromeos(host_above: int, available: int, actual: int, memory: int) -> float:
    """The reference's ChromeOS formula with vmsilo's fixed floor and bias scale, unclamped."""
    crit = P.critical_guest_available
    full = actual / (memory - crit)
    guest_above = available - crit - P.guest_available_bias * full
    return (guest_above - host_above) / 2


@pytest.mark.parametrize(
    ("host_above", "available", "actual"),
    [
        (1 * GIB, 3 * GIB, 0),  # a guest with more to spare than the host: inflate
        (-512 * MIB, 2 * GIB, 0),  # the host below critical: inflate more
        (3 * GIB, 512 * MIB, 2 * GIB),  # the host has plenty, the guest little: deflate
        (2 * GIB, 1 * GIB, 2 * GIB),  # a fuller balloon weighs the bias more
        (0, 1 * GIB, 512 * MIB),
    ],
)
def test_one_vm_moves_half_the_difference_like_chromeos(
    host_above: int, available: int, actual: int
) -> None:
    (d,) = decide(P, host(host_above), [guest(available, actual)])
    expected = chromeos(host_above, available, actual, 4 * GIB)
    assert abs(d.delta - expected) <= PAGE
    assert d.target % PAGE == 0


def test_both_end_on_the_same_margin() -> None:
    (d,) = decide(P, host(1 * GIB), [guest(3 * GIB)])
    host_after = 1 * GIB + d.delta
    guest_after = 3 * GIB - d.delta - 256 * MIB - 400 * MIB * d.target / (4 * GIB - 256 * MIB)
    # fullness changes with the move, so only roughly equal (the next tick corrects)
    assert abs(host_after - guest_after) < 300 * MIB
    assert d.reason == f"inflate {d.delta // MIB} MiB: the guest has more to spare"


def test_inflation_never_takes_a_guest_below_its_floor() -> None:
    (d,) = decide(P, host(-8 * GIB), [guest(1 * GIB)])
    assert d.delta == 1 * GIB - 256 * MIB
    assert d.reason.endswith("stopped at the guest's floor")
    (d,) = decide(P, host(-8 * GIB), [guest(200 * MIB)])  # already below: no inflation
    assert d.delta <= 0


def test_the_balloon_never_exceeds_the_vm_less_its_floor() -> None:
    (d,) = decide(P, host(-8 * GIB), [guest(4 * GIB, actual=0)])
    assert d.target <= 4 * GIB - 256 * MIB


def test_one_step_per_tick() -> None:
    p = Params(
        critical_host_percent=5,
        critical_guest_available=256 * MIB,
        guest_available_bias=400 * MIB,
        max_step=128 * MIB,
    )
    (d,) = decide(p, host(-4 * GIB), [guest(3 * GIB)])
    assert d.delta == 128 * MIB and d.reason.endswith("one step per tick")
    (d,) = decide(p, host(8 * GIB), [guest(300 * MIB, actual=2 * GIB)])
    assert d.delta == -128 * MIB


def test_deflation_stops_at_an_empty_balloon() -> None:
    (d,) = decide(P, host(8 * GIB), [guest(300 * MIB, actual=100 * MIB)])
    assert d.target == 0


def test_dead_band_keeps_a_balanced_system_still() -> None:
    # host and guest already on the same margin: nothing to do, no call
    (d,) = decide(P, host(1 * GIB), [guest(1 * GIB + 256 * MIB)])
    assert (d.target, d.reason) == (0, "balanced")
    (d,) = decide(P, host(1 * GIB + 10 * MIB), [guest(1 * GIB + 256 * MIB)])
    assert d.target == 0  # 5 MiB move < 1% of 4 GiB


def test_a_guest_that_does_not_follow_is_not_inflated() -> None:
    g = guest(3 * GIB, actual=100 * MIB, requested=1 * GIB, following=False)
    (d,) = decide(P, host(-2 * GIB), [g])
    assert d.target == 100 * MIB  # the outstanding inflation is withdrawn
    assert d.delta == 0
    # ...but it still gets memory back when it needs it
    g = guest(100 * MIB, actual=1 * GIB, following=False)
    (d,) = decide(P, host(4 * GIB), [g])
    assert d.delta < 0


def test_guest_numbers_are_clamped_to_the_vm() -> None:
    liar = guest(2**63, actual=2**63, requested=0)
    (d,) = decide(P, host(-8 * GIB), [liar])
    assert d.actual == 4 * GIB
    assert d.target == 4 * GIB - 256 * MIB  # a balloon past the floor comes down to it
    # claims 100 GiB available in a 4 GiB VM with 1 GiB ballooned: at most 3 GiB counts
    (d,) = decide(P, host(-8 * GIB), [guest(100 * GIB, actual=1 * GIB)])
    assert d.target <= 4 * GIB - 256 * MIB
    assert d.delta <= 3 * GIB - 256 * MIB


def test_several_vms_share_one_host_deficit() -> None:
    # 1 GiB short; four guests with 3 GiB each to spare. Each reacting to the whole deficit
    # (as one-VM ChromeOS would) would move 4 x ~1.9 GiB.
    guests = [guest(3 * GIB, name=f"v{i}") for i in range(4)]
    ds = decide(P, host(-1 * GIB), guests)
    total = sum(d.delta for d in ds)
    host_after = -1 * GIB + total
    guest_after = 3 * GIB - 256 * MIB - ds[0].delta
    assert abs(host_after - guest_after) < 16 * MIB  # one common margin
    assert total < 4 * GIB
    assert len({d.delta for d in ds}) == 1  # equal guests, equal shares


def test_the_richer_guest_gives_more_and_a_starved_one_gets_memory() -> None:
    rich, poor = guest(3 * GIB, name="rich"), guest(100 * MIB, actual=2 * GIB, name="poor")
    r, p = decide(P, host(0), [rich, poor])
    assert r.delta > 0 and p.delta < 0
    assert p.reason.startswith("deflate") and "the guest needs memory" in p.reason


def test_no_guests() -> None:
    assert decide(P, host(-1 * GIB), []) == ()


@pytest.mark.parametrize(
    ("psi", "seconds"),
    [(None, 2.0), (0.0, 2.0), (12.5, 1.125), (25.0, 0.25), (80.0, 0.25), (-3.0, 2.0)],
)
def test_poll_interval_follows_pressure(psi: float | None, seconds: float) -> None:
    assert poll_interval(2.0, 0.25, 25.0, psi) == pytest.approx(seconds)


def test_track_holds_a_guest_that_makes_no_progress() -> None:
    f = Follow()
    for tick in range(2):
        f = track(f, requested=1 * GIB, actual=100 * MIB, last_actual=100 * MIB, now=tick)
        assert f.following(tick)
    f = track(f, requested=1 * GIB, actual=100 * MIB, last_actual=100 * MIB, now=2)
    assert not f.following(2) and f.following(2 + HOLD_SECONDS)


def test_track_progress_and_arrival_are_following() -> None:
    f = Follow(behind=2)
    f = track(f, requested=1 * GIB, actual=300 * MIB, last_actual=200 * MIB, now=0)
    assert f == Follow()
    assert track(Follow(behind=2), 1 * GIB, 1 * GIB, 0, now=0) == Follow()


def test_track_deflate_on_oom_holds_at_once() -> None:
    f = track(Follow(), requested=1 * GIB, actual=512 * MIB, last_actual=1 * GIB, now=5)
    assert not f.following(5)


sizes = st.integers(min_value=-(2**64), max_value=2**65)


@given(
    host_total=st.integers(min_value=1, max_value=2**50),
    host_available=sizes,
    guests=st.lists(
        st.tuples(st.integers(min_value=0, max_value=2**40), sizes, sizes, sizes, st.booleans()),
        max_size=8,
    ),
)
def test_bounds_hold_for_any_numbers(
    host_total: int,
    host_available: int,
    guests: list[tuple[int, int, int, int, bool]],
) -> None:
    gs = [
        Guest(
            name=str(i),
            memory=m,
            available=a,
            balloon_actual=b,
            requested=r,
            following=f,
        )
        for i, (m, a, b, r, f) in enumerate(guests)
    ]
    ds = decide(P, Host(total=host_total, available=host_available), gs)
    assert [d.name for d in ds] == [g.name for g in gs]
    for g, d in zip(gs, ds, strict=True):
        assert 0 <= d.actual <= g.memory
        assert 0 <= d.target <= max(0, g.memory)
        if d.target > d.actual and d.target != min(max(g.requested, 0), g.memory):
            available = min(max(g.available, 0), g.memory - d.actual)
            assert d.target - d.actual <= available - P.critical_guest_available
            assert d.target <= g.memory - P.critical_guest_available
            assert g.following
            assert d.target - d.actual <= P.max_step
