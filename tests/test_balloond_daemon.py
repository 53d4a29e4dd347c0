"""vmsilo-balloond as a process, against the stand-in crosvm: VMs appear and vanish, some hang
or answer garbage, and the others are still served; the command line the engine renders is the
one it parses; --dry-run, --status, a clean stop."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from vmsilo_nix import structure
from vmsilo_nix.balloond import cli
from vmsilo_nix.balloond.crosvm_ctl import Reply, Stats
from vmsilo_nix.balloond.daemon import Daemon, VmSpec
from vmsilo_nix.balloond.policy import Host
from vmsilo_nix.config import values
from vmsilo_nix.config.artifacts import Artifacts
from vmsilo_nix.config.model import Balloond
from vmsilo_nix.plan.argv import flatten
from vmsilo_nix.plan.daemons import balloond_argv
from vmsilo_nix.plan.layout import Layout

from .balloond_guests import MIB, Guests, calls, install_crosvm
from .balloond_sim import default_settings
from .conftest import EXAMPLES, ROOT
from .procs import gone

GIB = 1 << 30
HOST_TOTAL = 16 * GIB
DAEMON = [sys.executable, "-m", "vmsilo_nix.balloond"]


def sh(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=False, capture_output=True, text=True, cwd=ROOT)


def meminfo(path: Path, available: int) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"MemTotal: {HOST_TOTAL // 1024} kB\nMemAvailable: {available // 1024} kB\n")
    tmp.replace(path)


def test_the_rendered_command_line_is_what_the_daemon_parses() -> None:
    config = structure(json.loads((EXAMPLES / "desktop.json").read_text()))
    words = flatten(balloond_argv(config, Layout(), Artifacts()))
    assert words[0] == "vmsilo-balloond"
    args = cli.parser().parse_args(words[1:])
    vms = cli._vms(cli.parser(), args)
    assert [(v.name, v.memory) for v in vms] == [
        (vm.name, vm.memory * MIB) for vm in config.nixos_vms
    ]
    assert all(v.socket == Layout().control_socket(v.name) for v in vms)
    b = config.vmsilo_balloond
    assert args.log_level == b.log_level
    assert args.critical_host_percent == b.critical_host_percent
    assert args.psi_ceiling == b.psi_ceiling


def test_the_daemons_defaults_are_the_options_defaults() -> None:
    """Run by hand without flags, the daemon behaves as the module's defaults would."""
    args = cli.parser().parse_args([])
    b = Balloond()
    assert args.log_level == b.log_level
    assert args.poll_interval == values.parse_duration(b.poll_interval)
    assert args.min_poll_interval == values.parse_duration(b.min_poll_interval)
    assert args.critical_host_percent == b.critical_host_percent
    assert args.critical_guest_available == values.parse_size(b.critical_guest_available)
    assert args.guest_available_bias == values.parse_size(b.guest_available_bias)
    assert args.psi_ceiling == b.psi_ceiling


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--poll-interval", "2"], "argument --poll-interval: duration '2' needs a unit"),
        (
            ["--critical-guest-available", "lots"],
            "argument --critical-guest-available: invalid size",
        ),
        (["--critical-host-percent", "140"], "must be a percentage from 0 to 100"),
        (["--vm", "a"], "expected NAME=CONTROL_SOCKET, got 'a'"),
        (["--vm", "a=/s"], "--vm-memory is missing for a"),
        (["--vm", "a=/s", "--vm-memory", "a=1g", "--vm", "a=/t"], "--vm a is given twice"),
        (["--vm-memory", "b=1g"], "--vm-memory names b, which has no --vm"),
        (["--poll-interval", "1s", "--min-poll-interval", "2s"], "must not be longer"),
        (["--log-level", "loud"], "invalid choice: 'loud'"),
    ],
)
def test_bad_arguments_are_one_clear_line(argv: list[str], message: str) -> None:
    done = subprocess.run(
        check=False, args=[*DAEMON, *argv], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr


def test_help() -> None:
    done = subprocess.run(
        check=False, args=[*DAEMON, "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0 and "--dry-run" in done.stdout and "--status" in done.stdout


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    record = tmp_path / "record"
    record.mkdir()
    monkeypatch.setenv("VMSILO_RECORD", str(record))
    crosvm = install_crosvm(tmp_path / "bin")
    guests = Guests(tmp_path / "run-14")
    mem = tmp_path / "meminfo"
    meminfo(mem, 8 * GIB)
    psi = tmp_path / "pressure"
    psi.write_text("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
    yield {
        "record": record,
        "guests": guests,
        "base": [
            *DAEMON, "--crosvm", str(crosvm), "--meminfo", str(mem), "--pressure", str(psi),
            "--state-file", str(tmp_path / "state.json"),
        ],
        "meminfo": mem,
        "state": tmp_path / "state.json",
    }  # fmt: skip
    guests.close()


def vm_flags(guests: Guests, vms: dict[str, int]) -> list[str]:
    out = []
    for name, memory in vms.items():
        out += ["--vm", f"{name}={guests.path(name)}", "--vm-memory", f"{name}={memory}m"]
    return out


def wait_for(what: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not what():
        if time.monotonic() > deadline:
            pytest.fail("timed out waiting")
        time.sleep(0.1)


def state(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data


def test_once_and_status(env: dict[str, Any]) -> None:
    guests: Guests = env["guests"]
    guests.start("a", memory=4 * GIB, used=1 * GIB)
    flags = vm_flags(guests, {"a": 4096, "gone": 1024})
    meminfo(env["meminfo"], 512 * MIB)
    done = sh([*env["base"], "--once", *flags])
    assert done.returncode == 0, done.stderr
    assert "a: adopted its balloon at 0 MiB" in done.stderr
    s = state(env["state"])
    assert s["vms"]["gone"]["status"] == "absent"
    a = s["vms"]["a"]
    assert a["status"] == "running" and a["target"] > 0 and a["reason"].startswith("inflate")
    assert calls(env["record"])[-1] == ["balloon", str(a["target"]), str(guests.path("a"))]
    shown = subprocess.run(
        check=False, args=[*env["base"], "--status"], capture_output=True, text=True, cwd=ROOT
    )
    lines = shown.stdout.splitlines()
    assert lines[0].startswith("host: 512 MiB available of 16384 MiB, pressure 0.00%")
    assert lines[1].split() == ["VM", "STATUS", "MEMORY", "BALLOON", "TARGET", "AVAILABLE",
                                "REASON"]  # fmt: skip
    assert lines[2].startswith("a ") and f"{a['target'] // MIB} MiB" in lines[2]
    as_json = sh([*env["base"], "--status", "--json"])
    assert json.loads(as_json.stdout) == s


def test_status_of_a_missing_or_foreign_state_file(env: dict[str, Any]) -> None:
    missing = sh([*env["base"], "--status"])
    assert missing.returncode == 1 and "no state at" in missing.stderr
    env["state"].write_text("[1, 2]")
    foreign = sh([*env["base"], "--status"])
    assert foreign.returncode == 1 and "is not a state file" in foreign.stderr
    assert "Traceback" not in foreign.stderr


def test_dry_run_prints_and_moves_nothing(env: dict[str, Any]) -> None:
    guests: Guests = env["guests"]
    guests.start("a", memory=4 * GIB, used=1 * GIB)
    meminfo(env["meminfo"], 512 * MIB)
    done = sh(
        [*env["base"], "--once", "--dry-run", "--log-level", "debug",
         *vm_flags(guests, {"a": 4096})]
    )  # fmt: skip
    assert done.returncode == 0
    assert done.stdout.startswith("a: would set the balloon to ")
    assert [c[0] for c in calls(env["record"])] == ["balloon_stats"]
    debug = [line for line in done.stderr.splitlines() if line.startswith("DEBUG: a: actual")]
    assert len(debug) == 1 and "target" in debug[0]


def test_vms_come_and_go_and_faults_stay_with_their_vm(env: dict[str, Any]) -> None:
    guests: Guests = env["guests"]
    floor = 256 * MIB
    guests.start("a", memory=4 * GIB, used=1 * GIB)
    guests.start("hung", memory=2 * GIB, used=0, behave="hang")
    guests.start("junk", memory=2 * GIB, used=0, behave="garbage")
    guests.start("booting", memory=2 * GIB, used=0, behave="enotconn")
    guests.start("liar", memory=2 * GIB, used=1800 * MIB, behave="lies")
    guests.start("stubborn", memory=2 * GIB, used=0, behave="ignores")
    vms = {"a": 4096, "b": 2048, "hung": 2048, "junk": 2048, "booting": 2048, "liar": 2048,
           "stubborn": 2048}  # fmt: skip
    # the host below its critical 5%: every guest with room is asked for memory
    meminfo(env["meminfo"], 512 * MIB)
    proc = subprocess.Popen(
        [*env["base"], "--poll-interval", "300ms", "--min-poll-interval", "100ms",
         "--timeout", "2s", *vm_flags(guests, vms)],
        cwd=ROOT, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        s: Callable[[], dict[str, Any]] = lambda: state(env["state"]).get("vms", {})  # noqa: E731
        wait_for(lambda: (s().get("a", {}).get("actual") or 0) > 0)
        assert s()["hung"]["status"] == "failed" and "did not answer" in s()["hung"]["reason"]
        assert s()["junk"]["status"] == "failed"
        assert s()["booting"]["status"] == "not-ready"
        assert s()["b"]["status"] == "absent"
        # b boots: it is adopted at the size its balloon has
        guests.start("b", memory=2 * GIB, used=512 * MIB, actual=256 * MIB)
        wait_for(lambda: s()["b"]["status"] == "running")
        # the guest that ignores its balloon is held, not pushed further
        wait_for(lambda: s()["stubborn"]["held"], timeout=60)
        # a vanishes; the daemon carries on with the rest
        guests.stop("a")
        wait_for(lambda: s()["a"]["status"] == "absent")
        # the booting guest's driver comes up
        guests.set("booting", behave="ok")
        wait_for(lambda: s()["booting"]["status"] == "running")
        assert proc.poll() is None
        before = len(calls(env["record"]))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert "stopping; the balloons stay as they are" in err
    assert "Traceback" not in err
    # no balloon moved after the stop
    assert all(c[0] != "balloon" for c in calls(env["record"])[before + 1 :])
    memory = {name: mib * MIB for name, mib in vms.items()}
    used = {"a": 1 * GIB, "b": 512 * MIB, "booting": 0, "stubborn": 0, "liar": 1800 * MIB}
    for c in calls(env["record"]):
        if c[0] != "balloon":
            continue
        name = Path(c[2]).parent.name
        size = int(c[1])
        assert size <= memory[name] - floor
        if name != "liar":  # a lying guest can only hurt itself
            assert memory[name] - size - used[name] >= floor, c
    # the hung crosvm calls were all stopped
    for line in err.splitlines():
        assert "internal error" not in line
    assert gone(proc.pid)


def test_pressure_missing_says_so_once(env: dict[str, Any]) -> None:
    guests: Guests = env["guests"]
    guests.start("a", memory=4 * GIB, used=1 * GIB)
    base = list(env["base"])
    base[base.index("--pressure") + 1] += "-absent"
    proc = subprocess.Popen(
        [*base, "--poll-interval", "100ms", "--min-poll-interval", "100ms",
         *vm_flags(guests, {"a": 4096})],
        cwd=ROOT, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for(lambda: len(calls(env["record"])) >= 6)
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert err.count("polling at a fixed interval") == 1
    assert err.count("no memory pressure trigger") == 1


# --- the loop in-process, with a scripted crosvm ---------------------------------------------


class Scripted:
    """Answers from a table per socket; records every call; raises where told to."""

    def __init__(self, replies: dict[str, Reply | Exception]) -> None:
        self.replies = replies
        self.calls: list[tuple[str, ...]] = []

    def stats(self, socket: str) -> Reply:
        self.calls.append(("balloon_stats", socket))
        r = self.replies[socket]
        if isinstance(r, Exception):
            raise r
        return r

    def adjust(self, socket: str, size: int) -> Reply:
        self.calls.append(("balloon", str(size), socket))
        return Reply("ok")


def ok(available: int, actual: int = 0) -> Reply:
    return Reply(
        "ok",
        stats=Stats(
            available=available, total=None, free=None, disk_caches=None, balloon_actual=actual
        ),
    )


def daemon(control: Scripted, host: Host, names: list[str], clock: list[float]) -> Daemon:
    return Daemon(
        settings=default_settings(),
        vms=[VmSpec(name=n, socket=n, memory=4 * GIB) for n in names],
        control=control,
        read_host=lambda: host,
        read_psi=None,
        clock=lambda: clock[0],
    )


def test_a_bug_in_one_vms_step_is_confined_to_it(caplog: pytest.LogCaptureFixture) -> None:
    control = Scripted({"bad": RuntimeError("boom"), "good": ok(3 * GIB)})
    d = daemon(control, Host(total=16 * GIB, available=512 * MIB), ["bad", "good"], [0.0])
    (decision,) = d.tick()
    assert decision.name == "good" and decision.delta > 0
    assert d.states["bad"].status == "failed" and "internal error: boom" in d.states["bad"].detail
    assert ("balloon", str(decision.target), "good") in control.calls
    d.close()


def test_repeated_failures_back_off() -> None:
    clock = [0.0]
    control = Scripted({"a": Reply("failed", "garbage")})
    d = daemon(control, Host(total=16 * GIB, available=8 * GIB), ["a"], clock)
    for _ in range(5):
        d.tick()
    assert len(control.calls) == 5 and d.states["a"].retry_at == 1.0
    d.tick()  # not due yet
    assert len(control.calls) == 5
    clock[0] = 1.0
    d.tick()
    assert len(control.calls) == 6 and d.states["a"].retry_at == 3.0
    # it answers again: back to every round
    control.replies["a"] = ok(1 * GIB)
    clock[0] = 3.0
    d.tick()
    assert d.states["a"].status == "running" and d.states["a"].retry_at == 0.0


def test_adopts_balloons_and_warns_once_when_nothing_can_give(
    caplog: pytest.LogCaptureFixture,
) -> None:
    control = Scripted({"a": ok(250 * MIB, actual=2 * GIB)})  # below its floor already
    d = daemon(control, Host(total=16 * GIB, available=100 * MIB), ["a"], [0.0])
    with caplog.at_level(logging.INFO, logger="vmsilo-balloond"):
        d.tick()
        d.tick()
    assert d.states["a"].requested == 2 * GIB  # adopted, not reset
    assert caplog.text.count("adopted its balloon at 2048 MiB") == 1
    assert caplog.text.count("no VM can give more memory") == 1
    assert not [c for c in control.calls if c[0] == "balloon"]


def test_a_guest_without_available_memory_is_not_ready() -> None:
    nothing = Stats(available=None, total=None, free=None, disk_caches=None, balloon_actual=0)
    control = Scripted({"a": Reply("ok", stats=nothing)})
    d = daemon(control, Host(total=16 * GIB, available=100 * MIB), ["a"], [0.0])
    assert d.tick() == ()
    assert d.states["a"].status == "not-ready"


def test_a_failing_round_does_not_stop_the_loop(caplog: pytest.LogCaptureFixture) -> None:
    rounds: Iterator[Host | Exception] = iter(
        [RuntimeError("meminfo bug"), Host(total=16 * GIB, available=8 * GIB)]
    )

    def read_host() -> Host:
        r = next(rounds)
        if isinstance(r, Exception):
            raise r
        return r

    control = Scripted({"a": ok(1 * GIB)})
    d = daemon(control, Host(total=1, available=1), ["a"], [0.0])
    d.read_host = read_host
    ticks = iter([False, False, True])
    d.run(lambda _seconds: "timeout", lambda: next(ticks))
    assert "this round failed" in caplog.text
    assert d.states["a"].status == "running"
