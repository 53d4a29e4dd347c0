"""The host side of the channel stays in charge: it ends on a signal whatever its output does,
it talks only to a peer that completes the handshake, and no unprivileged guest process can
take the agent's port."""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import socket
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vmsilo_nix import facts
from vmsilo_nix.channel import protocol as p
from vmsilo_nix.channel import session
from vmsilo_nix.channel.client import run_command
from vmsilo_nix.channel.protocol import ChannelError
from vmsilo_nix.channel.transport import UnixAddress
from vmsilo_nix.cli import channel as channel_cli

from .test_channel_agent import CHANNEL, ROOT, AgentProcess, short_dir, start_agent

__all__ = ["short_dir", "start_agent"]  # fixtures, used by name


# --- signals while our output is blocked ------------------------------------------------------


def _buffered(fd: int) -> int:
    """Bytes waiting in a pipe (FIONREAD)."""
    out = bytearray(4)
    fcntl.ioctl(fd, termios.FIONREAD, out)
    return int.from_bytes(out, sys.byteorder)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_the_client_ends_on_a_signal_while_nobody_reads_its_output(
    start_agent: Callable[..., AgentProcess], tmp_path: Path, sig: signal.Signals
) -> None:
    agent = start_agent()
    out_r, out_w = os.pipe()  # a real pipe that nobody reads
    errors = tmp_path / "stderr"
    with errors.open("wb") as err:
        client = subprocess.Popen(
            [sys.executable, "-c", CHANNEL, "run", "--unix", agent.path, "--", "yes"],
            stdin=subprocess.DEVNULL,
            stdout=out_w,
            stderr=err,
            cwd=ROOT,
        )
    os.close(out_w)
    try:
        deadline = time.monotonic() + 20
        while _buffered(out_r) < 65536:  # the pipe is full: the client's write blocks
            assert client.poll() is None and time.monotonic() < deadline, errors.read_text()
            time.sleep(0.05)
        time.sleep(0.5)
        began = time.monotonic()
        client.send_signal(sig)
        try:
            status = client.wait(session.HANDSHAKE_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(f"{sig.name} did not end a client whose stdout is blocked")
        took = time.monotonic() - began
    finally:
        if client.poll() is None:
            client.kill()
            client.wait(5)
        os.close(out_r)
    assert status == 128 + sig
    assert took < 5.0, took  # one signal, a bounded grace, then the client closes
    assert "giving up; the command is being stopped" in errors.read_text()


# --- what a terminal shows ----------------------------------------------------------------------


def test_guest_output_on_a_terminal_cannot_write_over_what_was_shown(
    start_agent: Callable[..., AgentProcess],
) -> None:
    """The real client, its stdout and stderr a pseudo-terminal: the bytes the terminal gets."""
    agent = start_agent()
    script = (
        r"printf 'deleted: thesis.odt\rok: nothing was changed\n'; printf '\342\200\256gpj.exe\n'"
    )
    master, slave = os.openpty()
    client = subprocess.Popen(
        [sys.executable, "-c", CHANNEL, "run", "--unix", agent.path, "--", "sh", "-c", script],
        stdin=subprocess.DEVNULL,
        stdout=slave,
        stderr=slave,
        cwd=ROOT,
    )
    os.close(slave)
    shown = b""
    try:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: every slave end is closed
                break
            if not chunk:
                break
            shown += chunk
        assert client.wait(20) == 0
    finally:
        os.close(master)
        if client.poll() is None:
            client.kill()
    # the terminal's own line discipline turns each newline into CR LF (ONLCR)
    assert shown == b"deleted: thesis.odt\r\nok: nothing was changed\r\ngpj.exe\r\n"


# --- the handshake -----------------------------------------------------------------------------


class FakePeer:
    """A Unix socket peer that is not an agent: it sends ``greeting`` (then closes, unless
    ``hold``) and records everything the client sends it."""

    def __init__(self, path: str, greeting: bytes, *, hold: bool = False) -> None:
        self.received = b""
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(path)
        self._server.listen(1)
        self._greeting = greeting
        self._hold = hold
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._server.accept()
        with conn:
            conn.settimeout(10)
            if self._greeting:
                conn.sendall(self._greeting)
            if not self._hold:
                conn.shutdown(socket.SHUT_WR)
            try:
                while chunk := conn.recv(65536):
                    self.received += chunk
            except OSError:
                pass

    def close(self) -> None:
        self._thread.join(15)
        self._server.close()


@pytest.fixture
def peer(short_dir: Path) -> Iterator[Callable[..., FakePeer]]:
    made: list[FakePeer] = []

    def make(greeting: bytes, *, hold: bool = False) -> FakePeer:
        fake = FakePeer(str(short_dir / f"peer{len(made)}.sock"), greeting, hold=hold)
        made.append(fake)
        return fake

    yield make
    for fake in made:
        fake.close()


@pytest.mark.parametrize(
    ("greeting", "hold", "message"),
    [
        (p.encode(p.Stdout(b"$ ")), False, "not a vmsilo agent: it sent STDOUT before HELLO"),
        (p.encode(p.Exit(code=0)), False, "not a vmsilo agent: it sent EXIT before HELLO"),
        (b"SSH-2.0-OpenSSH_9.6\r\n", False, "not a vmsilo agent: unknown message type 83"),
        (b"", False, "closed the connection without an agent handshake"),
        (p.encode(p.Hello(2)), False, "the agent speaks protocol version 2; this client speaks 1"),
        (b"", True, "no agent handshake within 0.5 s"),
    ],
)
def test_a_peer_that_does_not_complete_the_handshake_gets_nothing(
    peer: Callable[..., FakePeer],
    monkeypatch: pytest.MonkeyPatch,
    greeting: bytes,
    hold: bool,
    message: str,
) -> None:
    monkeypatch.setattr(session, "HANDSHAKE_TIMEOUT", 0.5)
    fake = peer(greeting, hold=hold)
    secret_r, secret_w = os.pipe()
    os.write(secret_w, b"my password\n")
    os.close(secret_w)
    try:
        with pytest.raises(ChannelError, match=message):
            run_command(
                UnixAddress(fake._server.getsockname()),
                ["cat"],
                env={"TOKEN": "secret"},
                stdin=secret_r,
                stdout=os.open(os.devnull, os.O_WRONLY),
                interactive=False,
                connect_timeout=5,
            )
    finally:
        os.close(secret_r)
    fake.close()
    assert fake.received == b""  # no command, no environment, no input went to it


# --- the agent's port --------------------------------------------------------------------------


def _bind_as_nobody(port: int) -> int:
    """0 when an unprivileged process could bind vsock ``port``, else the errno."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 0
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
            s.bind((socket.VMADDR_CID_ANY, port))
            s.listen()
        except OSError as err:
            code = err.errno or 255
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _vsock_works() -> bool:
    try:
        socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM).close()
    except (OSError, AttributeError):
        return False
    return True


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become an unprivileged user")
@pytest.mark.skipif(not _vsock_works(), reason="no AF_VSOCK sockets on this kernel")
def test_an_unprivileged_guest_process_cannot_take_the_agents_port() -> None:
    assert facts.AGENT_VSOCK_PORT < 1024
    assert _bind_as_nobody(facts.AGENT_VSOCK_PORT) == errno.EACCES
    assert _bind_as_nobody(5000) == 0  # the port it used to have: anyone could take it


def test_the_agent_refuses_an_unprivileged_port(capsys: pytest.CaptureFixture[str]) -> None:
    assert channel_cli.main(["agent", "--port", "5000", "--user", "nobody"]) == 1
    assert "vsock port must be below 1024, so that only root can listen on it" in (
        capsys.readouterr().err
    )
