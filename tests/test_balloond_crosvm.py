"""crosvm's balloon replies: strict parsing of guest-written numbers (with hypothesis), and the
calls themselves against a stand-in crosvm: argv, timeouts, garbage, a booting guest, a VM gone."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmsilo_nix.balloond.crosvm_ctl import BadReply, CrosvmControl, Stats, parse_stats

from .balloond_guests import MIB, Guests, calls, install_crosvm

FIELDS = (
    "swap_in", "swap_out", "major_faults", "minor_faults", "free_memory", "total_memory",
    "available_memory", "disk_caches", "hugetlb_allocations", "hugetlb_failures",
    "shared_memory", "unevictable_memory",
)  # fmt: skip


def reply(actual: Any = 4096, **stats: Any) -> str:
    body = {k: stats.get(k) for k in FIELDS}
    return json.dumps({"BalloonStats": {"stats": body, "balloon_actual": actual}}, indent=2)


def test_a_real_shaped_reply() -> None:
    text = reply(
        actual=1 << 30, available_memory=3 << 30, total_memory=3 << 30, free_memory=1 << 29
    )
    assert parse_stats(text) == Stats(
        available=3 << 30, total=3 << 30, free=1 << 29, disk_caches=None, balloon_actual=1 << 30
    )


def test_every_field_may_be_null() -> None:
    assert parse_stats(reply()).available is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "not JSON"),
        ('"Ok"', "not a BalloonStats response"),
        ('{"Err": 107}', "not a BalloonStats response"),
        ('{"BalloonStats": {"stats": null, "balloon_actual": 0}}', "no stats object"),
        (reply(actual=None), "balloon_actual is not a byte count"),
        (reply(actual=-1), "balloon_actual is not a byte count"),
        (reply(actual=2**64), "balloon_actual is not a byte count"),
        (reply(available_memory=True), "available_memory is not a byte count"),
        (reply(available_memory=1.5), "available_memory is not a byte count"),
        (reply(available_memory="1G"), "available_memory is not a byte count"),
        ("[" * 100_000, "characters long"),
        ("[" * 10_000 + "]" * 10_000, "not"),
    ],
)
def test_garbage_is_refused(text: str, message: str) -> None:
    with pytest.raises(BadReply, match=message):
        parse_stats(text)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@given(st.text(max_size=300) | json_values.map(json.dumps))
def test_arbitrary_replies_parse_or_are_refused(text: str) -> None:
    with contextlib.suppress(BadReply):
        parse_stats(text)


@given(
    st.dictionaries(st.sampled_from(FIELDS), json_values, max_size=12),
    json_values,
)
def test_hostile_stats_objects(stats: dict[str, Any], actual: Any) -> None:
    text = json.dumps({"BalloonStats": {"stats": stats, "balloon_actual": actual}})
    try:
        got = parse_stats(text)
    except BadReply:
        return
    for value in (got.available, got.total, got.free, got.disk_caches, got.balloon_actual):
        assert value is None or (type(value) is int and 0 <= value < 2**64)


@pytest.fixture
def vms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Guests, Path, str]]:
    record = tmp_path / "record"
    record.mkdir()
    monkeypatch.setenv("VMSILO_RECORD", str(record))
    crosvm = install_crosvm(tmp_path / "bin")
    guests = Guests(tmp_path / "run-14")
    yield guests, record, str(crosvm)
    guests.close()


def test_stats_and_adjust_argv(vms: tuple[Guests, Path, str]) -> None:
    guests, record, crosvm = vms
    guests.start("work", memory=1024 * MIB, used=300 * MIB)
    control = CrosvmControl(crosvm, timeout=10)
    sock = str(guests.path("work"))
    r = control.stats(sock)
    assert r.status == "ok" and r.stats is not None
    assert (r.stats.available, r.stats.balloon_actual) == (724 * MIB, 0)
    assert control.adjust(sock, 128 * MIB).status == "ok"
    assert calls(record) == [["balloon_stats", sock], ["balloon", str(128 * MIB), sock]]
    assert guests.read("work")["target"] == 128 * MIB


@pytest.mark.parametrize(
    ("behave", "status", "detail"),
    [
        ("enotconn", "not-ready", "balloon driver is not up"),
        ("garbage", "failed", "not JSON"),
        ("hang", "failed", "did not answer within 0.5s"),
    ],
)
def test_faults(vms: tuple[Guests, Path, str], behave: str, status: str, detail: str) -> None:
    guests, _, crosvm = vms
    guests.start("a", memory=1024 * MIB, used=0, behave=behave)
    start = time.monotonic()
    r = CrosvmControl(crosvm, timeout=0.5).stats(str(guests.path("a")))
    assert time.monotonic() - start < 5
    assert r.status == status and detail in r.detail


def test_a_vm_that_vanishes_mid_call(vms: tuple[Guests, Path, str]) -> None:
    guests, record, crosvm = vms
    guests.start("a", memory=1024 * MIB, used=0, behave="vanish")
    guests.sockets.pop("a").close()  # the socket file goes with the VM, during the call
    control = CrosvmControl(crosvm, timeout=10)
    r = control.stats(str(guests.path("a")))
    assert r.status == "failed" and "Connection reset by peer" in r.detail
    assert control.stats(str(guests.path("a"))).status == "gone"
    assert len(calls(record)) == 1


def test_a_vm_that_is_not_running(vms: tuple[Guests, Path, str], tmp_path: Path) -> None:
    _, record, crosvm = vms
    r = CrosvmControl(crosvm).stats(str(tmp_path / "absent.sock"))
    assert r.status == "gone"
    plain = tmp_path / "plain-file"
    plain.write_text("")
    assert CrosvmControl(crosvm).adjust(str(plain), 0).status == "gone"
    assert calls(record) == []  # crosvm is not even started


def test_crosvm_missing(vms: tuple[Guests, Path, str], tmp_path: Path) -> None:
    guests, _, _ = vms
    guests.start("a", memory=1024 * MIB, used=0)
    r = CrosvmControl(str(tmp_path / "no-crosvm")).stats(str(guests.path("a")))
    assert r.status == "failed" and "was not found" in r.detail
