"""Stopping a vmsilo command by a signal stops the programs it started; sources that would
hang (a FIFO, a device) are refused. Real processes throughout: vmsilo, nix, the signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from vmsilo_nix import process

from .conftest import OFFLINE, ROOT, needs_nix
from .procs import alive, gone


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (nix runs in its own session, but is still ours)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def vmsilo(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "vmsilo_nix", *OFFLINE, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def hanging_config(tmp: Path) -> Path:
    """A configuration whose evaluation waits on a FIFO nobody writes: nix blocks in it."""
    fifo = tmp / "never-written"
    os.mkfifo(fifo)
    config = tmp / "hangs.nix"
    config.write_text(f'{{ user = builtins.readFile "{fifo}"; nixosVms = [ ]; }}\n')
    return config


def reaped(pid: int) -> bool:
    """Whether ``pid`` is gone; one that is not is killed, so that a failure leaves no orphan."""
    if gone(pid):
        return True
    os.kill(pid, signal.SIGKILL)
    return False


def started_child(parent: int, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while not (kids := children(parent)):
        assert alive(parent), "it exited before starting a child"
        assert time.monotonic() < deadline, "no child started"
        time.sleep(0.05)
    return kids[0]


@needs_nix
@pytest.mark.parametrize(
    ("sig", "status", "said"),
    [
        (signal.SIGTERM, 143, "stopped by SIGTERM"),
        (signal.SIGHUP, 129, "stopped by SIGHUP"),
        (signal.SIGINT, 130, "interrupted"),
    ],
)
def test_a_signal_stops_nix_and_sets_the_exit_status(
    tmp_path: Path, sig: signal.Signals, status: int, said: str
) -> None:
    proc = vmsilo("check", "--file", str(hanging_config(tmp_path)))
    nix = started_child(proc.pid)
    time.sleep(0.3)  # nix is reading the FIFO now
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == status, err
    assert said in err
    assert "Traceback" not in err
    assert reaped(nix), "nix outlived vmsilo"


@needs_nix
def test_timeout_leaves_no_nix_behind(tmp_path: Path) -> None:
    """What a user saw: `timeout 2 vmsilo check` left `nix eval` running as an orphan."""
    proc = subprocess.Popen(
        [
            "timeout",
            "2",
            sys.executable,
            "-m",
            "vmsilo_nix",
            *OFFLINE,
            "check",
            "--file",
            str(hanging_config(tmp_path)),
        ],
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    nix = started_child(started_child(proc.pid))  # timeout -> python -> nix
    assert proc.wait(timeout=30) == 124  # timeout's own status for "timed out"
    assert reaped(nix), "nix outlived vmsilo"


@pytest.mark.parametrize("suffix", [".nix", ".json"])
def test_a_fifo_source_is_refused_at_once(tmp_path: Path, suffix: str) -> None:
    fifo = tmp_path / f"config{suffix}"
    os.mkfifo(fifo)
    proc = vmsilo("check", "--file", str(fifo))
    _, err = proc.communicate(timeout=30)  # before the fix: forever
    assert proc.returncode == 3
    assert f"{fifo}: is a FIFO, not a regular file" in err


def test_a_device_or_directory_source_is_refused(tmp_path: Path) -> None:
    device = tmp_path / "zero.json"
    device.symlink_to("/dev/zero")
    folder = tmp_path / "dir.nix"
    folder.mkdir()
    for path, kind in ((device, "a character device"), (folder, "a directory")):
        proc = vmsilo("check", "--file", str(path))
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 3
        assert f"{path}: is {kind}, not a regular file" in err


def test_artifacts_fifo_is_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "artifacts.json"
    os.mkfifo(fifo)
    config = tmp_path / "c.json"
    config.write_text('{"user": "alice", "nixosVms": []}')
    proc = vmsilo("plan", "--json", "--file", str(config), "--artifacts", str(fifo))
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 3
    assert "is a FIFO, not a regular file" in err


# --- the mechanism, in this process ----------------------------------------------------------

_TWO_LEVELS = "echo $$; sleep 1000 & echo $!; wait"


def test_sigterm_unwinds_and_stops_the_group() -> None:
    with (
        pytest.raises(process.Terminated) as caught,
        process.signals_unwind(),
        process.spawn_lines(["sh", "-c", _TWO_LEVELS]) as lines,
    ):
        it = iter(lines)
        shell, sleeper = int(next(it)), int(next(it))
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in it:
            pass
    assert caught.value.signum == signal.SIGTERM
    assert gone(shell)
    assert gone(sleeper)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handlers restored


def test_a_second_signal_does_not_interrupt_the_clean_up() -> None:
    script = "trap '' TERM; echo $$; sleep 1000 & echo $!; wait"  # needs the grace, then KILL
    again = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM))
    with (
        pytest.raises(process.Terminated) as caught,
        process.signals_unwind(),
        process.spawn_lines(["sh", "-c", script], grace=1.0) as lines,
    ):
        it = iter(lines)
        shell, sleeper = int(next(it)), int(next(it))
        again.start()  # arrives while the group is given its grace
        os.kill(os.getpid(), signal.SIGTERM)
    again.join()
    assert caught.value.__context__ is None  # no second Terminated cut the clean-up short
    assert gone(shell)
    assert gone(sleeper)
