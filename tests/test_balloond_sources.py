"""The host's /proc files, from fixtures; the PSI trigger and the signal wake-up."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmsilo_nix.balloond import sources
from vmsilo_nix.balloond.policy import Host
from vmsilo_nix.balloond.sources import SourceUnreadable, Waker

from .conftest import ROOT

PROC = ROOT / "tests" / "fixtures" / "proc"


def test_meminfo_fixture() -> None:
    assert sources.read_host(PROC / "meminfo") == Host(
        total=16318480 * 1024, available=9581564 * 1024
    )


def test_meminfo_without_memavailable_is_refused() -> None:
    with pytest.raises(SourceUnreadable, match="meminfo lacks MemAvailable"):
        sources.read_host(PROC / "meminfo-old")


def test_missing_files_are_source_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceUnreadable, match=r"cannot read .*absent"):
        sources.read_host(tmp_path / "absent")
    with pytest.raises(SourceUnreadable, match="cannot read"):
        sources.read_psi(tmp_path / "absent")


def test_psi_fixture() -> None:
    assert sources.read_psi(PROC / "pressure-memory") == 12.5


@pytest.mark.parametrize(
    "text", ["", "full avg10=1.00 avg60=0 avg300=0 total=0\n", "some avg10=x avg60=0"]
)
def test_psi_garbage(text: str) -> None:
    with pytest.raises(SourceUnreadable):
        sources.parse_psi(text)


@given(st.text(max_size=400))
def test_parsers_refuse_cleanly(text: str) -> None:
    for parse in (sources.parse_meminfo, sources.parse_psi):
        with contextlib.suppress(SourceUnreadable):
            parse(text)


def test_available_is_never_above_total() -> None:
    host = sources.parse_meminfo("MemTotal: 100 kB\nMemAvailable: 900 kB\n")
    assert host.available == host.total == 102400


def test_signal_pipe_ends_a_sleep() -> None:
    r, w = os.pipe2(os.O_NONBLOCK)
    waker = Waker(wake_fd=r, psi_path=Path("/nonexistent/pressure"))
    assert waker.arm() == "cannot open /nonexistent/pressure: No such file or directory"
    assert waker.sleep(0.01) == "timeout"
    os.write(w, b"\0")
    assert waker.sleep(30) == "signal"
    os.close(r)
    os.close(w)


@pytest.mark.skipif(
    not os.access(sources.PSI_MEMORY, os.W_OK), reason="this kernel has no writable PSI file"
)
def test_the_kernel_accepts_our_trigger() -> None:
    waker = Waker()
    assert waker.arm() is None
    assert waker.trigger in sources.TRIGGERS
    assert waker.sleep(0.01) in ("timeout", "pressure")
    waker.close()
    assert waker.trigger is None


def test_a_pressure_event_ends_a_sleep_at_once() -> None:
    """The kernel signals a PSI trigger with POLLPRI; out-of-band data on a socket does too."""
    ours, kernel = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    waker = Waker()
    waker._psi_fd = ours.fileno()  # stands for the armed trigger's descriptor
    waker._poll.register(ours.fileno(), select.POLLPRI)
    assert waker.sleep(0.01) == "timeout"
    kernel.send(b"!", socket.MSG_OOB)
    start = time.monotonic()
    assert waker.sleep(30) == "pressure"
    assert time.monotonic() - start < 5
    kernel.close()
    ours.close()
