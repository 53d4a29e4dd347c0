"""The channel's frames: every message round-trips, and anything else is a ProtocolError."""

from __future__ import annotations

import enum
import json
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmsilo_nix.channel import protocol as p
from vmsilo_nix.channel.protocol import FROM_AGENT, FROM_CLIENT, FrameReader, MessageType

CLIENT_MESSAGES: list[p.Message] = [
    p.Start(argv=("firefox", "--new-window", "a b"), env={"A": "1=2"}, cwd="/home/user"),
    p.Start(argv=(), tty=True, rows=50, cols=132),
    p.Stdin(b"\x00\xff binary"),
    p.Stdin(b""),
    p.StdinEof(),
    p.Signal("INT"),
    p.Resize(rows=10, cols=20),
]
AGENT_MESSAGES: list[p.Message] = [
    p.Stdout(b"out\x1b[31m"),
    p.Stderr(b"err"),
    p.Exit(code=0),
    p.Exit(code=255),
    p.Exit(signal=9),
    p.Error("no such user"),
]


def header(kind: int, length: int) -> bytes:
    return struct.pack(">BI", kind, length)


def start_payload(**fields: object) -> bytes:
    body: dict[str, object] = {
        "version": 1,
        "argv": ["true"],
        "env": {},
        "cwd": None,
        "tty": False,
        "rows": 24,
        "cols": 80,
    }
    body.update(fields)
    return json.dumps(body).encode()


def read_one(allowed: frozenset[MessageType], data: bytes) -> p.Message:
    (message,) = FrameReader(allowed).feed(data)
    return message


@pytest.mark.parametrize("message", CLIENT_MESSAGES, ids=repr)
def test_client_messages_round_trip(message: p.Message) -> None:
    assert read_one(FROM_CLIENT, p.encode(message)) == message


@pytest.mark.parametrize("message", AGENT_MESSAGES, ids=repr)
def test_agent_messages_round_trip(message: p.Message) -> None:
    assert read_one(FROM_AGENT, p.encode(message)) == message


def test_a_stream_split_at_every_byte_gives_the_same_messages() -> None:
    stream = b"".join(p.encode(m) for m in CLIENT_MESSAGES)
    reader = FrameReader(FROM_CLIENT)
    got: list[p.Message] = []
    for i in range(len(stream)):
        got += reader.feed(stream[i : i + 1])
        if i == 2:
            assert reader.partial  # inside the first header
    assert got == CLIENT_MESSAGES
    assert not reader.partial


def test_exit_status_is_the_code_or_128_plus_the_signal() -> None:
    assert p.Exit(code=3).status == 3
    assert p.Exit(signal=2).status == 130


def test_data_frames_split_long_data_at_the_frame_limit() -> None:
    data = bytes(range(256)) * 1000  # 256000 bytes
    frames = p.data_frames(MessageType.STDOUT, data)
    assert len(frames) == 4
    messages = FrameReader(FROM_AGENT).feed(b"".join(frames))
    assert b"".join(m.data for m in messages if isinstance(m, p.Stdout)) == data
    with pytest.raises(ValueError, match="over its limit"):
        p.frame(MessageType.STDIN, bytes(p.MAX_PAYLOAD + 1))


def test_an_oversized_frame_is_refused_from_its_header_alone() -> None:
    reader = FrameReader(FROM_CLIENT)
    with pytest.raises(p.ProtocolError, match="STDIN of 65537 bytes is over its limit of 65536"):
        reader.feed(header(MessageType.STDIN, p.MAX_PAYLOAD + 1))
    with pytest.raises(p.ProtocolError, match="SIGNAL of 4096 bytes"):
        FrameReader(FROM_CLIENT).feed(header(MessageType.SIGNAL, 4096))
    with pytest.raises(p.ProtocolError, match="STDIN_EOF of 1 bytes"):
        FrameReader(FROM_CLIENT).feed(header(MessageType.STDIN_EOF, 1))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (header(0, 0), "unknown message type 0"),
        (header(200, 0), "unknown message type 200"),
        (p.encode(p.Stdout(b"x")), "STDOUT is not allowed in this direction"),
        (header(1, 3) + b"{{{", "START: the payload is not valid JSON"),
        (header(1, 2) + b"\xff\xfe", "START: the payload is not valid JSON"),
        (header(1, 2) + b"[]", "START: the payload is not a JSON object"),
        (header(1, 2) + b"{}", "START: expected the fields"),
        (header(1, 3000) + b"[" * 1500 + b"]" * 1500, "START: the payload is not valid JSON"),
    ],
)
def test_malformed_frames_are_protocol_errors(data: bytes, message: str) -> None:
    with pytest.raises(p.ProtocolError, match=message):
        FrameReader(FROM_CLIENT).feed(data)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"version": 2}, "protocol version 2 is not supported"),
        ({"version": True}, "protocol version True"),
        ({"argv": "ls"}, "argv must be a list"),
        ({"argv": ["ls", 1]}, "an argument must be a string"),
        ({"argv": ["a\0b"]}, "contains a NUL"),
        ({"argv": ["\ud800"]}, "is not encodable"),
        ({"env": []}, "env must be an object"),
        ({"env": {"A=B": "x"}}, "not a valid environment variable name"),
        ({"env": {"": "x"}}, "not a valid environment variable name"),
        ({"env": {"A": 1}}, "env A must be a string"),
        ({"cwd": "relative"}, "cwd must be an absolute path"),
        ({"cwd": 5}, "cwd must be a string"),
        ({"tty": 1}, "tty must be true or false"),
        ({"rows": True}, "rows must be an integer"),
        ({"cols": 70000}, "cols must be an integer from 0 to 65535"),
        ({"rows": 1.5}, "rows must be an integer"),
        ({"extra": 1}, "expected the fields"),
    ],
)
def test_start_fields_are_checked(fields: dict[str, object], message: str) -> None:
    payload = start_payload(**fields)
    with pytest.raises(p.ProtocolError, match=message):
        FrameReader(FROM_CLIENT).feed(header(MessageType.START, len(payload)) + payload)


def test_non_json_constants_are_refused() -> None:
    payload = b'{"rows": NaN, "cols": 1}'
    with pytest.raises(p.ProtocolError, match="not valid JSON"):
        FrameReader(FROM_CLIENT).feed(header(MessageType.RESIZE, len(payload)) + payload)


@pytest.mark.parametrize("name", ["KILL", "STOP", "SEGV", "int", "", "SIGINT"])
def test_only_whitelisted_signals_pass(name: str) -> None:
    payload = json.dumps({"signal": name}).encode()
    with pytest.raises(p.ProtocolError, match="is not one of HUP, INT, QUIT, TERM"):
        FrameReader(FROM_CLIENT).feed(header(MessageType.SIGNAL, len(payload)) + payload)


@pytest.mark.parametrize(
    "body",
    [{"code": 256}, {"code": -1}, {"signal": 0}, {"code": 1, "signal": 2}, {"code": "0"}, {}],
)
def test_exit_must_be_a_code_or_a_signal_in_range(body: dict[str, object]) -> None:
    payload = json.dumps(body).encode()
    with pytest.raises(p.ProtocolError, match="EXIT"):
        FrameReader(FROM_AGENT).feed(header(MessageType.EXIT, len(payload)) + payload)


def test_a_long_error_message_is_cut_to_fit_its_frame() -> None:
    message = read_one(FROM_AGENT, p.encode(p.Error("é" * 10000)))
    assert isinstance(message, p.Error)
    assert 0 < len(message.message.encode()) <= p.MAX_ERROR


# --- fuzzing --------------------------------------------------------------------------------

texts = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0"))


@st.composite
def starts(draw: st.DrawFn) -> p.Start:
    names = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\0="), min_size=1)
    return p.Start(
        argv=tuple(draw(st.lists(texts, max_size=5))),
        env=draw(st.dictionaries(names, texts, max_size=5)),
        cwd=draw(st.none() | texts.map(lambda t: "/" + t)),
        tty=draw(st.booleans()),
        rows=draw(st.integers(0, p.MAX_WINDOW)),
        cols=draw(st.integers(0, p.MAX_WINDOW)),
    )


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(start=starts(), cuts=st.lists(st.integers(0, 1000), max_size=5))
def test_any_valid_start_round_trips_however_it_is_split(start: p.Start, cuts: list[int]) -> None:
    data = p.encode(start) + p.encode(p.Stdin(b"x"))
    reader = FrameReader(FROM_CLIENT)
    got: list[p.Message] = []
    last = 0
    for cut in sorted(min(c, len(data)) for c in cuts):
        got += reader.feed(data[last:cut])
        last = cut
    got += reader.feed(data[last:])
    assert got == [start, p.Stdin(b"x")]


frames_of_any_type = st.builds(
    lambda kind, payload: header(kind, len(payload)) + payload,
    st.integers(0, 255),
    st.binary(max_size=300) | st.sampled_from([b"{}", b"[]", b"null", b'{"signal":"INT"}']),
)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.binary(max_size=2000) | st.lists(frames_of_any_type, max_size=6).map(b"".join),
    direction=st.sampled_from([FROM_CLIENT, FROM_AGENT]),
)
def test_any_bytes_give_messages_or_a_protocol_error(
    data: bytes, direction: frozenset[MessageType]
) -> None:
    reader = FrameReader(direction)
    try:
        messages = reader.feed(data)
    except p.ProtocolError:
        return
    for message in messages:
        # Whatever was accepted is of the allowed direction and encodes back to a valid frame.
        assert read_one(direction, p.encode(message)) == message


# --- the framing both protocols share (Frames, pack, json_value) -----------------------------


class Toy(enum.IntEnum):
    """A protocol of the shared format with nothing of the channel's or the tray's."""

    EMPTY = 1
    SMALL = 2
    LARGE = 200


TOY_LIMITS = {Toy.EMPTY: 0, Toy.SMALL: 8, Toy.LARGE: 300}


def toy_reader(allowed: frozenset[Toy]) -> p.Frames[Toy, tuple[Toy, bytes]]:
    return p.Frames(Toy, allowed, TOY_LIMITS, lambda kind, payload: (kind, payload))


def expected_frames(data: bytes, allowed: frozenset[Toy]) -> tuple[list[tuple[Toy, bytes]], bool]:
    """What the framing must make of ``data``: its whole frames and whether one is left
    unfinished, or a ProtocolError for an unknown or unallowed type or a length over the type's
    limit, refused from the header alone (its payload need not have come)."""
    frames: list[tuple[Toy, bytes]] = []
    while len(data) >= 5:
        raw, length = struct.unpack(">BI", data[:5])
        if raw not in {t.value for t in Toy} or Toy(raw) not in allowed:
            raise p.ProtocolError(f"type {raw}")
        if length > TOY_LIMITS[Toy(raw)]:
            raise p.ProtocolError(f"length {length}")
        if len(data) < 5 + length:
            break
        frames.append((Toy(raw), data[5 : 5 + length]))
        data = data[5 + length :]
    return frames, bool(data)


toy_frames = st.lists(
    st.tuples(st.sampled_from(list(Toy)), st.binary(max_size=300)).filter(
        lambda f: len(f[1]) <= TOY_LIMITS[f[0]]
    ),
    max_size=6,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(frames=toy_frames, cuts=st.lists(st.integers(0, 2000), max_size=6))
def test_the_framing_gives_back_what_was_packed_however_it_is_split(
    frames: list[tuple[Toy, bytes]], cuts: list[int]
) -> None:
    data = b"".join(p.pack(kind, payload, TOY_LIMITS) for kind, payload in frames)
    reader = toy_reader(frozenset(Toy))
    got: list[tuple[Toy, bytes]] = []
    last = 0
    for cut in sorted(min(c, len(data)) for c in cuts):
        got += reader.feed(data[last:cut])
        last = cut
    got += reader.feed(data[last:])
    assert got == frames
    assert not reader.partial


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.binary(max_size=600)
    | st.lists(
        st.builds(
            lambda kind, length, payload: struct.pack(">BI", kind, length) + payload,
            st.sampled_from([0, 1, 2, 3, 200, 255]),
            st.sampled_from([0, 1, 8, 9, 300, 301, 2**32 - 1]),
            st.binary(max_size=310),
        ),
        max_size=5,
    ).map(b"".join),
    allowed=st.frozensets(st.sampled_from(list(Toy))),
)
def test_the_framing_refuses_from_the_header_what_is_unknown_unallowed_or_too_long(
    data: bytes, allowed: frozenset[Toy]
) -> None:
    reader = toy_reader(allowed)
    try:
        expected = expected_frames(data, allowed)
    except p.ProtocolError:
        with pytest.raises(p.ProtocolError):
            reader.feed(data)
        return
    assert reader.feed(data) == expected[0]
    assert reader.partial is expected[1]


def test_pack_refuses_a_payload_over_its_limit() -> None:
    assert p.pack(Toy.SMALL, b"12345678", TOY_LIMITS) == b"\x02\x00\x00\x00\x0812345678"
    with pytest.raises(ValueError, match="SMALL payload of 9 bytes is over its limit"):
        p.pack(Toy.SMALL, b"123456789", TOY_LIMITS)


@settings(max_examples=500)
@given(
    st.binary(max_size=200)
    | st.sampled_from([b"NaN", b"-Infinity", b"[" * 100_000, b'"\xff"', b'{"a":1}'])
)
def test_a_json_payload_is_a_value_or_a_protocol_error(payload: bytes) -> None:
    try:
        value = p.json_value(Toy.LARGE, payload)
    except p.ProtocolError as err:
        assert str(err).startswith("LARGE: the payload is not valid JSON")
        return
    assert json.loads(payload) == value


@given(
    st.dictionaries(
        st.text(max_size=8),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=8),
            lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner),
            max_leaves=8,
        ),
        max_size=4,
    )
)
def test_json_payloads_read_back(obj: dict[str, object]) -> None:
    assert p.json_value(Toy.LARGE, p.json_payload(obj)) == obj
