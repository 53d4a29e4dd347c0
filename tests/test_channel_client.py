"""The host side: terminal filtering of guest output, the command line, channel failures."""

from __future__ import annotations

import argparse
import itertools
import re
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmsilo_nix.channel.client import MAX_SEQUENCE, TerminalFilter, neutralise
from vmsilo_nix.channel.transport import DEFAULT_PORT
from vmsilo_nix.cli import channel as channel_cli


def filtered(*chunks: bytes) -> bytes:
    f = TerminalFilter()
    return b"".join(f.feed(c) for c in chunks) + f.flush()


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        (b"plain text\n\ttab\r\n", b"plain text\n\ttab\r\n"),
        (b"\x1b[31mred\x1b[0m", b"red"),
        (b"\x1b[1;38;2;255;0;0mtrue colour\x1b[m", b"true colour"),
        (b"a\x1b]0;new title\x07b", b"ab"),  # OSC ended by BEL
        (b"a\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\b", b"alinkb"),  # OSC 8 ended by ST
        (b"a\x1bP1$qm\x1b\\b", b"ab"),  # DCS
        (b"a\x1b_apc\x1b\\b\x1b^pm\x1b\\c\x1bXsos\x1b\\d", b"abcd"),
        (b"a\x1b(0b\x1b)Bc", b"abc"),  # charset selection (ESC + intermediate + final)
        (b"a\x1bcb\x1b7c\x1b8d", b"abcd"),  # reset, save and restore cursor
        (b"a\xc2\x9b31mb", b"ab"),  # C1 CSI, UTF-8 encoded
        (b"a\xc2\x9d0;t\xc2\x9cb", b"ab"),  # C1 OSC ... C1 ST
        (b"bell\x07 bs\x08 del\x7f nul\x00 so\x0e", b"bell bs del nul so"),
        (b"\x1b[31\nbroken", b"\nbroken"),  # a control character ends a broken sequence
        (b"caf\xc3\xa9 \xe2\x9c\x93", "café ✓".encode()),
        (b"bad \xff\xfe bytes", "bad \ufffd\ufffd bytes".encode()),
        (b"\x1b\x1b[2Jx", b"x"),
        (b"a\x1b]0;title\x1b[31mb", b"ab"),  # a string broken off by a new sequence
    ],
)
def test_terminal_filter_removes_sequences_and_controls(raw: bytes, shown: bytes) -> None:
    assert filtered(raw) == shown


@pytest.mark.parametrize(
    ("chunks", "shown"),
    [
        # a bare CR would let a guest write over a line already shown
        (
            [b"deleted: thesis.odt\rok: nothing was changed\n"],
            b"deleted: thesis.odt\nok: nothing was changed\n",
        ),
        ([b"a\r\nb\r\n"], b"a\r\nb\r\n"),  # CR LF line ends pass
        ([b"a\r", b"\nb"], b"a\r\nb"),  # however they are split
        ([b"a\r", b"b"], b"a\nb"),
        ([b"a\r", b"", b"\n"], b"a\r\n"),
        ([b"a\r"], b"a\n"),  # at the very end, what follows could overwrite
        ([b"a\r\r\n"], b"a\n\r\n"),
        ([b"10%\r20%\r"], b"10%\n20%\n"),
        ([b"a\r\x1b[2Kb"], b"a\nb"),  # CR, erase line
        # bidi controls, zero-width and other format characters are removed
        (["invoice\u202efdp.exe".encode()], b"invoicefdp.exe"),
        (["a\u2066b\u2069c\u200ed\u200ff".encode()], b"abcdf"),
        (["x\u200by\u200dz\ufeff\u00ad!".encode()], b"xyz!"),
        (["line\u2028sep\u2029par".encode()], b"lineseppar"),
        (["tag\U000e0041\U000e007f".encode()], b"tag"),
        (["\u202e".encode()[:2], "\u202e".encode()[2:] + b"ok"], b"ok"),
        (["עברית and عربي".encode()], "עברית and عربي".encode()),  # RTL letters are text
    ],
)
def test_terminal_filter_keeps_what_was_shown_in_place(chunks: list[bytes], shown: bytes) -> None:
    assert filtered(*chunks) == shown


def test_an_unterminated_string_is_abandoned_after_a_bounded_length() -> None:
    out = filtered(b"\x1b]0;" + b"x" * (MAX_SEQUENCE + 10) + b"\nvisible\n")
    assert out.endswith(b"\nvisible\n")
    assert len(out) < 30


def test_a_truncated_utf8_character_at_the_end_is_replaced() -> None:
    assert filtered(b"ok \xe2\x9c") == "ok \ufffd".encode()


def test_neutralise_makes_a_message_printable() -> None:
    assert neutralise("refused\x1b]0;pwned\x07 \x1b[2J!") == "refused !"


FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]|\r(?!\n)")  # all but \t \n, CR LF


def has_format_characters(text: str) -> bool:
    return any(unicodedata.category(ch) in ("Cf", "Zl", "Zp") for ch in text)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.binary(max_size=400)
    | st.lists(
        st.sampled_from(
            [
                *(b"\x1b", b"[", b"]", b"P", b"\\", b"\x07", b"\xc2\x9b", b"\xc2\x9c", b"0"),
                *(b";", b"m", b"a", b"\n", b"\xe2\x9c\x93", b"\xff", b"\x1b[", b"\x1b]0;"),
                *(b"\r", b"\r\n", "\u202e".encode(), "\u2066".encode(), "\u200b".encode()),
            ]
        ),
        max_size=60,
    ).map(b"".join),
    cuts=st.lists(st.integers(0, 400), max_size=6),
)
def test_filtered_output_holds_no_escape_or_control_however_it_is_split(
    data: bytes, cuts: list[int]
) -> None:
    whole = filtered(data)
    bounds = [0, *sorted(min(c, len(data)) for c in cuts), len(data)]
    pieces = [data[a:b] for a, b in itertools.pairwise(bounds)]
    assert filtered(*pieces) == whole
    assert not FORBIDDEN.search(whole.decode())
    assert not has_format_characters(whole.decode())


@settings(max_examples=200)
@given(
    st.lists(
        st.characters(exclude_categories=["Cc", "Cs", "Cf", "Zl", "Zp"], exclude_characters="\x7f")
        | st.sampled_from(["\n", "\t", "\r\n"])
    ).map("".join)
)
def test_text_without_controls_passes_unchanged(text: str) -> None:
    assert filtered(text.encode()) == text.encode()


# --- the command line -----------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vmsilo channel")
    channel_cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_vm_run_s_invocation_parses() -> None:
    # exactly what the generated vm-run runs: "$vmsilo" channel run --cid CID -- "$@"
    args = parse("run", "--cid", "1234", "--", "firefox", "--new-window", "--", "-x")
    assert args.channel_command == "run"
    assert args.cid == 1234 and args.port == DEFAULT_PORT and args.unix is None
    assert args.argv == ["firefox", "--new-window", "--", "-x"]
    assert args.tty is False and args.env == [] and args.cwd is None


def test_vm_shell_s_invocation_parses() -> None:
    args = parse("shell", "--cid", "77")
    assert (args.channel_command, args.cid, args.port) == ("shell", 77, DEFAULT_PORT)


def test_run_options() -> None:
    args = parse(
        "run", "--unix", "/s", "--env", "A=1", "--env", "B=", "--cwd", "/tmp", "-t", "--", "x"
    )
    assert (args.unix, args.env, args.cwd, args.tty, args.argv) == (
        "/s",
        ["A=1", "B="],
        "/tmp",
        True,
        ["x"],
    )


def test_run_needs_exactly_one_address(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("run", "--", "ls")
    with pytest.raises(SystemExit):
        parse("run", "--cid", "3", "--unix", "/s", "--", "ls")
    assert "not allowed with argument" in capsys.readouterr().err


def test_agent_options() -> None:
    args = parse("agent")
    assert (args.port, args.listen_unix, args.user, args.auto_shutdown) == (
        DEFAULT_PORT,
        None,
        "user",
        None,
    )
    args = parse(
        "agent",
        "--listen-unix",
        "/s",
        "--user",
        "alice",
        "--auto-shutdown",
        "30",
        "--session-env",
        "WAYLAND_DISPLAY=wayland-1",
    )
    assert (args.listen_unix, args.user, args.auto_shutdown) == ("/s", "alice", 30.0)
    assert args.session_env == ["WAYLAND_DISPLAY=wayland-1"]


def test_no_agent_is_a_channel_failure_with_status_255(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    args = parse("run", "--unix", "/nonexistent/agent.sock", "--connect-timeout", "0.3", "--", "x")
    assert channel_cli.run(args) == 255
    err = capsys.readouterr().err
    assert err.startswith("vmsilo channel: no command agent answered on unix socket")
    assert "is the VM running?" in err


def test_a_malformed_env_item_is_a_channel_failure(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse("run", "--unix", "/nonexistent", "--env", "NOEQUALS", "--", "x")
    assert channel_cli.run(args) == 255
    assert "--env 'NOEQUALS': expected NAME=VALUE" in capsys.readouterr().err
