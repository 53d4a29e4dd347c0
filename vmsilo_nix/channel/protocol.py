"""The channel's wire format: small typed frames over one stream socket.

A frame is a 5-byte header, the message type (1 byte) and the payload length (4 bytes, big
endian), followed by the payload. Control messages carry a JSON object; standard input, output
and error chunks carry raw bytes. Every type has its own payload limit, checked from the header
before any payload is read, so a peer can never make the other side buffer more than
:data:`MAX_PAYLOAD` bytes for one frame.

Host (client) to guest (agent): START, STDIN, STDIN_EOF, SIGNAL, RESIZE.
Guest to host: HELLO, STDOUT, STDERR, EXIT, ERROR.

The agent speaks first: HELLO, with the protocol version, as soon as it accepts a connection.
The client sends nothing (no command, no input) before it has that HELLO; a peer that sends
anything else first, or nothing in time, is not an agent and the client closes the connection.

Each side accepts only the other side's types; anything else, an unknown type, a payload over its
limit, malformed JSON or a field of the wrong type raises :class:`ProtocolError`, and the
receiver then closes the connection. Nothing in this module does I/O.
"""

from __future__ import annotations

import enum
import json
import signal
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import attrs

from vmsilo_nix.assignments import split_assignment
from vmsilo_nix.errors import VmsiloError

VERSION = 1
HEADER = struct.Struct(">BI")
K = TypeVar("K", bound=enum.IntEnum)
M = TypeVar("M")
#: The largest payload of any frame; STDIN, STDOUT and STDERR chunks are at most this long.
MAX_PAYLOAD = 64 * 1024
MAX_SMALL = 256  # SIGNAL, RESIZE, EXIT
MAX_ERROR = 4096
MAX_WINDOW = 0xFFFF  # rows and columns of a terminal (struct winsize holds 16-bit values)

#: Signals the host may forward, by name (numbers differ between architectures; names do not).
SIGNALS: Mapping[str, signal.Signals] = {
    "HUP": signal.SIGHUP,
    "INT": signal.SIGINT,
    "QUIT": signal.SIGQUIT,
    "TERM": signal.SIGTERM,
    "USR1": signal.SIGUSR1,
    "USR2": signal.SIGUSR2,
    "WINCH": signal.SIGWINCH,
}


class ChannelError(VmsiloError):
    """The command channel failed: no agent to connect to, or the connection broke."""


def env_items(items: Sequence[str], flag: str) -> dict[str, str]:
    """``flag NAME=VALUE`` items (``--env``, ``--session-env``) as variables; a later NAME wins."""
    env: dict[str, str] = {}
    for item in items:
        name, value = split_assignment(item)
        if not name or value is None:
            raise ChannelError(f"{flag} {item!r}: expected NAME=VALUE")
        env[name] = value
    return env


class ProtocolError(ChannelError):
    """The peer sent something the protocol does not allow; the connection must be closed."""


class MessageType(enum.IntEnum):
    START = 1
    STDIN = 2
    STDIN_EOF = 3
    SIGNAL = 4
    RESIZE = 5
    STDOUT = 16
    STDERR = 17
    EXIT = 18
    ERROR = 19
    HELLO = 20


LIMITS: Mapping[MessageType, int] = {
    MessageType.START: MAX_PAYLOAD,
    MessageType.STDIN: MAX_PAYLOAD,
    MessageType.STDIN_EOF: 0,
    MessageType.SIGNAL: MAX_SMALL,
    MessageType.RESIZE: MAX_SMALL,
    MessageType.STDOUT: MAX_PAYLOAD,
    MessageType.STDERR: MAX_PAYLOAD,
    MessageType.EXIT: MAX_SMALL,
    MessageType.ERROR: MAX_ERROR,
    MessageType.HELLO: MAX_SMALL,
}
FROM_CLIENT = frozenset(
    {
        MessageType.START,
        MessageType.STDIN,
        MessageType.STDIN_EOF,
        MessageType.SIGNAL,
        MessageType.RESIZE,
    }
)
FROM_AGENT = frozenset(
    {
        MessageType.HELLO,
        MessageType.STDOUT,
        MessageType.STDERR,
        MessageType.EXIT,
        MessageType.ERROR,
    }
)


# --- messages -------------------------------------------------------------------------------


@attrs.frozen
class Start:
    """Run ``argv`` (empty: the user's login shell) with ``env`` laid over the guest session's
    environment, in ``cwd`` (None: the user's home), on a pseudo-terminal of ``rows`` x ``cols``
    when ``tty``."""

    argv: tuple[str, ...]
    env: Mapping[str, str] = attrs.field(factory=dict)
    cwd: str | None = None
    tty: bool = False
    rows: int = 24
    cols: int = 80


@attrs.frozen
class Stdin:
    data: bytes


@attrs.frozen
class StdinEof:
    pass


@attrs.frozen
class Signal:
    name: str  # a key of SIGNALS


@attrs.frozen
class Resize:
    rows: int
    cols: int


@attrs.frozen
class Stdout:
    data: bytes


@attrs.frozen
class Stderr:
    data: bytes


@attrs.frozen
class Exit:
    """The command ended with exit ``code``, or was killed by ``signal`` (exactly one is set)."""

    code: int | None = None
    signal: int | None = None

    @property
    def status(self) -> int:
        """The status a shell reports: the code, or 128 + the signal number."""
        return self.code if self.code is not None else 128 + (self.signal or 0)


@attrs.frozen
class Hello:
    """The agent's first frame: it speaks this version of the protocol."""

    version: int = VERSION


@attrs.frozen
class Error:
    """The agent refused the request; the connection closes after it."""

    message: str


Message = Start | Stdin | StdinEof | Signal | Resize | Hello | Stdout | Stderr | Exit | Error


# --- encoding -------------------------------------------------------------------------------


def frame(kind: MessageType, payload: bytes = b"") -> bytes:
    return pack(kind, payload, LIMITS)


def encode(msg: Message) -> bytes:
    """One frame. Data longer than a frame must be split first (see :func:`data_frames`)."""
    match msg:
        case Start():
            body = {
                "version": VERSION,
                "argv": list(msg.argv),
                "env": dict(msg.env),
                "cwd": msg.cwd,
                "tty": msg.tty,
                "rows": msg.rows,
                "cols": msg.cols,
            }
            return frame(MessageType.START, json_payload(body))
        case Stdin():
            return frame(MessageType.STDIN, msg.data)
        case StdinEof():
            return frame(MessageType.STDIN_EOF)
        case Signal():
            return frame(MessageType.SIGNAL, json_payload({"signal": msg.name}))
        case Resize():
            return frame(MessageType.RESIZE, json_payload({"rows": msg.rows, "cols": msg.cols}))
        case Stdout():
            return frame(MessageType.STDOUT, msg.data)
        case Stderr():
            return frame(MessageType.STDERR, msg.data)
        case Exit():
            body = {"code": msg.code} if msg.code is not None else {"signal": msg.signal}
            return frame(MessageType.EXIT, json_payload(body))
        case Hello():
            return frame(MessageType.HELLO, json_payload({"version": msg.version}))
        case Error():
            text = msg.message.encode("utf-8", "replace").decode()[:MAX_ERROR]
            while len(payload := json_payload({"message": text})) > MAX_ERROR:
                text = text[: len(text) - (len(payload) - MAX_ERROR) // 6 - 1]  # \uXXXX: 6
            return frame(MessageType.ERROR, payload)


def data_frames(kind: MessageType, data: bytes) -> list[bytes]:
    """``data`` as STDIN/STDOUT/STDERR frames of at most MAX_PAYLOAD bytes each."""
    return [frame(kind, data[i : i + MAX_PAYLOAD]) for i in range(0, len(data), MAX_PAYLOAD)]


# --- decoding -------------------------------------------------------------------------------


def _object(kind: MessageType, payload: bytes, *choices: set[str]) -> dict[str, Any]:
    """The payload's JSON object, whose keys must be exactly one of ``choices``."""
    value = json_value(kind, payload)
    if not isinstance(value, dict):
        raise ProtocolError(f"{kind.name}: the payload is not a JSON object")
    if set(value) not in choices:
        expected = " or ".join(str(sorted(keys)) for keys in choices)
        raise ProtocolError(
            f"{kind.name}: expected the fields {expected}, got {sorted(value)[:16]}"
        )
    return value


def _int(kind: MessageType, name: str, value: object, low: int, high: int) -> int:
    # bool is an int in Python but not in the protocol.
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ProtocolError(f"{kind.name}: {name} must be an integer from {low} to {high}")
    return value


def _text(kind: MessageType, name: str, value: object) -> str:
    """A string that can become a C string: no NUL, and encodable as the OS encodes names
    (lone surrogates stand for undecodable bytes, as in ``os.fsencode``)."""
    if not isinstance(value, str):
        raise ProtocolError(f"{kind.name}: {name} must be a string")
    if "\0" in value:
        raise ProtocolError(f"{kind.name}: {name} contains a NUL character")
    try:
        value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise ProtocolError(f"{kind.name}: {name} is not encodable") from None
    return value


def _start(payload: bytes) -> Start:
    kind = MessageType.START
    body = _object(kind, payload, {"version", "argv", "env", "cwd", "tty", "rows", "cols"})
    if body["version"] != VERSION or isinstance(body["version"], bool):
        raise ProtocolError(
            f"START: protocol version {body['version']!r} is not supported (this is {VERSION})"
        )
    argv = body["argv"]
    if not isinstance(argv, list):
        raise ProtocolError("START: argv must be a list of strings")
    env = body["env"]
    if not isinstance(env, dict):
        raise ProtocolError("START: env must be an object of strings")
    for name in env:
        _text(kind, "an env name", name)
        if not name or "=" in name:
            raise ProtocolError(f"START: {name!r} is not a valid environment variable name")
    cwd = body["cwd"]
    if cwd is not None and not _text(kind, "cwd", cwd).startswith("/"):
        raise ProtocolError("START: cwd must be an absolute path")
    if not isinstance(body["tty"], bool):
        raise ProtocolError("START: tty must be true or false")
    return Start(
        argv=tuple(_text(kind, "an argument", a) for a in argv),
        env={k: _text(kind, f"env {k}", v) for k, v in env.items()},
        cwd=cwd,
        tty=body["tty"],
        rows=_int(kind, "rows", body["rows"], 0, MAX_WINDOW),
        cols=_int(kind, "cols", body["cols"], 0, MAX_WINDOW),
    )


def decode(kind: MessageType, payload: bytes) -> Message:
    """The message of one complete frame (its type already known to be allowed)."""
    match kind:
        case MessageType.START:
            return _start(payload)
        case MessageType.STDIN:
            return Stdin(payload)
        case MessageType.STDIN_EOF:
            return StdinEof()
        case MessageType.SIGNAL:
            name = _object(kind, payload, {"signal"})["signal"]
            if not isinstance(name, str) or name not in SIGNALS:
                raise ProtocolError(f"SIGNAL: {name!r} is not one of {', '.join(SIGNALS)}")
            return Signal(name)
        case MessageType.RESIZE:
            body = _object(kind, payload, {"rows", "cols"})
            return Resize(
                rows=_int(kind, "rows", body["rows"], 0, MAX_WINDOW),
                cols=_int(kind, "cols", body["cols"], 0, MAX_WINDOW),
            )
        case MessageType.STDOUT:
            return Stdout(payload)
        case MessageType.STDERR:
            return Stderr(payload)
        case MessageType.EXIT:
            body = _object(kind, payload, {"code"}, {"signal"})
            if "code" in body:
                return Exit(code=_int(kind, "code", body["code"], 0, 255))
            return Exit(signal=_int(kind, "signal", body["signal"], 1, 127))
        case MessageType.HELLO:
            version = _object(kind, payload, {"version"})["version"]
            return Hello(_int(kind, "version", version, 0, 0xFFFF))
        case MessageType.ERROR:
            message = _object(kind, payload, {"message"})["message"]
            if not isinstance(message, str):
                raise ProtocolError("ERROR: message must be a string")
            return Error(message)


# --- the framing, shared by every protocol in this format (the channel's and the tray's) -----


def pack(kind: K, payload: bytes, limits: Mapping[K, int]) -> bytes:
    """One frame of ``kind``; ValueError when ``payload`` is over the kind's limit (a sender's
    bug: what it sends must fit)."""
    if len(payload) > limits[kind]:
        raise ValueError(f"{kind.name} payload of {len(payload)} bytes is over its limit")
    return HEADER.pack(kind, len(payload)) + payload


def json_payload(obj: Mapping[str, Any]) -> bytes:
    """``obj`` as a frame's JSON payload: compact UTF-8, no NaN or infinities."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def json_value(kind: enum.IntEnum, payload: bytes) -> Any:
    """A received payload's JSON value; anything but UTF-8 JSON (NaN and infinities are not
    JSON, a nesting too deep for the parser is refused too) is a :class:`ProtocolError`."""
    try:
        return json.loads(payload.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise ProtocolError(f"{kind.name}: the payload is not valid JSON ({err})") from None


class Frames(Generic[K, M]):
    """Turns received bytes into messages, for one direction of one connection: the framing
    (type byte, length, per-type limit checked from the header) shared by every protocol in
    this format. ``kinds`` is its type enum, ``allowed`` the types the peer may send, ``decode``
    its payload parser. The buffer never holds more than one header and one payload within
    its limit, plus the bytes of one ``feed``.
    """

    def __init__(
        self,
        kinds: type[K],
        allowed: frozenset[K],
        limits: Mapping[K, int],
        decode: Callable[[K, bytes], M],
    ) -> None:
        self._kinds = kinds
        self._allowed = allowed
        self._limits = limits
        self._decode = decode
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[M]:
        self._buffer += data
        messages: list[M] = []
        while len(self._buffer) >= HEADER.size:
            raw_kind, length = HEADER.unpack_from(self._buffer)
            try:
                kind = self._kinds(raw_kind)
            except ValueError:
                raise ProtocolError(f"unknown message type {raw_kind}") from None
            if kind not in self._allowed:
                raise ProtocolError(f"{kind.name} is not allowed in this direction")
            limit = self._limits[kind]
            if length > limit:
                raise ProtocolError(f"{kind.name} of {length} bytes is over its limit of {limit}")
            end = HEADER.size + length
            if len(self._buffer) < end:
                break
            payload = bytes(self._buffer[HEADER.size : end])
            del self._buffer[:end]
            messages.append(self._decode(kind, payload))
        return messages

    @property
    def partial(self) -> bool:
        """Whether a frame has begun but not ended (the peer closing now is an error)."""
        return bool(self._buffer)


class FrameReader(Frames[MessageType, Message]):
    """The channel's frames from a peer that may send ``allowed``."""

    def __init__(self, allowed: frozenset[MessageType]) -> None:
        super().__init__(MessageType, allowed, LIMITS, decode)
