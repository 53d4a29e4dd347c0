"""One command over a connected socket, the host's end of the protocol: START, then the
command's input, signals and sizes out and its output in, until EXIT.

The guest is not trusted. Every frame is bounded by the protocol, and output bound for a
terminal can go through :class:`~vmsilo_nix.channel.terminal.TerminalFilter`.
"""

from __future__ import annotations

import collections
import contextlib
import os
import select
import signal
import socket
import threading
import time

from vmsilo_nix.channel.protocol import (
    FROM_AGENT,
    MAX_PAYLOAD,
    SIGNALS,
    VERSION,
    ChannelError,
    Error,
    Exit,
    FrameReader,
    Hello,
    Message,
    MessageType,
    ProtocolError,
    Resize,
    Signal,
    Start,
    Stderr,
    StdinEof,
    Stdout,
    encode,
    frame,
)
from vmsilo_nix.channel.terminal import TerminalFilter, neutralise

#: The channel's own failures end a client with this status, as ssh does, so that they cannot
#: be mistaken for the command's.
EXIT_CHANNEL = 255
READ_SIZE = 64 * 1024
#: How long the agent may take to say HELLO once connected (it does so on accepting).
HANDSHAKE_TIMEOUT = 10.0


class OutputAbandoned(Exception):
    """Raised by a signal handler into a write to our own stdout or stderr that nobody reads,
    so that giving up does not wait for it (``Session.writing`` says when one is under way)."""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        view = view[written:]


class _Sink:
    """Where the command's stdout or stderr goes, filtered or not."""

    def __init__(self, fd: int, *, filtered: bool) -> None:
        self.fd = fd
        self.filter = TerminalFilter() if filtered else None

    def write(self, data: bytes) -> None:
        _write_all(self.fd, self.filter.feed(data) if self.filter else data)

    def flush(self) -> None:
        if self.filter:
            _write_all(self.fd, self.filter.flush())


class _Outbox:
    """Frames waiting for the writer thread: control frames (signals, sizes) go before data,
    data (STDIN, STDIN_EOF) keeps its order and is bounded, so a command that does not read its
    input slows the reader of ours down instead of filling memory.

    The lock is reentrant because signal handlers add frames from the main thread.
    """

    MAX_DATA = 4

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._cond = threading.Condition(threading.RLock())
        self._control: collections.deque[bytes] = collections.deque()
        self._data: collections.deque[bytes] = collections.deque()
        self.closed = False

    def control(self, data: bytes) -> None:
        with self._cond:
            if not self.closed:
                self._control.append(data)
                self._cond.notify_all()

    def data(self, data: bytes) -> bool:
        """Queue ``data``, waiting while the queue is full; False once closed."""
        with self._cond:
            while len(self._data) >= self.MAX_DATA and not self.closed:
                self._cond.wait()
            if self.closed:
                return False
            self._data.append(data)
            self._cond.notify_all()
            return True

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def run(self) -> None:
        while True:
            with self._cond:
                while not (self._control or self._data or self.closed):
                    self._cond.wait()
                if self.closed:
                    return
                item = self._control.popleft() if self._control else self._data.popleft()
                self._cond.notify_all()
            try:
                self._sock.sendall(item)
            except OSError:
                self.close()
                return


class Session:
    """One command over a connected socket. :meth:`run` blocks until the command ends;
    :meth:`send_signal`, :meth:`resize` and :meth:`abort` may be called meanwhile from other
    threads or signal handlers."""

    def __init__(
        self,
        sock: socket.socket,
        start: Start,
        *,
        stdin: int | None,
        stdout: int,
        stderr: int,
        filter_stdout: bool = False,
        filter_stderr: bool = False,
    ) -> None:
        self.sock = sock
        self.start = start
        self.stdin = stdin
        self.stdout = _Sink(stdout, filtered=filter_stdout)
        self.stderr = _Sink(stderr, filtered=filter_stderr)
        self.outbox = _Outbox(sock)
        self.aborted: int | None = None
        #: True while the main thread is in a write to stdout or stderr, which blocks for as
        #: long as nobody reads them (a pipe nobody reads, a terminal stopped with Ctrl-S).
        self.writing = False
        self._frames = FrameReader(FROM_AGENT)
        self._wake_r, self._wake_w = os.pipe()

    def send_signal(self, name: str) -> None:
        if name not in SIGNALS:
            raise ValueError(f"{name} is not a signal the channel forwards")
        self.outbox.control(encode(Signal(name)))

    def resize(self, rows: int, cols: int) -> None:
        self.outbox.control(encode(Resize(rows, cols)))

    def abort(self, status: int) -> None:
        """Give up: close the connection (the agent then stops the command); run() returns
        ``status``."""
        self.aborted = status
        self.outbox.close()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)

    def run(self) -> int:
        writer = threading.Thread(target=self.outbox.run, name="channel writer", daemon=True)
        reader: threading.Thread | None = None
        try:
            # Nothing, not even the command, goes to a peer that has not said HELLO.
            pending = self._handshake()
            if pending is None:
                return self.aborted if self.aborted is not None else EXIT_CHANNEL
            self.outbox.control(encode(self.start))
            writer.start()
            if self.stdin is None:
                self.outbox.data(encode(StdinEof()))
            else:
                reader = threading.Thread(
                    target=self._pump_stdin, name="channel stdin", daemon=True
                )
                reader.start()
            return self._receive(pending)
        except BrokenPipeError:
            # Our stdout is gone (``vm-run vm cmd | head``): stop the command, as SIGPIPE would.
            self.abort(128 + signal.SIGPIPE)
            return 128 + signal.SIGPIPE
        except OutputAbandoned:
            return self.aborted if self.aborted is not None else EXIT_CHANNEL
        finally:
            self.writing = False
            self.outbox.close()
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
            os.write(self._wake_w, b"x")
            if writer.is_alive():
                writer.join(5.0)
            if reader is not None:
                reader.join(5.0)
            self.sock.close()
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _handshake(self) -> list[Message] | None:
        """Wait (bounded) for the agent's HELLO; the messages that came after it, or None when
        aborted meanwhile. Anything else first means the peer is not an agent."""
        deadline = time.monotonic() + HANDSHAKE_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            try:
                if left <= 0:
                    raise TimeoutError
                self.sock.settimeout(left)
                data = self.sock.recv(READ_SIZE)
            except TimeoutError:
                raise ChannelError(
                    f"no agent handshake within {HANDSHAKE_TIMEOUT:g} s: is a vmsilo agent "
                    "listening there?"
                ) from None
            except OSError as err:
                if self.aborted is not None:
                    return None
                raise ChannelError(f"the connection to the agent broke: {err.strerror}") from err
            if not data:
                if self.aborted is not None:
                    return None
                raise ChannelError("the peer closed the connection without an agent handshake")
            try:
                messages = self._frames.feed(data)
            except ProtocolError as err:
                raise ChannelError(f"the peer is not a vmsilo agent: {err}") from None
            if not messages:
                continue
            first, *rest = messages
            if not isinstance(first, Hello):
                raise ChannelError(
                    f"the peer is not a vmsilo agent: it sent {type(first).__name__.upper()} "
                    "before HELLO"
                )
            if first.version != VERSION:
                raise ChannelError(
                    f"the agent speaks protocol version {first.version}; this client speaks "
                    f"{VERSION} (update the guest or the host)"
                )
            self.sock.settimeout(None)
            return rest

    def _deliver(self, sink: _Sink, chunk: bytes) -> None:
        self.writing = True
        try:
            sink.write(chunk)
        finally:
            self.writing = False

    def _receive(self, pending: list[Message]) -> int:
        for message in pending:
            status = self._handle(message)
            if status is not None:
                return status
        while True:
            try:
                data = self.sock.recv(READ_SIZE)
            except OSError as err:
                if self.aborted is not None:
                    return self.aborted
                raise ChannelError(f"the connection to the agent broke: {err.strerror}") from err
            if not data:
                if self.aborted is not None:
                    return self.aborted
                raise ChannelError("the agent closed the connection before the command ended")
            for message in self._frames.feed(data):
                status = self._handle(message)
                if status is not None:
                    return status

    def _handle(self, message: Message) -> int | None:
        """Act on one message from the agent; the command's status once it has ended."""
        match message:
            case Stdout(chunk):
                self._deliver(self.stdout, chunk)
            case Stderr(chunk):
                self._deliver(self.stderr, chunk)
            case Exit():
                self.writing = True
                try:
                    self.stdout.flush()
                    self.stderr.flush()
                finally:
                    self.writing = False
                return message.status
            case Error(text):
                raise ChannelError(f"the agent refused: {neutralise(text)}")
            case Hello():
                raise ProtocolError("HELLO twice")
        return None

    def _pump_stdin(self) -> None:
        assert self.stdin is not None
        while True:
            try:
                ready, _, _ = select.select([self.stdin, self._wake_r], [], [])
            except (OSError, ValueError):
                ready = [self.stdin]  # then read() fails too, which ends the input
            if self._wake_r in ready:
                return
            try:
                data = os.read(self.stdin, MAX_PAYLOAD)
            except BlockingIOError:
                continue
            except OSError:
                data = b""  # a terminal that went away ends the input
            if not data:
                self.outbox.data(encode(StdinEof()))
                return
            if not self.outbox.data(frame(MessageType.STDIN, data)):
                return
