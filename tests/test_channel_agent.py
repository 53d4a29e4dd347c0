"""The channel end to end: a real agent process on a Unix socket, real clients and commands.

The agent runs commands as ``nobody`` when the tests run as root (it refuses root), otherwise
as the current user. Every wait is bounded.
"""

from __future__ import annotations

import concurrent.futures
import fcntl
import hashlib
import os
import pwd
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmsilo_nix.channel import protocol as p
from vmsilo_nix.channel.client import Session, run_command
from vmsilo_nix.channel.transport import UnixAddress, VsockAddress, connect, peer_allowed
from vmsilo_nix.guest.agent import AgentConfig, command_for
from vmsilo_nix.guest.spawn import Command, GuestUser, SpawnError, spawn

from .procs import gone

ROOT = Path(__file__).resolve().parent.parent
CHANNEL = "import sys; from vmsilo_nix.cli.channel import main; sys.exit(main(sys.argv[1:]))"
USER = "nobody" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
T = TypeVar("T")


def bounded(fn: Callable[[], T], timeout: float = 30.0) -> T:
    """Run ``fn`` in a thread and fail the test when it takes longer than ``timeout``."""
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        return pool.submit(fn).result(timeout)
    finally:
        pool.shutdown(wait=False)


class AgentProcess:
    def __init__(self, directory: Path, *extra: str) -> None:
        self.path = str(directory / "agent.sock")
        self.log_path = directory / "agent.log"
        with self.log_path.open("wb") as log:
            argv = [sys.executable, "-c", CHANNEL, "agent", "--listen-unix", self.path]
            self.proc = subprocess.Popen(
                [*argv, "--user", USER, *extra],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=ROOT,
            )
        deadline = time.monotonic() + 20
        while not os.path.exists(self.path):
            assert self.proc.poll() is None, self.log()
            assert time.monotonic() < deadline, "the agent did not start listening"
            time.sleep(0.02)

    @property
    def address(self) -> UnixAddress:
        return UnixAddress(self.path)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path (a Unix socket path holds at most 107 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="vmsilo-ch-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def start_agent(short_dir: Path) -> Iterator[Callable[..., AgentProcess]]:
    started: list[AgentProcess] = []

    def start(*extra: str) -> AgentProcess:
        sub = Path(tempfile.mkdtemp(dir=short_dir))
        agent = AgentProcess(sub, *extra)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()


@pytest.fixture
def agent(start_agent: Callable[..., AgentProcess]) -> AgentProcess:
    return start_agent()


def run(
    agent: AgentProcess,
    argv: Sequence[str],
    *,
    stdin: bytes = b"",
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    timeout: float = 30.0,
) -> tuple[int, bytes, bytes]:
    """Run ``argv`` through the client library; its status, stdout and stderr."""

    def go() -> tuple[int, bytes, bytes]:
        with (
            tempfile.TemporaryFile() as inp,
            tempfile.TemporaryFile() as out,
            tempfile.TemporaryFile() as err,
        ):
            inp.write(stdin)
            inp.seek(0)
            code = run_command(
                agent.address,
                argv,
                env=env,
                cwd=cwd,
                stdin=inp.fileno(),
                stdout=out.fileno(),
                stderr=err.fileno(),
                interactive=False,
                connect_timeout=10,
            )
            out.seek(0)
            err.seek(0)
            return code, out.read(), err.read()

    return bounded(go, timeout)


def client(agent: AgentProcess, *argv: str, **kwargs: object) -> subprocess.Popen[bytes]:
    """``vmsilo channel run`` as its own process."""
    kwargs.setdefault("stdin", subprocess.DEVNULL)
    kwargs.setdefault("stdout", subprocess.PIPE)
    kwargs.setdefault("stderr", subprocess.PIPE)
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-c", CHANNEL, "run", "--unix", agent.path, "--", *argv],
        cwd=ROOT,
        **kwargs,
    )


def read_line(pipe: IO[bytes], timeout: float = 20.0) -> bytes:
    fd = pipe.fileno()
    line = b""
    deadline = time.monotonic() + timeout
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        assert left > 0, f"no complete line within {timeout} s (got {line!r})"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 1)
            assert chunk, f"end of output before a complete line (got {line!r})"
            line += chunk
    return line


class LiveSession:
    """A session running in a thread, with a pipe for its input and its output collected."""

    def __init__(self, agent: AgentProcess, start: p.Start) -> None:
        stdin_r, self.stdin_w = os.pipe()
        self._out_r, out_w = os.pipe()
        self.output = b""
        self.session = Session(
            connect(agent.address, timeout=10), start, stdin=stdin_r, stdout=out_w, stderr=out_w
        )
        self._fds = [stdin_r, out_w]
        self._result: list[int] = []
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _run(self) -> None:
        try:
            self._result.append(self.session.run())
        finally:
            for fd in self._fds:
                os.close(fd)

    def _read(self) -> None:
        while chunk := os.read(self._out_r, 65536):
            with self._lock:
                self.output += chunk
        os.close(self._out_r)

    def wait_for(self, text: bytes, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert time.monotonic() < deadline, f"no {text!r} in {self.output!r}"
            time.sleep(0.02)

    def result(self, timeout: float = 20.0) -> int:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"the command did not end; output {self.output!r}"
        self._reader.join(5)
        os.close(self.stdin_w)
        return self._result[0]


# --- exit status, output, input -------------------------------------------------------------


def test_exit_codes_and_separate_streams(agent: AgentProcess) -> None:
    assert run(agent, ["true"]) == (0, b"", b"")
    assert run(agent, ["sh", "-c", "echo out; echo err >&2; exit 3"]) == (3, b"out\n", b"err\n")


@pytest.mark.parametrize(("sig", "status"), [("KILL", 137), ("TERM", 143), ("SEGV", 139)])
def test_a_command_killed_by_a_signal_reports_128_plus_it(
    agent: AgentProcess, sig: str, status: int
) -> None:
    assert run(agent, ["sh", "-c", f"kill -{sig} $$"])[0] == status


def test_a_missing_program_is_127_with_a_message(agent: AgentProcess) -> None:
    code, out, err = run(agent, ["vmsilo-no-such-program", "x"])
    assert (code, out) == (127, b"")
    assert err == b"vmsilo: vmsilo-no-such-program: No such file or directory\n"


def test_large_input_and_output_stream_through_intact(agent: AgentProcess) -> None:
    data = os.urandom(6 * 1024 * 1024 + 123)
    code, out, err = run(agent, ["cat"], stdin=data, timeout=60)
    assert (code, err) == (0, b"")
    assert hashlib.sha256(out).digest() == hashlib.sha256(data).digest()
    code, out, err = run(agent, ["sh", "-c", "cat >&2"], stdin=data, timeout=60)
    assert (code, out) == (0, b"")
    assert hashlib.sha256(err).digest() == hashlib.sha256(data).digest()


def test_large_output_without_input(agent: AgentProcess) -> None:
    expected = "".join(f"{i}\n" for i in range(1, 1_000_001)).encode()  # 6.9 MB
    code, out, _ = run(agent, ["seq", "1", "1000000"], timeout=60)
    assert code == 0
    assert hashlib.sha256(out).hexdigest() == hashlib.sha256(expected).hexdigest()


def test_input_the_command_never_reads_does_not_block_its_end(agent: AgentProcess) -> None:
    code, out, _ = run(agent, ["sh", "-c", "echo done"], stdin=os.urandom(3 * 1024 * 1024))
    assert (code, out) == (0, b"done\n")


def test_commands_run_concurrently(agent: AgentProcess) -> None:
    began = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        futures = [
            pool.submit(run, agent, ["sh", "-c", 'sleep 1; echo "$N"'], env={"N": str(i)})
            for i in range(8)
        ]
        results = [f.result(30) for f in futures]
    assert results == [(0, f"{i}\n".encode(), b"") for i in range(8)]
    assert time.monotonic() - began < 6  # eight 1-second commands, not one after another


# --- user, environment, directory -----------------------------------------------------------


def test_the_command_runs_as_the_configured_user_never_root(agent: AgentProcess) -> None:
    entry = pwd.getpwnam(USER)
    code, out, _ = run(agent, ["sh", "-c", "id -u; id -g; id -G"])
    assert code == 0
    uid, gid, groups = out.decode().splitlines()
    assert (int(uid), int(gid)) == (entry.pw_uid, entry.pw_gid)
    assert {int(g) for g in groups.split()} == set(os.getgrouplist(USER, entry.pw_gid))
    assert 0 not in {int(uid), int(gid), *(int(g) for g in groups.split())}


def test_root_is_refused_as_the_guest_user(tmp_path: Path) -> None:
    with pytest.raises(SpawnError, match="refusing to run commands as 'root': it is root"):
        GuestUser.lookup("root").check()
    argv = [sys.executable, "-c", CHANNEL, "agent", "--user", "root"]
    result = subprocess.run(
        [*argv, "--listen-unix", str(tmp_path / "s")],
        capture_output=True,
        timeout=30,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode != 0
    assert b"refusing to run commands as 'root'" in result.stderr


def test_environment_and_directory_are_passed(start_agent: Callable[..., AgentProcess]) -> None:
    agent = start_agent(
        "--session-env", "WAYLAND_DISPLAY=wayland-9", "--session-env", "FOO=from-session"
    )
    code, out, _ = run(
        agent,
        ["sh", "-c", 'echo "$FOO|$WAYLAND_DISPLAY|$USER|$LOGNAME"; pwd'],
        env={"FOO": "from host", "EMPTY": ""},
        cwd="/usr/bin",
    )
    assert code == 0
    assert out.decode() == f"from host|wayland-9|{USER}|{USER}\n/usr/bin\n"
    code, out, _ = run(agent, ["env"])
    names = {line.split("=", 1)[0] for line in out.decode().splitlines()}
    # Nothing of the agent's (or the host's) environment leaks in: only what we set.
    assert names <= {
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "PATH",
        "XDG_DATA_DIRS",
        "XDG_RUNTIME_DIR",
        "WAYLAND_DISPLAY",
        "FOO",
        "PWD",
    }


def test_a_directory_the_user_cannot_enter_is_refused(agent: AgentProcess) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs a directory the guest user cannot enter (run as root)")
    private = tempfile.mkdtemp(dir="/tmp")
    try:
        os.chmod(private, 0o700)
        code, out, err = run(agent, ["pwd"], cwd=private)
        assert (code, out) == (126, b"")
        assert err.decode() == f"vmsilo: cannot change to {private}: Permission denied\n"
    finally:
        os.rmdir(private)


@pytest.mark.parametrize("tty", [False, True], ids=["pipes", "terminal"])
def test_a_command_that_cannot_start_leaves_no_descriptor_open(
    tty: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    uid = os.geteuid() or 1000  # root may become anyone, another user only itself
    user = GuestUser("alice", uid, uid, (uid,), "/", "/bin/sh")
    # The child program's interpreter is missing, so starting it fails in this process.
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python"))
    before = sorted(os.listdir("/proc/self/fd"))
    with pytest.raises(FileNotFoundError):
        spawn(Command(argv=("true",), env={}, cwd="/", tty=tty), user)
    assert sorted(os.listdir("/proc/self/fd")) == before


def test_a_start_without_argv_runs_the_login_shell() -> None:
    user = GuestUser("alice", 1000, 100, (100,), "/home/alice", "/run/current-system/sw/bin/bash")
    config = AgentConfig(user=user, session_env={"WAYLAND_DISPLAY": "wayland-1"})
    command = command_for(p.Start(argv=(), tty=True, rows=0, cols=0), config)
    assert command.argv == ("/run/current-system/sw/bin/bash", "-l")
    assert command.env["TERM"] == "xterm-256color"
    assert command.env["WAYLAND_DISPLAY"] == "wayland-1"
    assert "/etc/profiles/per-user/alice/bin" in command.env["PATH"]
    # the VM's own programs (its program image's profile), before the system's
    path = command.env["PATH"].split(":")
    assert path.index("/run/vmsilo/programs/bin") < path.index("/run/current-system/sw/bin")
    assert command.env["XDG_DATA_DIRS"].split(":") == [
        "/home/alice/.nix-profile/share",
        "/nix/profile/share",
        "/etc/profiles/per-user/alice/share",
        "/run/vmsilo/programs/share",
        "/nix/var/nix/profiles/default/share",
        "/run/current-system/sw/share",
    ]
    assert (command.rows, command.cols) == (24, 80)
    assert command.cwd == ("/home/alice" if os.path.isdir("/home/alice") else "/")


# --- signals and disconnects ----------------------------------------------------------------


def test_ctrl_c_reaches_the_command(agent: AgentProcess) -> None:
    proc = client(
        agent,
        "bash",
        "-c",
        'trap "echo got INT; exit 42" INT; echo ready; while :; do sleep 0.1; done',
    )
    assert proc.stdout is not None
    assert read_line(proc.stdout) == b"ready\n"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert (proc.returncode, out, err) == (42, b"got INT\n", b"")


def test_a_command_killed_by_ctrl_c_gives_130(agent: AgentProcess) -> None:
    proc = client(agent, "sh", "-c", "echo ready; exec sleep 1000")
    assert proc.stdout is not None
    assert read_line(proc.stdout) == b"ready\n"
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=20)
    assert proc.returncode == 130


def test_sigterm_and_sighup_are_forwarded_too(agent: AgentProcess) -> None:
    for sig in (signal.SIGTERM, signal.SIGHUP):
        script = f'trap "echo got {sig.name}; exit 5" {sig.name[3:]}; echo ready; '
        proc = client(agent, "bash", "-c", script + "while :; do sleep 0.1; done")
        assert proc.stdout is not None
        assert read_line(proc.stdout) == b"ready\n"
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=20)
        assert (proc.returncode, out) == (5, f"got {sig.name}\n".encode())


def test_a_client_that_dies_midway_takes_the_command_group_with_it(
    agent: AgentProcess,
) -> None:
    proc = client(agent, "sh", "-c", "sleep 1000 & echo $$ $!; wait")
    assert proc.stdout is not None
    pids = [int(w) for w in read_line(proc.stdout).split()]
    assert len(pids) == 2
    proc.kill()
    proc.wait(10)
    assert all(gone(pid, 15) for pid in pids), agent.log()
    assert "the client went away" in agent.log()


def test_a_client_that_dies_while_its_input_is_unread_still_stops_the_command(
    agent: AgentProcess, tmp_path: Path
) -> None:
    # The command never reads: the agent stops reading the socket (backpressure) and must
    # still notice the client going away.
    big = tmp_path / "input"
    big.write_bytes(os.urandom(4 * 1024 * 1024))
    with big.open("rb") as stdin:
        proc = client(agent, "sh", "-c", "echo $$; exec sleep 1000", stdin=stdin)
        assert proc.stdout is not None
        pid = int(read_line(proc.stdout))
        time.sleep(0.5)  # let the input pile up
        proc.kill()
        proc.wait(10)
    assert gone(pid, 15), agent.log()


def test_the_third_signal_gives_up_and_the_command_is_stopped(agent: AgentProcess) -> None:
    proc = client(agent, "sh", "-c", 'trap "" INT; echo $$; while :; do sleep 0.1; done')
    assert proc.stdout is not None and proc.stderr is not None
    pid = int(read_line(proc.stdout))
    for _ in range(3):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.3)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert b"giving up; the command is being stopped" in err
    assert gone(pid, 15)


def test_the_command_s_leftover_processes_end_with_it(agent: AgentProcess) -> None:
    code, out, _ = run(agent, ["sh", "-c", "sleep 1000 >/dev/null 2>&1 & echo $!"])
    assert code == 0
    assert gone(int(out), 10)


def test_signals_to_a_running_session(agent: AgentProcess) -> None:
    live = LiveSession(
        agent,
        p.Start(argv=("bash", "-c", 'trap "echo usr1" USR1; echo ready; read x; echo "$x"')),
    )
    live.wait_for(b"ready\n")
    live.session.send_signal("USR1")
    live.wait_for(b"usr1\n")
    os.write(live.stdin_w, b"typed\n")
    assert live.result() == 0
    assert live.output == b"ready\nusr1\ntyped\n"


# --- terminals ------------------------------------------------------------------------------


def test_a_pty_for_shells_with_its_size_and_resizes(agent: AgentProcess) -> None:
    script = (
        "tty; stty size; trap 'stty size; exit 0' WINCH; echo ready; while :; do sleep 0.1; done"
    )
    live = LiveSession(agent, p.Start(argv=("sh", "-c", script), tty=True, rows=33, cols=101))
    live.wait_for(b"ready")
    live.session.resize(50, 120)
    assert live.result() == 0
    lines = live.output.decode().split("\r\n")
    assert lines[0].startswith("/dev/pts/")
    assert lines[1:] == ["33 101", "ready", "50 120", ""]


def test_ctrl_c_on_a_pty_is_a_keystroke(agent: AgentProcess) -> None:
    script = "trap 'echo caught; exit 7' INT; echo ready; while :; do sleep 0.1; done"
    live = LiveSession(agent, p.Start(argv=("sh", "-c", script), tty=True))
    live.wait_for(b"ready")
    os.write(live.stdin_w, b"\x03")
    assert live.result() == 7
    assert b"caught" in live.output


def test_input_end_on_a_pty_is_end_of_file(agent: AgentProcess) -> None:
    live = LiveSession(agent, p.Start(argv=("cat",), tty=True))
    os.write(live.stdin_w, b"line\n")
    live.wait_for(b"line\r\nline\r\n")  # the echo and cat's copy
    os.close(live.stdin_w)
    live.stdin_w = os.open("/dev/null", os.O_RDONLY)  # result() closes it
    assert live.result() == 0


@pytest.mark.skipif(shutil.which("setsid") is None, reason="needs util-linux setsid")
def test_a_terminal_client_goes_raw_follows_resizes_and_restores_the_terminal(
    agent: AgentProcess,
) -> None:
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 90, 0, 0))
    before = termios.tcgetattr(slave)
    script = "stty size; trap 'stty size; exit 4' WINCH; echo ready; while :; do sleep 0.1; done"
    # setsid --ctty: the client's terminal is the pty, so it gets SIGWINCH like in a real one.
    argv = [sys.executable, "-c", CHANNEL, "run", "--unix", agent.path, "--tty"]
    proc = subprocess.Popen(
        ["setsid", "--ctty", *argv, "--", "sh", "-c", script],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        cwd=ROOT,
    )
    seen = b""
    deadline = time.monotonic() + 20
    while b"ready" not in seen:
        assert time.monotonic() < deadline, seen
        if select.select([master], [], [], 0.2)[0]:
            seen += os.read(master, 65536)
    assert not termios.tcgetattr(slave)[3] & termios.ICANON  # raw while the shell runs
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    assert proc.wait(20) == 4
    while select.select([master], [], [], 0.5)[0]:
        try:
            seen += os.read(master, 65536)
        except OSError:
            break
    assert termios.tcgetattr(slave) == before  # restored
    os.close(master)
    os.close(slave)
    assert seen.split(b"\r\n")[:4] == [b"30 90", b"ready", b"40 100", b""]


ESCAPES = r"a\033[31mred\033[0m\033]0;title\007\033[2Jb\n"


def test_escape_sequences_are_stripped_for_a_terminal_only(agent: AgentProcess) -> None:
    script = f"printf '{ESCAPES}'; printf '{ESCAPES}' >&2"
    raw = b"a\x1b[31mred\x1b[0m\x1b]0;title\x07\x1b[2Jb\n"
    master, slave = os.openpty()
    proc = client(agent, "sh", "-c", script, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    out, _ = proc.communicate(timeout=20)
    terminal = b""
    while True:
        ready, _, _ = select.select([master], [], [], 2)
        if not ready:
            break
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        terminal += chunk
    os.close(master)
    assert proc.returncode == 0
    assert out == raw  # a pipe gets the exact bytes
    assert terminal == b"aredb\r\n"  # the terminal (its line discipline adds the \r)


# --- garbage --------------------------------------------------------------------------------


def exchange(agent: AgentProcess, data: bytes, timeout: float = 20.0) -> list[p.Message]:
    """Send ``data`` on a fresh connection, then read until the agent closes it; what came
    after the agent's HELLO, which always comes first."""
    sock = connect(agent.address, timeout=10)
    sock.settimeout(timeout)
    received = b""
    try:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the agent may close before reading everything
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    finally:
        sock.close()
    hello, *rest = p.FrameReader(p.FROM_AGENT).feed(received)
    assert hello == p.Hello(p.VERSION)
    return rest


def header(kind: int, length: int) -> bytes:
    return p.HEADER.pack(kind, length)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (header(p.MessageType.START, 1 << 20), "START of 1048576 bytes is over its limit"),
        (header(p.MessageType.STDIN, 3) + b"abc", "the first message must be START, not Stdin"),
        (header(99, 0), "unknown message type 99"),
        (header(p.MessageType.STDOUT, 0), "STDOUT is not allowed in this direction"),
        (header(p.MessageType.START, 2) + b"{}", "START: expected the fields"),
        (header(p.MessageType.START, 10) + b"abc", "the connection closed in the middle"),
    ],
)
def test_a_bad_message_closes_only_its_connection_with_a_logged_reason(
    agent: AgentProcess, data: bytes, reason: str
) -> None:
    messages = exchange(agent, data)
    assert all(isinstance(m, p.Error) for m in messages)
    assert f"closing the connection: {reason}" in agent.log()
    assert run(agent, ["echo", "still serving"])[:2] == (0, b"still serving\n")


def test_a_bad_message_mid_session_stops_that_command(agent: AgentProcess) -> None:
    start = p.encode(p.Start(argv=("sh", "-c", "echo $$; exec sleep 1000")))
    sock = connect(agent.address, timeout=10)
    sock.settimeout(20)
    try:
        sock.sendall(start)
        reader = p.FrameReader(p.FROM_AGENT)
        messages: list[p.Message] = []
        while len(messages) < 2:
            messages += reader.feed(sock.recv(65536))
        assert messages[0] == p.Hello(p.VERSION)
        assert isinstance(messages[1], p.Stdout)
        pid = int(messages[1].data)
        sock.sendall(header(p.MessageType.SIGNAL, 9) + b'"nothing"')
        rest = b""
        while chunk := sock.recv(65536):
            rest += chunk
    finally:
        sock.close()
    (error,) = reader.feed(rest)
    assert (
        isinstance(error, p.Error) and "SIGNAL: the payload is not a JSON object" in error.message
    )
    assert gone(pid, 15)


garbage = st.one_of(
    # anything at all, but not starting with START's type byte
    st.binary(min_size=1, max_size=3000).filter(lambda b: b[0] != p.MessageType.START),
    # a START frame whose payload is not a JSON object
    st.binary(max_size=2000)
    .filter(lambda b: not b.lstrip().startswith(b"{"))
    .map(lambda b: header(p.MessageType.START, len(b)) + b),
    # a header of any type and length, then some bytes
    st.tuples(st.integers(0, 255), st.integers(0, 2**32 - 1), st.binary(max_size=200))
    .filter(lambda t: t[0] != p.MessageType.START)
    .map(lambda t: header(t[0], t[1]) + t[2]),
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=garbage)
def test_fuzzed_garbage_never_runs_anything_and_never_disturbs_another_client(
    agent: AgentProcess, data: bytes
) -> None:
    messages = exchange(agent, data)
    assert all(isinstance(m, p.Error) for m in messages), messages


def test_a_command_keeps_working_while_others_send_garbage(agent: AgentProcess) -> None:
    live = LiveSession(agent, p.Start(argv=("sh", "-c", 'echo ready; read x; echo "got $x"')))
    live.wait_for(b"ready\n")
    for data in (os.urandom(5000), header(p.MessageType.START, 1 << 30), b"\x01\x00"):
        exchange(agent, data)
    os.write(live.stdin_w, b"hello\n")
    assert live.result() == 0
    assert live.output == b"ready\ngot hello\n"
    assert agent.proc.poll() is None


# --- transport ------------------------------------------------------------------------------


def test_only_the_host_cid_is_served_over_vsock() -> None:
    address = VsockAddress(cid=0, port=5000)
    assert peer_allowed(address, (2, 1234))
    assert not peer_allowed(address, (1, 1234))  # the guest itself, over vsock loopback
    assert not peer_allowed(address, (3, 1234))  # another VM
    assert not peer_allowed(address, "garbage")
    assert peer_allowed(UnixAddress("/s"), "")


def test_the_unix_socket_is_private(agent: AgentProcess) -> None:
    assert os.stat(agent.path).st_mode & 0o777 == 0o600
