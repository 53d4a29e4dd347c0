"""autoShutdown: the agent powers the VM off ``after`` seconds after the last command ended.

The timer's clock is injected: unit tests and an in-process agent running real commands move
time by hand; one test lets a real agent process power "off" (touch a file) on the real clock.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vmsilo_nix.channel import protocol as p
from vmsilo_nix.channel.transport import Listener, UnixAddress, connect
from vmsilo_nix.guest.agent import Agent, AgentConfig, IdleShutdown, cmdline_auto_shutdown
from vmsilo_nix.guest.spawn import GuestUser

from .test_channel_agent import USER, AgentProcess, bounded, run, short_dir, start_agent

__all__ = ["short_dir", "start_agent"]  # fixtures used here


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Recorder:
    def __init__(self) -> None:
        self.calls = 0
        self.event = threading.Event()

    def __call__(self) -> None:
        self.calls += 1
        self.event.set()


def timer(after: float = 30) -> tuple[IdleShutdown, FakeClock, Recorder]:
    clock, off = FakeClock(), Recorder()
    return IdleShutdown(after, off, clock), clock, off


# --- the timer alone ------------------------------------------------------------------------


def test_an_idle_vm_powers_off_after_the_delay_once() -> None:
    idle, clock, off = timer(30)
    assert idle.deadline() == 1030
    clock.advance(29.9)
    assert not idle.check()
    clock.advance(0.1)
    assert idle.check()
    assert not idle.check()
    clock.advance(1000)
    assert not idle.check()
    assert off.calls == 1


def test_a_command_started_in_the_grace_period_cancels_the_shutdown() -> None:
    idle, clock, off = timer(30)
    clock.advance(29)
    idle.begin()
    assert idle.deadline() is None
    clock.advance(500)  # a long command: the VM stays up
    assert not idle.check()
    idle.end()
    assert idle.deadline() == clock.now + 30  # counted from the end of the last command
    clock.advance(29)
    assert not idle.check()
    clock.advance(1)
    assert idle.check()
    assert off.calls == 1


def test_overlapping_commands_keep_the_vm_up_until_the_last_ends() -> None:
    idle, clock, off = timer(10)
    idle.begin()
    clock.advance(5)
    idle.begin()
    clock.advance(5)
    idle.end()  # one still runs
    clock.advance(100)
    assert not idle.check() and idle.active == 1
    idle.end()
    clock.advance(9.5)
    assert not idle.check()
    clock.advance(0.5)
    assert idle.check() and off.calls == 1


def test_zero_seconds_powers_off_as_soon_as_the_last_command_ends() -> None:
    idle, _clock, off = timer(0)
    idle.begin()
    assert not idle.check()
    idle.end()
    assert idle.check() and off.calls == 1


@pytest.mark.parametrize(
    ("cmdline", "seconds"),
    [
        ("console=ttyS0 vmsilo.name=a vmsilo.autoshutdown=60 quiet\n", 60.0),
        ("vmsilo.autoshutdown=0", 0.0),
        ("vmsilo.autoshutdown=5 vmsilo.autoshutdown=7", 7.0),  # the last one wins
        ("console=ttyS0 vmsilo.name=a", None),
        ("vmsilo.autoshutdown=soon", None),
        ("vmsilo.autoshutdown=-1", None),
        ("vmsilo.autoshutdown", None),
        ("xvmsilo.autoshutdown=5", None),
    ],
)
def test_the_delay_comes_from_the_kernel_command_line(cmdline: str, seconds: float | None) -> None:
    assert cmdline_auto_shutdown(cmdline) == seconds


# --- an agent in this process, real commands, time moved by hand ----------------------------


class InProcessAgent:
    def __init__(self, directory: Path, *, after: float = 30, **config: float) -> None:
        self.address = UnixAddress(str(directory / "inproc.sock"))
        self.clock = FakeClock()
        self.off = Recorder()
        self.idle = IdleShutdown(after, self.off, self.clock)
        self.agent = Agent(
            Listener(self.address),
            AgentConfig(user=GuestUser.lookup(USER), **config),  # type: ignore[arg-type]
            idle=self.idle,
            tick=0.01,
        )
        self.thread = threading.Thread(target=self.agent.serve_forever, daemon=True)
        self.thread.start()
        self.path = self.address.path

    def settle(self, active: int, timeout: float = 20.0) -> None:
        """Wait until exactly ``active`` connections are open, then a few ticks more."""
        deadline = time.monotonic() + timeout
        while self.idle.active != active:
            assert time.monotonic() < deadline, f"{self.idle.active} connections, not {active}"
            time.sleep(0.01)
        time.sleep(0.1)

    def stop(self) -> None:
        self.agent.stop()
        self.thread.join(20)
        assert not self.thread.is_alive()


@pytest.fixture
def inproc(short_dir: Path) -> Iterator[Callable[..., InProcessAgent]]:
    agents: list[InProcessAgent] = []

    def make(**kwargs: float) -> InProcessAgent:
        agents.append(InProcessAgent(short_dir, **kwargs))
        return agents[-1]

    yield make
    for a in agents:
        a.stop()


def run_in_thread(agent: InProcessAgent, argv: list[str]) -> threading.Thread:
    as_process = AgentProcess.__new__(AgentProcess)
    as_process.path = agent.path
    thread = threading.Thread(target=run, args=(as_process, argv), daemon=True)
    thread.start()
    return thread


@pytest.fixture
def gates() -> Iterator[Path]:
    """A directory the guest user can read: a command waits for a file in it to appear."""
    path = Path(tempfile.mkdtemp(prefix="vmsilo-gate-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def until(gate: Path) -> list[str]:
    """A command that runs until ``gate`` exists."""
    return ["sh", "-c", f"while [ ! -e {gate} ]; do sleep 0.02; done"]


def test_the_agent_powers_off_after_idle_time_unless_a_command_runs(
    inproc: Callable[..., InProcessAgent], gates: Path
) -> None:
    a = inproc(after=30)
    a.clock.advance(29)
    first = run_in_thread(a, until(gates / "first"))
    a.settle(active=1)
    a.clock.advance(500)  # the command runs "for a long time": no shutdown meanwhile
    time.sleep(0.1)
    assert a.off.calls == 0
    (gates / "first").touch()
    first.join(20)
    a.settle(active=0)
    assert a.idle.deadline() == a.clock.now + 30

    a.clock.advance(29)  # in the grace period, another command comes and goes
    second = run_in_thread(a, ["true"])
    second.join(20)
    a.settle(active=0)
    a.clock.advance(29)
    time.sleep(0.1)
    assert a.off.calls == 0  # the grace period started again when it ended
    a.clock.advance(1)
    assert a.off.event.wait(10)
    time.sleep(0.1)
    assert a.off.calls == 1


def test_two_overlapping_commands(inproc: Callable[..., InProcessAgent], gates: Path) -> None:
    a = inproc(after=10)
    long = run_in_thread(a, until(gates / "long"))
    short = run_in_thread(a, until(gates / "short"))
    a.settle(active=2)
    (gates / "short").touch()
    short.join(20)
    a.settle(active=1)
    a.clock.advance(100)
    time.sleep(0.1)
    assert a.off.calls == 0
    (gates / "long").touch()
    long.join(20)
    a.settle(active=0)
    a.clock.advance(9)
    time.sleep(0.1)
    assert a.off.calls == 0
    a.clock.advance(1)
    assert a.off.event.wait(10)


def test_a_connection_that_sends_nothing_is_closed_after_the_start_timeout(
    inproc: Callable[..., InProcessAgent],
) -> None:
    a = inproc(start_timeout=0.3)
    sock = connect(a.address, timeout=10)
    sock.settimeout(10)
    try:
        received = bounded(lambda: sock.recv(65536) + sock.recv(65536), 10)
    finally:
        sock.close()
    hello, error = p.FrameReader(p.FROM_AGENT).feed(received)
    assert hello == p.Hello(p.VERSION)
    assert isinstance(error, p.Error) and "no START within the time allowed" in error.message


def test_the_start_timeout_bounds_the_whole_wait_not_each_read(
    inproc: Callable[..., InProcessAgent],
) -> None:
    """A client trickling START a byte at a time, each byte well within the timeout, is closed
    once the timeout has passed since it connected."""
    a = inproc(start_timeout=1.0)
    sock = connect(a.address, timeout=10)
    start = p.encode(p.Start(argv=("true",)))
    began = time.monotonic()
    closed_after: float | None = None
    try:
        for byte in start:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                closed_after = time.monotonic() - began
                break
            time.sleep(0.2)
            if time.monotonic() - began > 10:
                break
        sock.settimeout(10)
        received = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                received += chunk
        closed_after = closed_after or time.monotonic() - began
    finally:
        sock.close()
    assert len(start) * 0.2 > 5  # a per-read timeout would have let all of it through
    assert closed_after < 3.0, closed_after
    hello, error = p.FrameReader(p.FROM_AGENT).feed(received)
    assert hello == p.Hello(p.VERSION)
    assert isinstance(error, p.Error) and "no START within the time allowed" in error.message


# --- a real agent on the real clock ---------------------------------------------------------


@pytest.mark.parametrize("how", ["flag", "cmdline"])
def test_a_real_agent_runs_the_poweroff_command(
    start_agent: Callable[..., AgentProcess], short_dir: Path, how: str
) -> None:
    marker = short_dir / f"powered-off-{how}"
    cmdline = short_dir / "cmdline"
    cmdline.write_text("console=ttyS0 vmsilo.autoshutdown=1 quiet\n")
    setting = ["--auto-shutdown", "1"] if how == "flag" else ["--cmdline", str(cmdline)]
    agent = start_agent(*setting, "--poweroff-command", f"touch {marker}")
    assert run(agent, ["sleep", "1.5"])[0] == 0  # holds the VM up past its first second
    ended = time.monotonic()
    assert not marker.exists()
    deadline = ended + 15
    while not marker.exists():
        assert time.monotonic() < deadline, agent.log()
        time.sleep(0.05)
    assert time.monotonic() - ended >= 0.9
    assert "no command for 1 s: powering off" in agent.log()
