"""vmsilo wayland-context against a fake compositor that decodes the wire protocol itself, and
against a real headless weston.

The fake is a Unix socket server in a thread. Its decoder is written here from the protocol
(header: sender id, then size << 16 | opcode; 32-bit arguments; strings with their length
including the NUL, padded to 32 bits; descriptors as SCM_RIGHTS), independent of libwayland's,
so the two cannot agree on a mistake by sharing code. weston (10) has no security contexts, so
against it the tests prove the rest with a real libwayland server: the registry, the refusal,
a real protocol error with its message, and a compositor that goes away.
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypedDict

import pytest
from pywayland.protocol.wayland import WlCompositor

from vmsilo_nix import sd_notify
from vmsilo_nix.errors import VmsiloError
from vmsilo_nix.wayland_context import DEFAULT_TIMEOUT, cli
from vmsilo_nix.wayland_context.compositor import (
    Compositor,
    CompositorClosedError,
    NoCompositorError,
    UnsupportedCompositorError,
    WaylandError,
    WaylandProtocolError,
)
from vmsilo_nix.wayland_context.registration import SocketPathError, register

ROOT = Path(__file__).resolve().parent.parent
WAIT = 10.0  # upper bound of every wait in these tests
MANAGER = "wp_security_context_manager_v1"
CONTEXT = "wp_security_context_v1"


def u32(value: int) -> bytes:
    return struct.pack("=I", value)


def wire_string(text: str) -> bytes:
    raw = text.encode() + b"\0"
    return u32(len(raw)) + raw + bytes(-len(raw) % 4)


def message(sender: int, opcode: int, payload: bytes = b"") -> bytes:
    return struct.pack("=II", sender, (8 + len(payload)) << 16 | opcode) + payload


class Body:
    """The fake's own argument decoder; it insists on well-formed strings."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def uint(self) -> int:
        assert self.pos + 4 <= len(self.data), "argument past the end of the message"
        (value,) = struct.unpack_from("=I", self.data, self.pos)
        self.pos += 4
        return int(value)

    def string(self) -> str:
        length = self.uint()
        assert length > 0, "null string"
        padded = (length + 3) & ~3
        raw = self.data[self.pos : self.pos + padded]
        assert len(raw) == padded, "string past the end of the message"
        assert raw[length - 1] == 0, "string without its NUL"
        assert not any(raw[length:]), "padding is not zero"
        self.pos += padded
        return raw[: length - 1].decode()

    def end(self) -> None:
        assert self.pos == len(self.data), "trailing bytes in the message"


class FakeCompositor:
    """Serves one client: the registry, sync, and the security context protocol.

    ``fail_on``: (interface, opcode, code): that request is answered with wl_display.error.
    ``hang_up_after``: close the connection after answering this many syncs.
    """

    def __init__(
        self,
        *,
        offer_manager: bool = True,
        fail_on: tuple[str, int, int] | None = None,
        hang_up_after: int | None = None,
        watch_path: Path | None = None,
    ) -> None:
        self.globals = {1: ("wl_compositor", 6), 2: ("wl_shm", 1)}
        if offer_manager:
            self.globals[7] = (MANAGER, 1)
        self.fail_on = fail_on
        self.hang_up_after = hang_up_after
        self.watch_path = watch_path
        self.objects: dict[int, str] = {1: "wl_display"}
        self.requests: list[tuple[str, int]] = []
        self.new_ids: list[tuple[str, int]] = []
        self.bound: list[tuple[int, str, int]] = []
        self.metadata: dict[str, str] = {}
        self.committed = threading.Event()
        self.finished = threading.Event()
        self.listen_fd: int | None = None
        self.close_fd: int | None = None
        self.path_existed_at_create: bool | None = None
        self.failure: BaseException | None = None
        self.syncs = 0
        self._out = bytearray()  # events queued by the request being handled
        self._stop = threading.Event()
        self._server: socket.socket | None = None
        self._conn: socket.socket | None = None
        self._thread: threading.Thread | None = None

    # -- running

    def listen_at(self, path: Path) -> None:
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(1)
        self._server.settimeout(WAIT)
        self._start()

    def serve_connected(self, conn: socket.socket) -> None:
        self._conn = conn
        self._start()

    def _start(self) -> None:
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            if self._conn is None:
                assert self._server is not None
                self._conn, _ = self._server.accept()
            self._conn.settimeout(0.05)
            self._loop(self._conn)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up while we answered: the tests check what it got
        except BaseException as e:
            self.failure = e
        finally:
            self.finished.set()

    def _loop(self, conn: socket.socket) -> None:
        buf = b""
        fds: list[int] = []
        while not self._stop.is_set():
            try:
                data, new_fds, _flags, _addr = socket.recv_fds(conn, 4096, 8)
            except TimeoutError:
                continue
            fds.extend(new_fds)
            if not data:
                return  # the client hung up
            buf += data
            while len(buf) >= 8:
                sender, word = struct.unpack_from("=II", buf)
                size, opcode = word >> 16, word & 0xFFFF
                assert size >= 8 and size % 4 == 0, f"bad message size {size}"
                if len(buf) < size:
                    break
                body, buf = Body(buf[8:size]), buf[size:]
                keep = self._handle(sender, opcode, body, fds)
                # Like libwayland, the events a request causes leave in one write.
                conn.sendall(bytes(self._out))
                self._out.clear()
                if not keep:
                    conn.close()
                    return

    def _new(self, oid: int, interface: str) -> None:
        # A real server kills a client that reuses a live id: ids come back only via delete_id.
        assert oid not in self.objects, f"id {oid} reused before delete_id"
        self.objects[oid] = interface
        self.new_ids.append((interface, oid))

    def _delete(self, oid: int) -> None:
        del self.objects[oid]
        self._out += message(1, 1, u32(oid))  # wl_display.delete_id

    def _handle(self, sender: int, opcode: int, body: Body, fds: list[int]) -> bool:
        """Handle one request, queueing the events it causes; False to drop the client."""
        interface = self.objects[sender]
        self.requests.append((interface, opcode))
        if self.fail_on is not None and (interface, opcode) == self.fail_on[:2]:
            code = self.fail_on[2]
            self._out += message(1, 0, u32(sender) + u32(code) + wire_string("rejected by test"))
            return False
        if interface == "wl_display" and opcode == 0:  # sync
            callback = body.uint()
            body.end()
            self._new(callback, "wl_callback")
            self.syncs += 1
            self._out += message(callback, 0, u32(1000 + self.syncs))  # wl_callback.done
            self._delete(callback)
            if self.hang_up_after is not None and self.syncs >= self.hang_up_after:
                return False
        elif interface == "wl_display" and opcode == 1:  # get_registry
            registry = body.uint()
            body.end()
            self._new(registry, "wl_registry")
            for name, (iface, version) in self.globals.items():
                self._out += message(registry, 0, u32(name) + wire_string(iface) + u32(version))
        elif interface == "wl_registry" and opcode == 0:  # bind, untyped new_id
            name, iface, version, oid = body.uint(), body.string(), body.uint(), body.uint()
            body.end()
            assert self.globals[name][0] == iface, "bound a name under another interface"
            assert 1 <= version <= self.globals[name][1]
            self._new(oid, iface)
            self.bound.append((name, iface, version))
        elif interface == MANAGER and opcode == 1:  # create_listener
            oid = body.uint()
            body.end()
            assert len(fds) >= 2, "create_listener arrived without its two descriptors"
            self.listen_fd, self.close_fd = fds.pop(0), fds.pop(0)
            if self.watch_path is not None:
                self.path_existed_at_create = os.path.lexists(self.watch_path)
            self._new(oid, CONTEXT)
        elif interface in (MANAGER, CONTEXT) and opcode == 0:  # destroy
            body.end()
            self._delete(sender)
        elif interface == CONTEXT and opcode in (1, 2, 3):
            key = {1: "engine", 2: "app_id", 3: "instance_id"}[opcode]
            assert key not in self.metadata, f"{key} set twice"
            assert not self.committed.is_set(), f"{key} set after commit"
            self.metadata[key] = body.string()
            body.end()
        elif interface == CONTEXT and opcode == 4:  # commit
            body.end()
            assert not self.committed.is_set(), "committed twice"
            self.committed.set()
        else:
            raise AssertionError(f"unexpected request {interface}#{sender} opcode {opcode}")
        return True

    # -- what the tests look at

    def listener(self) -> socket.socket:
        """The received listening descriptor, as a socket of our own (a dup)."""
        assert self.listen_fd is not None, "no create_listener received"
        sock = socket.socket(fileno=os.dup(self.listen_fd))
        sock.settimeout(WAIT)
        return sock

    def close_fd_hung_up(self, timeout: float = WAIT) -> bool:
        """Whether the close pipe's write end is gone: readable, and reading gives EOF."""
        assert self.close_fd is not None
        poller = select.poll()
        poller.register(self.close_fd, select.POLLIN)
        if not poller.poll(int(timeout * 1000)):
            return False
        return os.read(self.close_fd, 1) == b""

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(WAIT)
            assert not self._thread.is_alive(), "the fake compositor did not stop"
        for sock in (self._server, self._conn):
            if sock is not None:
                sock.close()
        for fd in (self.listen_fd, self.close_fd):
            if fd is not None:
                os.close(fd)
        if self.failure is not None:
            raise AssertionError(f"fake compositor: {self.failure!r}") from self.failure


@pytest.fixture
def compositor(tmp_path: Path) -> Iterator[Callable[..., FakeCompositor]]:
    """Start fake compositors listening at tmp_path/wayland-N; stopped (and checked) after."""
    started: list[FakeCompositor] = []

    def start(**options: object) -> FakeCompositor:
        fake = FakeCompositor(**options)  # type: ignore[arg-type]
        fake.listen_at(tmp_path / f"wayland-{len(started)}")
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.stop()


@pytest.fixture
def vm_dir(tmp_path: Path) -> Path:
    path = tmp_path / "run" / "banking"
    path.mkdir(parents=True)
    return path


@pytest.fixture(autouse=True)
def no_session(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests never reach a real desktop session by accident."""
    for name in ("WAYLAND_DISPLAY", "WAYLAND_SOCKET", "NOTIFY_SOCKET"):
        monkeypatch.delenv(name, raising=False)


def display_of(tmp_path: Path, index: int = 0) -> str:
    return str(tmp_path / f"wayland-{index}")


class Identity(TypedDict):
    engine: str
    app_id: str
    instance_id: str


IDENTITY: Identity = {
    "engine": "org.vmsilo",
    "app_id": "banking",
    "instance_id": "banking #2e7d32",
}


def test_registers_the_socket_under_the_context(
    compositor: Callable[..., FakeCompositor], tmp_path: Path, vm_dir: Path
) -> None:
    sock_path = vm_dir / "wayland.sock"
    fake = compositor(watch_path=sock_path)
    reg = register(str(sock_path), display=display_of(tmp_path), timeout=WAIT, **IDENTITY)
    try:
        assert fake.metadata == IDENTITY
        assert fake.committed.is_set()
        assert fake.bound == [(7, MANAGER, 1)]
        assert fake.requests == [
            ("wl_display", 1),  # get_registry
            ("wl_display", 0),  # sync
            ("wl_registry", 0),  # bind
            (MANAGER, 1),  # create_listener
            (CONTEXT, 1),  # set_sandbox_engine
            (CONTEXT, 2),  # set_app_id
            (CONTEXT, 3),  # set_instance_id
            (CONTEXT, 4),  # commit
            ("wl_display", 0),  # sync: a protocol error still names the context
            (CONTEXT, 0),  # destroy
            (MANAGER, 0),  # destroy
            ("wl_display", 0),  # sync
        ]
        # The first callback's id came back with delete_id and was reused; live ids never were.
        assert fake.new_ids[:3] == [("wl_registry", 2), ("wl_callback", 3), (MANAGER, 3)]
        # The path appears only once the compositor has the registration.
        assert fake.path_existed_at_create is False
        st = os.lstat(sock_path)
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert [p.name for p in vm_dir.iterdir()] == ["wayland.sock"]

        # The descriptor the compositor got is the listening socket at that path.
        with fake.listener() as listener:
            assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as guest:
                guest.settimeout(WAIT)
                guest.connect(str(sock_path))
                accepted, _ = listener.accept()
                with accepted:
                    guest.sendall(b"hello")
                    accepted.settimeout(WAIT)
                    assert accepted.recv(5) == b"hello"
        # While registered, the compositor's close_fd stays quiet.
        assert not fake.close_fd_hung_up(timeout=0.05)
    finally:
        reg.close()
    assert fake.close_fd_hung_up()
    assert not sock_path.exists()
    reg.close()  # idempotent


def test_display_name_under_xdg_runtime_dir(
    compositor: Callable[..., FakeCompositor],
    tmp_path: Path,
    vm_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = compositor()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    with register(str(vm_dir / "wayland.sock"), timeout=WAIT, **IDENTITY) as reg:
        assert reg.connection.where == str(tmp_path / "wayland-0")
        assert fake.metadata == IDENTITY
    assert fake.close_fd_hung_up()


def test_inherited_wayland_socket(vm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    fake = FakeCompositor()
    fake.serve_connected(theirs)
    try:
        monkeypatch.setenv("WAYLAND_SOCKET", str(ours.detach()))
        with register(str(vm_dir / "wayland.sock"), timeout=WAIT, **IDENTITY) as reg:
            assert reg.connection.where == "WAYLAND_SOCKET"
            assert "WAYLAND_SOCKET" not in os.environ  # taken, as libwayland does
            assert fake.metadata == IDENTITY
    finally:
        fake.stop()


def test_compositor_without_security_contexts(
    compositor: Callable[..., FakeCompositor], tmp_path: Path, vm_dir: Path
) -> None:
    compositor(offer_manager=False)
    with pytest.raises(UnsupportedCompositorError) as info:
        register(
            str(vm_dir / "wayland.sock"), display=display_of(tmp_path), timeout=WAIT, **IDENTITY
        )
    text = str(info.value)
    assert "does not offer wp_security_context_manager_v1" in text
    assert "sway" in text
    assert "\n" not in text
    assert list(vm_dir.iterdir()) == []


def test_protocol_error_is_reported(
    compositor: Callable[..., FakeCompositor],
    tmp_path: Path,
    vm_dir: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    compositor(fail_on=(CONTEXT, 4, 3))
    with pytest.raises(WaylandProtocolError) as info:
        register(
            str(vm_dir / "wayland.sock"), display=display_of(tmp_path), timeout=WAIT, **IDENTITY
        )
    err = info.value
    assert (err.interface, err.code, err.message) == (CONTEXT, 3, "rejected by test")
    assert str(err) == (
        f"the compositor rejected a request on {CONTEXT}#{err.object_id} with protocol error "
        "invalid_metadata (3): rejected by test"
    )
    assert list(vm_dir.iterdir()) == []  # neither the socket nor its temporary name is left
    assert capfd.readouterr().err == ""  # libwayland's own line about it is kept back


def test_nested_error_explains(
    compositor: Callable[..., FakeCompositor], tmp_path: Path, vm_dir: Path
) -> None:
    compositor(fail_on=(MANAGER, 1, 2))
    with pytest.raises(WaylandProtocolError, match=r"nested \(2\).*itself inside a security"):
        register(
            str(vm_dir / "wayland.sock"), display=display_of(tmp_path), timeout=WAIT, **IDENTITY
        )
    assert list(vm_dir.iterdir()) == []


def test_no_display(vm_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(NoCompositorError, match="WAYLAND_DISPLAY is not set"):
        register(str(vm_dir / "wayland.sock"), **IDENTITY)
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-1")
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    with pytest.raises(NoCompositorError, match="XDG_RUNTIME_DIR is not set"):
        register(str(vm_dir / "wayland.sock"), **IDENTITY)


def test_nothing_listening_at_the_display(tmp_path: Path, vm_dir: Path) -> None:
    missing = tmp_path / "wayland-9"
    with pytest.raises(NoCompositorError) as info:
        register(str(vm_dir / "wayland.sock"), display=str(missing), **IDENTITY)
    assert (
        str(info.value) == f"cannot connect to the Wayland compositor at {missing}: no such socket"
    )
    assert isinstance(info.value, VmsiloError)


def test_stale_socket_is_replaced(
    compositor: Callable[..., FakeCompositor], tmp_path: Path, vm_dir: Path
) -> None:
    sock_path = vm_dir / "wayland.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as old:
        old.bind(str(sock_path))  # left behind by a registrar that died
    os.chmod(sock_path, 0o666)
    fake = compositor()
    with register(str(sock_path), display=display_of(tmp_path), timeout=WAIT, **IDENTITY):
        assert stat.S_IMODE(os.lstat(sock_path).st_mode) == 0o600
        # Connecting to the path now reaches the compositor's listener, not a dead socket.
        with fake.listener() as listener, socket.socket(socket.AF_UNIX) as guest:
            guest.settimeout(WAIT)
            guest.connect(str(sock_path))
            listener.accept()[0].close()
    assert not sock_path.exists()


def test_regular_file_is_refused(vm_dir: Path) -> None:
    path = vm_dir / "wayland.sock"
    path.write_text("precious")
    # Refused before any compositor is asked (there is none at this display).
    with pytest.raises(SocketPathError) as info:
        register(str(path), display=str(vm_dir / "no-compositor"), **IDENTITY)
    assert str(info.value) == f"refusing to replace {path}: it exists and is not a socket"
    assert path.read_text() == "precious"


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SocketPathError, match="is not a directory"):
        register(str(tmp_path / "nope" / "wayland.sock"), **IDENTITY)


@pytest.mark.parametrize("field", ["engine", "app_id", "instance_id"])
def test_metadata_is_checked_before_connecting(vm_dir: Path, field: str) -> None:
    for value, complaint in (("", "must not be empty"), ("a\0b", "NUL"), ("x" * 2000, "long")):
        bad = {"engine": "org.vmsilo", "app_id": "banking", "instance_id": "b #000000"}
        bad[field] = value
        with pytest.raises(WaylandError, match=complaint):
            register(
                str(vm_dir / "wayland.sock"),
                engine=bad["engine"],
                app_id=bad["app_id"],
                instance_id=bad["instance_id"],
            )


def test_the_vmsilo_command_does_not_load_libwayland() -> None:
    """Only running wayland-context loads it: every other subcommand starts without its cost."""
    code = (
        "import sys, vmsilo_nix.cli.app; "
        "print([m for m in sys.modules if m.split('.')[0] in ('pywayland', '_cffi_backend')])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_notify_ready(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(str(tmp_path / "notify"))
        systemd.settimeout(WAIT)
        monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
        sd_notify.notify_ready()
        assert systemd.recv(64) == b"READY=1"


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_arguments() -> None:
    args = parse(["--socket", "/s", "--app-id", "a", "--instance-id", "a #000000"])
    assert (args.socket, args.app_id, args.instance_id) == ("/s", "a", "a #000000")
    assert (args.engine, args.display, args.timeout) == ("org.vmsilo", None, DEFAULT_TIMEOUT)


def test_serve_ends_when_the_compositor_hangs_up(
    compositor: Callable[..., FakeCompositor], tmp_path: Path, vm_dir: Path
) -> None:
    sock_path = vm_dir / "wayland.sock"
    fake = compositor(hang_up_after=3)  # right after answering the registration's last sync
    # A safety net: should serve miss the hang-up, SIGTERM ends it and the test fails.
    timer = threading.Timer(WAIT, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with pytest.raises(CompositorClosedError, match="closed the connection"):
            cli.run(
                parse(
                    [
                        *("--socket", str(sock_path), "--app-id", "banking"),
                        *("--instance-id", "banking #2e7d32", "--display", display_of(tmp_path)),
                    ]
                )
            )
    finally:
        timer.cancel()
    assert signal.getsignal(signal.SIGTERM) == previous  # handlers restored
    assert fake.close_fd_hung_up()
    assert not sock_path.exists()


SERVE = """
import argparse, sys
from vmsilo_nix.wayland_context import cli
from vmsilo_nix.errors import VmsiloError
parser = argparse.ArgumentParser()
cli.add_arguments(parser)
try:
    sys.exit(cli.run(parser.parse_args(sys.argv[1:])))
except VmsiloError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
"""


def test_serve_in_a_process_stops_on_sigterm(
    compositor: Callable[..., FakeCompositor], tmp_path: Path, vm_dir: Path
) -> None:
    sock_path = vm_dir / "wayland.sock"
    fake = compositor()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WAYLAND_DISPLAY": display_of(tmp_path)}
    argv = [sys.executable, "-c", SERVE, "--socket", str(sock_path)]
    argv += ["--app-id", "banking", "--instance-id", "banking #2e7d32"]
    proc = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + WAIT
        while not sock_path.exists():
            assert proc.poll() is None, f"serve exited early: {proc.communicate()[1]}"
            assert time.monotonic() < deadline, "the socket never appeared"
            time.sleep(0.02)
        assert fake.metadata == IDENTITY
        assert not fake.close_fd_hung_up(timeout=0.05)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT)
    assert proc.returncode == 0, err
    assert "is served by the compositor" in err
    assert fake.close_fd_hung_up()
    assert not sock_path.exists()
    assert fake.finished.wait(WAIT)  # the process also closed its compositor connection


# -- a real compositor: headless weston


@pytest.fixture
def weston(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A headless weston on a socket of its own; yields (the socket's path, the process)."""
    program = shutil.which("weston")
    if program is None:
        pytest.skip("weston is not installed (Debian: apt-get install weston)")
    runtime = tmp_path / "xdg"
    runtime.mkdir(mode=0o700)
    path = runtime / "wayland-h9"
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}
    env.pop("WAYLAND_DISPLAY", None)
    env.pop("DISPLAY", None)
    argv = [program, "--backend=headless-backend.so", "--shell=fullscreen-shell.so"]
    argv += ["--no-config", "--idle-time=0", f"--socket={path.name}"]
    log = tmp_path / "weston.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + WAIT
        while not path.exists():
            assert proc.poll() is None, f"weston exited early: {log.read_text()}"
            assert time.monotonic() < deadline, f"weston never listened: {log.read_text()}"
            time.sleep(0.02)
        yield str(path), proc
    finally:
        proc.terminate()
        try:
            proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(WAIT)


def test_weston_lists_its_globals_and_is_refused(
    weston: tuple[str, subprocess.Popen[bytes]], vm_dir: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    display, _ = weston
    conn = Compositor(display, timeout=WAIT)
    try:
        conn.roundtrip()
        interfaces = {iface for iface, _version in conn.globals.values()}
        assert {"wl_compositor", "wl_shm", "wl_output", "zwp_fullscreen_shell_v1"} <= interfaces
        assert conn.find_global(MANAGER) is None
    finally:
        conn.close()
    with pytest.raises(UnsupportedCompositorError, match=f"at {display} does not offer {MANAGER}"):
        register(str(vm_dir / "wayland.sock"), display=display, timeout=WAIT, **IDENTITY)
    assert list(vm_dir.iterdir()) == []
    assert capfd.readouterr().err == ""  # libwayland printed nothing of its own


def test_weston_protocol_error_names_object_and_message(
    weston: tuple[str, subprocess.Popen[bytes]], capfd: pytest.CaptureFixture[str]
) -> None:
    """A real libwayland server's error: binding a global at a version it does not have."""
    display, _ = weston
    conn = Compositor(display, timeout=WAIT)
    try:
        conn.roundtrip()
        found = conn.find_global("wl_compositor")
        assert found is not None
        name, version = found
        conn.registry.bind(name, WlCompositor, version + 1)
        with pytest.raises(WaylandProtocolError) as info:
            conn.roundtrip()
    finally:
        conn.close()
    err = info.value
    assert (err.interface, err.object_id, err.code) == ("wl_registry", 2, 0)
    assert err.message == (
        f"invalid version for global wl_compositor ({name}): have {version}, wanted {version + 1}"
    )
    assert str(err).startswith(
        "the compositor rejected a request on wl_registry#2 with protocol error "
        "0: invalid version for global wl_compositor"
    )
    assert capfd.readouterr().err == ""


def test_weston_going_away_ends_the_connection(
    weston: tuple[str, subprocess.Popen[bytes]],
) -> None:
    display, proc = weston
    conn = Compositor(display, timeout=WAIT)
    try:
        conn.roundtrip()
        proc.terminate()
        proc.wait(WAIT)
        deadline = time.monotonic() + WAIT
        while conn.dispatch(WAIT):
            assert time.monotonic() < deadline, "the hang-up was never noticed"
        failure = conn.failure()
    finally:
        conn.close()
    assert isinstance(failure, CompositorClosedError)
    assert str(failure) == f"the compositor at {display} closed the connection"


def test_wayland_context_command_against_weston(
    weston: tuple[str, subprocess.Popen[bytes]], vm_dir: Path
) -> None:
    """The whole command, as a proxy script runs it: one line of error, nothing left behind."""
    display, _ = weston
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WAYLAND_DISPLAY": display}
    argv = [sys.executable, "-c", SERVE, "--socket", str(vm_dir / "wayland.sock")]
    argv += ["--app-id", "banking", "--instance-id", "banking #2e7d32"]
    done = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=WAIT * 3, check=False
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == (
        f"error: the compositor at {display} does not offer {MANAGER} (Wayland security "
        "contexts), which vmsilo needs to label VM windows; recent sway, Hyprland and KWin "
        "(Plasma 6) offer it, though not to clients that are themselves sandboxed\n"
    )
    assert list(vm_dir.iterdir()) == []
