"""The host side of the channel: ``vmsilo channel run`` and ``vmsilo channel shell``.

A client connects to the guest's agent, sends START and then, concurrently: forwards its
standard input (STDIN frames, STDIN_EOF at its end), forwards SIGINT, SIGTERM and SIGHUP as
SIGNAL frames (a third one gives up: the connection closes and the agent kills the command),
and, for a shell, puts the terminal in raw mode and forwards size changes; meanwhile it writes
STDOUT and STDERR to its own, and ends with the status of EXIT (128 + N for signal N).

The guest is not trusted. Every frame is bounded by the protocol. For ``run``, output bound for
a terminal goes through :class:`TerminalFilter`, which removes escape sequences and control
characters, so a guest cannot retitle the window, rewrite the screen, move the cursor over
earlier text or talk to the terminal's more dangerous features; output to a pipe or a file
passes unchanged, since scripts need the exact bytes. A shell's output is not filtered: the
user asked for the guest's terminal.

The channel's own failures (no agent, broken connection, a protocol violation) end the client
with status 255, as ssh does, so they cannot be mistaken for the command's status.
"""

from __future__ import annotations

import argparse
import codecs
import collections
import contextlib
import os
import re
import select
import signal
import socket
import sys
import termios
import threading
import tty
from collections.abc import Iterator, Mapping, Sequence
from types import FrameType
from typing import Any

from vmsilo_nix.channel.protocol import (
    FROM_AGENT,
    MAX_PAYLOAD,
    SIGNALS,
    ChannelError,
    Error,
    Exit,
    FrameReader,
    MessageType,
    Resize,
    Signal,
    Start,
    Stderr,
    StdinEof,
    Stdout,
    encode,
    env_items,
    frame,
)
from vmsilo_nix.channel.transport import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_PORT,
    Address,
    UnixAddress,
    VsockAddress,
)
from vmsilo_nix.channel.transport import connect as connect_to

EXIT_CHANNEL = 255
#: Signals forwarded to the command; after this many the client gives up waiting.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
GIVE_UP_AFTER = 3
#: Host variables a shell takes along (the guest's own session provides the rest).
TTY_ENV = ("TERM", "COLORTERM")
READ_SIZE = 64 * 1024


# --- terminal output of an untrusted guest --------------------------------------------------

_TEXT, _ESC, _CSI, _ESC_INTERMEDIATE, _STRING, _STRING_ESC = range(6)
#: Longest escape sequence followed; a longer one is abandoned (what remains prints as text).
MAX_SEQUENCE = 4096
# Everything but TAB, LF and CR among C0, DEL and C1.
_SPECIAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_C1_STRINGS = frozenset("\x90\x98\x9d\x9e\x9f")  # DCS, SOS, OSC, PM, APC
_STRING_STARTS = frozenset("]PX^_")  # their 7-bit forms after ESC


class TerminalFilter:
    """Makes a byte stream safe to show on a terminal, chunk by chunk.

    The stream is decoded as UTF-8 (invalid bytes become U+FFFD). Escape sequences (ESC and
    C1 introduced: CSI, OSC, DCS, SOS, PM, APC and the short ones) are removed whole, with
    their parameters and strings; other control characters are removed, except tab, newline
    and carriage return. The result is the same however the stream is split into chunks.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._state = _TEXT
        self._length = 0

    def feed(self, data: bytes) -> bytes:
        return self._filter(self._decoder.decode(data)).encode()

    def flush(self) -> bytes:
        """The end of the stream: what an incomplete UTF-8 sequence at the end becomes."""
        text = self._filter(self._decoder.decode(b"", True))
        self._state = _TEXT
        return text.encode()

    def _enter(self, state: int) -> None:
        self._state = state
        self._length = 0

    def _filter(self, text: str) -> str:
        out: list[str] = []
        i, n = 0, len(text)
        while i < n:
            if self._state == _TEXT:
                match = _SPECIAL.search(text, i)
                if match is None:
                    out.append(text[i:])
                    break
                out.append(text[i : match.start()])
                ch = text[match.start()]
                i = match.start() + 1
                if ch == "\x1b":
                    self._enter(_ESC)
                elif ch == "\x9b":
                    self._enter(_CSI)
                elif ch in _C1_STRINGS:
                    self._enter(_STRING)
                continue  # any other control character is dropped
            ch = text[i]
            i += 1
            self._length += 1
            if self._length > MAX_SEQUENCE:
                self._enter(_TEXT)
                continue
            code = ord(ch)
            if self._state == _ESC:
                if ch == "[":
                    self._enter(_CSI)
                elif ch in _STRING_STARTS:
                    self._enter(_STRING)
                elif 0x20 <= code <= 0x2F:
                    self._state = _ESC_INTERMEDIATE
                elif 0x30 <= code <= 0x7E or ch == "\x1b":
                    self._state = _TEXT if ch != "\x1b" else _ESC
                else:
                    self._state = _TEXT
                    i -= 1  # not a sequence: look at this character again as text
            elif self._state in (_CSI, _ESC_INTERMEDIATE):
                if 0x20 <= code <= 0x2F or (self._state == _CSI and 0x30 <= code <= 0x3F):
                    continue
                self._state = _TEXT
                if not 0x30 <= code <= 0x7E:
                    i -= 1  # broken off by something else: look at it again as text
            elif self._state == _STRING:
                if ch in ("\x07", "\x9c"):
                    self._state = _TEXT
                elif ch == "\x1b":
                    self._state = _STRING_ESC
            elif ch == "\\":  # _STRING_ESC: ESC \\ is the string terminator
                self._state = _TEXT
            else:
                self._state = _ESC  # the string ended by a new escape sequence
                i -= 1
        return "".join(out)


def neutralise(text: str) -> str:
    """A message from the guest, safe to print anywhere (one complete piece of text)."""
    f = TerminalFilter()
    return (f.feed(text.encode("utf-8", "replace")) + f.flush()).decode()


# --- streams --------------------------------------------------------------------------------


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
        self.outbox.control(encode(self.start))
        writer = threading.Thread(target=self.outbox.run, name="channel writer", daemon=True)
        writer.start()
        reader: threading.Thread | None = None
        if self.stdin is None:
            self.outbox.data(encode(StdinEof()))
        else:
            reader = threading.Thread(target=self._pump_stdin, name="channel stdin", daemon=True)
            reader.start()
        try:
            return self._receive()
        except BrokenPipeError:
            # Our stdout is gone (``vm-run vm cmd | head``): stop the command, as SIGPIPE would.
            self.abort(128 + signal.SIGPIPE)
            return 128 + signal.SIGPIPE
        finally:
            self.outbox.close()
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_RDWR)
            os.write(self._wake_w, b"x")
            writer.join(5.0)
            if reader is not None:
                reader.join(5.0)
            self.sock.close()
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _receive(self) -> int:
        frames = FrameReader(FROM_AGENT)
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
            for message in frames.feed(data):
                match message:
                    case Stdout(chunk):
                        self.stdout.write(chunk)
                    case Stderr(chunk):
                        self.stderr.write(chunk)
                    case Exit():
                        self.stdout.flush()
                        self.stderr.flush()
                        return message.status
                    case Error(text):
                        raise ChannelError(f"the agent refused: {neutralise(text)}")

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


# --- running a command ----------------------------------------------------------------------


def terminal_size(*fds: int) -> tuple[int, int]:
    """Rows and columns of the first terminal among ``fds`` (24 x 80 when none is)."""
    for fd in fds:
        with contextlib.suppress(OSError):
            size = os.get_terminal_size(fd)
            return size.lines, size.columns
    return 24, 80


@contextlib.contextmanager
def _raw_terminal(fd: int | None) -> Iterator[None]:
    if fd is None or not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    tty.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@contextlib.contextmanager
def _forwarding_signals(session: Session, *, winch_fds: Sequence[int]) -> Iterator[None]:
    """SIGINT, SIGTERM, SIGHUP go to the command; the third gives up. With ``winch_fds`` (a
    shell on a terminal) size changes follow. Only possible in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    count = 0

    def forward(signum: int, _frame: FrameType | None) -> None:
        nonlocal count
        count += 1
        if count >= GIVE_UP_AFTER:
            with contextlib.suppress(OSError):
                os.write(2, b"\r\nvmsilo channel: giving up; the command is being stopped\r\n")
            session.abort(128 + signum)
        else:
            session.send_signal(signal.Signals(signum).name.removeprefix("SIG"))

    def winch(_signum: int, _frame: FrameType | None) -> None:
        session.resize(*terminal_size(*winch_fds))

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    if winch_fds:
        previous[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, winch)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def run_command(
    address: Address,
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    tty: bool = False,
    stdin: int | None = 0,
    stdout: int = 1,
    stderr: int = 2,
    filter_output: bool | None = None,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    interactive: bool = True,
) -> int:
    """Run ``argv`` (empty: the guest user's login shell) in the guest; its exit status.

    ``filter_output`` (default: for a command without a pseudo-terminal) filters each of
    stdout and stderr that is a terminal. ``interactive`` forwards signals (main thread only)
    and, with ``tty``, puts a terminal stdin in raw mode.
    """
    if filter_output is None:
        filter_output = not tty
    if stdin is not None and not _is_open(stdin):
        stdin = None  # started with stdin closed: the command gets an empty input
    rows, cols = terminal_size(stdout, *([stdin] if stdin is not None else []))
    start = Start(argv=tuple(argv), env=dict(env or {}), cwd=cwd, tty=tty, rows=rows, cols=cols)
    sock = connect_to(address, timeout=connect_timeout)
    session = Session(
        sock,
        start,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        filter_stdout=filter_output and os.isatty(stdout),
        filter_stderr=filter_output and os.isatty(stderr),
    )
    if not interactive:
        return session.run()
    winch = [fd for fd in (stdin, stdout) if fd is not None and os.isatty(fd)] if tty else []
    with _forwarding_signals(session, winch_fds=winch), _raw_terminal(stdin if tty else None):
        return session.run()


# --- command line ---------------------------------------------------------------------------


def _address_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--cid", type=int, help="the VM's vsock context id")
    where.add_argument("--unix", metavar="PATH", help="an agent's Unix socket instead (tests)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"the agent's port (default: {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a variable for the command (repeatable); the host's environment is not passed",
    )
    parser.add_argument(
        "--cwd", metavar="DIR", help="the guest directory to run in (default: the user's home)"
    )
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=DEFAULT_CONNECT_TIMEOUT,
        metavar="SECONDS",
        help=f"how long to wait for the agent while the VM boots "
        f"(default: {DEFAULT_CONNECT_TIMEOUT:g})",
    )


def add_arguments(parser: argparse.ArgumentParser) -> argparse._SubParsersAction[Any]:
    """The host's subcommands of ``vmsilo channel``: ``run`` and ``shell``."""
    sub = parser.add_subparsers(dest="channel_command", required=True, metavar="COMMAND")
    run_p = sub.add_parser(
        "run",
        help="run a command in a VM (what vm-run does)",
        description="Run CMD in the guest as its user and return its exit status. Output to a "
        "terminal is stripped of escape sequences; output to a pipe or file is exact.",
    )
    _address_arguments(run_p)
    run_p.add_argument(
        "-t",
        "--tty",
        action="store_true",
        help="run CMD on a pseudo-terminal (for full-screen programs); its output is then "
        "passed to your terminal unfiltered",
    )
    run_p.add_argument("argv", nargs="+", metavar="CMD", help="the command and its arguments")
    shell_p = sub.add_parser(
        "shell",
        help="an interactive login shell in a VM (what vm-shell does)",
        description="Start the guest user's login shell on a pseudo-terminal.",
    )
    _address_arguments(shell_p)
    return sub


def run(args: argparse.Namespace) -> int:
    """``vmsilo channel run|shell``: the command's exit status, or 255 when the channel failed."""
    shell = args.channel_command == "shell"
    try:
        address: Address = (
            UnixAddress(args.unix) if args.unix else VsockAddress(args.cid, args.port)
        )
        env = env_items(args.env, "--env")
        use_tty = shell or args.tty
        if use_tty:
            for name in TTY_ENV:
                if name in os.environ:
                    env.setdefault(name, os.environ[name])
        return run_command(
            address,
            [] if shell else args.argv,
            env=env,
            cwd=args.cwd,
            tty=use_tty,
            connect_timeout=args.connect_timeout,
        )
    except ChannelError as err:
        print(f"vmsilo channel: {err}", file=sys.stderr)
        return EXIT_CHANNEL
