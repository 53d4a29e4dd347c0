"""Tests for vmsilo_nix.process: output capture and that no child ever outlives a call."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from vmsilo_nix import process
from vmsilo_nix.errors import NixNotFoundError, ProgramNotFoundError, ProgramTimeout, VmsiloError

from .procs import gone

# --- run ------------------------------------------------------------------------------------


def test_run_captures_both_streams_and_status() -> None:
    result = process.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert result == process.Completed(
        argv=("sh", "-c", "echo out; echo err >&2; exit 3"),
        returncode=3,
        stdout="out\n",
        stderr="err\n",
    )


def test_run_feeds_input() -> None:
    assert process.run(["cat"], input="hello\nworld").stdout == "hello\nworld"


def test_run_does_not_deadlock_on_large_output_and_input() -> None:
    code = (
        "import sys; data = sys.stdin.read(); "
        "sys.stderr.write('e' * 1_000_000); sys.stdout.write(data * 2)"
    )
    text = "x" * 500_000
    result = process.run([sys.executable, "-c", code], input=text)
    assert result.returncode == 0
    assert len(result.stdout) == 1_000_000
    assert len(result.stderr) == 1_000_000


def test_run_extra_env_is_laid_over_the_environment() -> None:
    result = process.run(["sh", "-c", 'echo "$VMSILO_X:$HOME"'], extra_env={"VMSILO_X": "1"})
    assert result.stdout == f"1:{os.environ.get('HOME', '')}\n"


def test_run_missing_program_raises_not_found() -> None:
    with pytest.raises(ProgramNotFoundError, match="'vmsilo-no-such-program'") as info:
        process.run(["vmsilo-no-such-program"])
    assert not isinstance(info.value, NixNotFoundError)
    assert "install Nix" not in str(info.value)


def test_a_missing_program_names_what_provides_it(tmp_path: Path) -> None:
    with pytest.raises(ProgramNotFoundError) as info:
        process.run(
            ["mount", "-t", "virtiofs", "home", "/home/user"], extra_env={"PATH": str(tmp_path)}
        )
    assert str(info.value) == "'mount' was not found on PATH; it comes with util-linux"


def test_only_a_missing_nix_says_how_to_install_nix(tmp_path: Path) -> None:
    with pytest.raises(NixNotFoundError, match="install Nix"):
        process.run(["nix", "--version"], extra_env={"PATH": str(tmp_path)})


def test_run_looks_the_program_up_in_the_given_path(tmp_path: Path) -> None:
    with pytest.raises(ProgramNotFoundError) as info:
        process.run(["sh", "-c", "true"], extra_env={"PATH": str(tmp_path)})
    assert isinstance(info.value, VmsiloError)


def test_run_missing_cwd_is_not_reported_as_missing_program(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        process.run(["true"], cwd=tmp_path / "absent")


def test_run_kills_background_children_left_by_the_command() -> None:
    # The stray ``sleep`` keeps stdout open: without the group kill, run would hang for 1000 s.
    start = time.monotonic()
    result = process.run(["sh", "-c", "sleep 1000 & echo $!"])
    assert time.monotonic() - start < 10
    assert result.returncode == 0
    assert gone(int(result.stdout))


def test_run_timeout_stops_the_whole_group_and_says_so() -> None:
    start = time.monotonic()
    with pytest.raises(ProgramTimeout) as info:
        process.run(
            ["sh", "-c", "sleep 1000 & echo $! >&2; trap '' TERM; sleep 1000"],
            timeout=0.3,
            grace=0.2,
        )
    assert time.monotonic() - start < 5
    assert info.value.argv[0] == "sh"
    assert str(info.value) == "'sh' did not finish within 0.3s and was stopped"
    assert isinstance(info.value, VmsiloError)


def test_run_timeout_kills_a_child_ignoring_sigterm(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    with pytest.raises(ProgramTimeout):
        process.run(
            ["sh", "-c", f"trap '' TERM; echo $$ > {pids}; sleep 1000 & echo $! >> {pids}; wait"],
            timeout=0.5,
            grace=0.1,
        )
    for pid in pids.read_text().split():
        assert gone(int(pid))


def test_run_timeout_without_pidfds(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(pid: int) -> int:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "pidfd_open", refuse)
    assert process.run(["sh", "-c", "sleep 0.1; echo done"], timeout=10).stdout == "done\n"
    with pytest.raises(ProgramTimeout):
        process.run(["sleep", "1000"], timeout=0.2, grace=0.1)


def test_run_within_its_timeout_is_unaffected() -> None:
    result = process.run(["sh", "-c", "echo hi"], timeout=10)
    assert (result.returncode, result.stdout) == (0, "hi\n")


# --- spawn_lines ----------------------------------------------------------------------------


def test_spawn_lines_reads_lines_then_waits_for_a_normal_exit() -> None:
    with process.spawn_lines(["sh", "-c", "echo a; echo; echo b >&2; printf c; exit 4"]) as lines:
        assert list(lines) == ["a", "", "c"]
    assert lines.returncode == 4
    assert lines.stderr == "b\n"
    assert not lines.killed


def test_spawn_lines_missing_program_raises_not_found() -> None:
    with (
        pytest.raises(ProgramNotFoundError),
        process.spawn_lines(["vmsilo-no-such-program"]),
    ):
        pass  # pragma: no cover


def _pids_from(lines: Iterator[str]) -> tuple[int, int]:
    """The child prints its pid and its background child's pid first."""
    return int(next(lines)), int(next(lines))


_TWO_LEVELS = "echo $$; sleep 1000 & echo $!; echo ready; wait"


def test_exception_in_the_block_kills_the_whole_group() -> None:
    with (
        pytest.raises(RuntimeError, match="consumer failed"),
        process.spawn_lines(["sh", "-c", _TWO_LEVELS]) as lines,
    ):
        it = iter(lines)
        shell, sleeper = _pids_from(it)
        assert next(it) == "ready"
        raise RuntimeError("consumer failed")
    assert lines.killed
    assert lines.returncode == -signal.SIGTERM
    assert gone(shell)
    assert gone(sleeper)


def test_leaving_the_block_early_kills_the_group() -> None:
    with process.spawn_lines(["sh", "-c", _TWO_LEVELS]) as lines:
        shell, sleeper = _pids_from(iter(lines))
    assert lines.killed
    assert gone(shell)
    assert gone(sleeper)


def test_ctrl_c_kills_the_group() -> None:
    with (
        pytest.raises(KeyboardInterrupt),
        process.spawn_lines(["sh", "-c", _TWO_LEVELS]) as lines,
    ):
        it = iter(lines)
        shell, sleeper = _pids_from(it)
        os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, delivered while we read
        for _ in it:
            pass
    assert gone(shell)
    assert gone(sleeper)


def test_closing_a_generator_kills_the_group() -> None:
    def follow() -> Generator[str, None, None]:
        with process.spawn_lines(["sh", "-c", _TWO_LEVELS]) as lines:
            yield from lines

    gen = follow()
    shell, sleeper = int(next(gen)), int(next(gen))
    gen.close()
    assert gone(shell)
    assert gone(sleeper)


def test_group_ignoring_sigterm_is_killed_after_the_grace_period() -> None:
    script = "trap '' TERM; echo $$; sleep 1000 & echo $!; wait"
    start = time.monotonic()
    with process.spawn_lines(["sh", "-c", script], grace=0.2) as lines:
        shell, sleeper = _pids_from(iter(lines))
    assert time.monotonic() - start < 10
    assert lines.returncode == -signal.SIGKILL
    assert gone(shell)
    assert gone(sleeper)


def test_stderr_is_collected_while_stdout_is_read() -> None:
    # 1 MB on stderr would fill the pipe and block the child if nobody drained it.
    code = "import sys; sys.stderr.write('e' * 1_000_000); print('done')"
    with process.spawn_lines([sys.executable, "-c", code]) as lines:
        assert list(lines) == ["done"]
    assert lines.returncode == 0
    assert len(lines.stderr) == 1_000_000
