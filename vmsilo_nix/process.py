"""Running child programs: the only module that imports ``subprocess``.

Every child starts in its own session (so its own process group) and the whole group is
killed before we return, whatever happened: normal end, exception, Ctrl-C or a closed
generator. A child that starts its own helpers (nix builders, a worker's ``sleep``) therefore
never outlives us. Because the child is not in the terminal's foreground group, Ctrl-C reaches
only us; we then stop the group ourselves.

The group leader is reaped only after the final ``SIGKILL`` to its group: while it is an
unreaped zombie its pid, and so the group id, cannot be reused by an unrelated process.

SIGTERM and SIGHUP would end Python at once, with no ``finally`` run and so every group left
running; under :func:`signals_unwind` they unwind the stack like Ctrl-C does (as
:class:`Terminated`), so the same clean-up stops the children.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import IO, Literal

import attrs

from vmsilo_nix.errors import NixNotFoundError, ProgramNotFoundError, ProgramTimeout

#: What provides the programs vmsilo runs, for the error when one is missing. Nix itself gets
#: install instructions (NixNotFoundError); anything unlisted is named without a hint.
PROVIDERS = {
    "nix-eval-jobs": "nix-eval-jobs (optional: without it vmsilo evaluates with plain nix)",
    "mount": "util-linux",
    "ip": "iproute2",
    "qemu-img": "qemu-utils (Debian) or qemu (Nix)",
    "systemctl": "systemd",
    "crosvm": "crosvm",
    "rsvg-convert": "librsvg (Nix) or librsvg2-bin (Debian)",
}

#: Seconds a terminated group gets to exit after SIGTERM before SIGKILL.
DEFAULT_GRACE = 2.0
#: Seconds we wait for pipe readers once the group is dead (a child that escaped the group
#: with its own ``setsid`` may still hold a pipe; we give up on it rather than hang).
_READER_JOIN_TIMEOUT = 5.0


def not_found(program: str) -> ProgramNotFoundError:
    """The error for a missing program: install hints for Nix, the provider for the others."""
    name = os.path.basename(program)
    if name == "nix":
        return NixNotFoundError(program)
    return ProgramNotFoundError(program, PROVIDERS.get(name))


@attrs.frozen
class Completed:
    """A finished child: its argv, exit status (negative: killed by that signal) and output."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class Terminated(BaseException):  # like KeyboardInterrupt: not an Exception
    """SIGTERM or SIGHUP arrived; raised where the program was, so that it unwinds."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


#: Signals that unwind under ``signals_unwind`` (SIGINT already does, as KeyboardInterrupt).
UNWINDING = (signal.SIGTERM, signal.SIGHUP)


@contextlib.contextmanager
def signals_unwind() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into :class:`Terminated` for the block's duration.

    After the first one, further ones are ignored: a second ``timeout`` or ``kill`` must not
    interrupt the clean-up that stops the children.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; its caller owns the signals then
        return

    def unwind(signum: int, frame: object) -> None:
        for sig in UNWINDING:
            signal.signal(sig, signal.SIG_IGN)
        raise Terminated(signum)

    previous = {sig: signal.signal(sig, unwind) for sig in UNWINDING}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class _Reader(threading.Thread):
    """Drains one pipe into memory so the child never blocks on a full pipe."""

    def __init__(self, pipe: IO[str]) -> None:
        super().__init__(daemon=True)
        self._pipe = pipe
        self._chunks: list[str] = []

    def run(self) -> None:
        # The reader owns its pipe: closing it from elsewhere could drop unread output.
        with contextlib.suppress(OSError, ValueError), self._pipe:
            while chunk := self._pipe.read(65536):
                self._chunks.append(chunk)

    def text(self) -> str:
        self.join(_READER_JOIN_TIMEOUT)
        return "".join(self._chunks)


class _Group:
    """A started child in its own process group, with stderr drained in a thread."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        stdin: int,
        extra_env: Mapping[str, str] | None,
        cwd: str | os.PathLike[str] | None,
        lines_from: Literal["stdout", "stderr"] = "stdout",
    ) -> None:
        self.argv = tuple(argv)
        env = {**os.environ, **extra_env} if extra_env is not None else None
        try:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        except FileNotFoundError as err:
            # Only a missing program becomes our error; a missing cwd stays an OSError.
            if err.filename == self.argv[0]:
                raise not_found(self.argv[0]) from err
            raise
        # One pipe is read line by line by the caller; the other is drained here.
        self.lines_from = lines_from
        drained = self.proc.stderr if lines_from == "stdout" else self.proc.stdout
        assert drained is not None
        self.drain_reader = _Reader(drained)
        self.drain_reader.start()
        self.killed = False

    @property
    def line_pipe(self) -> IO[str] | None:
        return self.proc.stdout if self.lines_from == "stdout" else self.proc.stderr

    def _leader_exited(self, *, block: bool) -> bool:
        """Whether the leader has exited, without reaping it (WNOWAIT keeps the pgid reserved)."""
        if self.proc.returncode is not None:
            return True
        flags = os.WEXITED | os.WNOWAIT | (0 if block else os.WNOHANG)
        return os.waitid(os.P_PID, self.proc.pid, flags) is not None

    def _leader_exits_within(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for the leader to exit, without reaping it: a pidfd
        becomes readable when its process ends, so no polling loop is needed."""
        try:
            fd = os.pidfd_open(self.proc.pid)
        except OSError:  # an old kernel, or a seccomp filter without pidfd_open: poll instead
            deadline = time.monotonic() + timeout
            while not self._leader_exited(block=False):
                if time.monotonic() >= deadline:
                    return False
                time.sleep(0.005)
            return True
        try:
            readable, _, _ = select.select([fd], [], [], max(0.0, timeout))
        finally:
            os.close(fd)
        return bool(readable)

    def wait(self, timeout: float | None = None, grace: float = DEFAULT_GRACE) -> None:
        """Block until the leader exits on its own, then clear out the rest of its group.

        With ``timeout``, a leader still running after that many seconds has its group stopped
        (SIGTERM, ``grace``, SIGKILL) and ``ProgramTimeout`` is raised.
        """
        try:
            if timeout is None:
                self._leader_exited(block=True)
            elif not self._leader_exits_within(timeout):
                self.stop(grace)
                raise ProgramTimeout(self.argv, timeout)
        except BaseException:
            self.stop(grace)
            raise
        self._kill_group_and_reap()

    def stop(self, grace: float = DEFAULT_GRACE) -> None:
        """SIGTERM the group, give it ``grace`` seconds, then SIGKILL whatever is left."""
        try:
            if not self._leader_exited(block=False):
                self.killed = True
                self._signal_group(signal.SIGTERM)
                deadline = time.monotonic() + grace
                while not self._leader_exited(block=False) and time.monotonic() < deadline:
                    time.sleep(0.01)
        finally:
            self._kill_group_and_reap()

    def _kill_group_and_reap(self) -> None:
        if self.proc.returncode is None:
            if not self._leader_exited(block=False):
                self.killed = True
            self._signal_group(signal.SIGKILL)
            self.proc.wait()
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()

    def _signal_group(self, sig: signal.Signals) -> None:
        # The group is gone (or was never ours to signal): nothing is left to stop.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)


def run(
    argv: Sequence[str],
    *,
    input: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
    grace: float = DEFAULT_GRACE,
) -> Completed:
    """Run ``argv`` to completion, capturing stdout and stderr as text.

    ``extra_env`` is laid over the current environment (its PATH is also where the program is
    looked up). A missing program raises ``not_found(argv[0])``. The exit status is not
    checked here: callers know which statuses are failures. With ``timeout`` (seconds), a child
    still running then is stopped like on Ctrl-C (its group gets SIGTERM, ``grace`` seconds,
    SIGKILL) and ``ProgramTimeout`` is raised.
    """
    group = _Group(
        argv,
        stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
        extra_env=extra_env,
        cwd=cwd,
    )
    try:
        assert group.proc.stdout is not None
        stdout_reader = _Reader(group.proc.stdout)
        stdout_reader.start()
        if input is not None:
            threading.Thread(target=_feed, args=(group.proc.stdin, input), daemon=True).start()
        group.wait(timeout, grace)
    except BaseException:
        group.stop(grace)  # idempotent; covers a Ctrl-C before ``wait`` took over
        raise
    return Completed(
        argv=group.argv,
        returncode=group.proc.returncode,
        stdout=stdout_reader.text(),
        stderr=group.drain_reader.text(),
    )


def _feed(pipe: IO[str] | None, text: str) -> None:
    """Write stdin from a thread: a child that talks before it reads cannot deadlock us."""
    if pipe is None:
        return
    with contextlib.suppress(BrokenPipeError, OSError, ValueError):
        pipe.write(text)
        pipe.close()


class LineStream:
    """A running child's stdout (or stderr), one line (without its newline) per iteration.

    After the ``spawn_lines`` block ends, ``returncode``, the other pipe's text (``stderr``
    when reading stdout, ``stdout`` when reading stderr) and ``killed`` (we had to stop it)
    describe how it ended.
    """

    def __init__(self, group: _Group) -> None:
        self._group = group
        self.argv = group.argv
        self.pid = group.proc.pid
        self.eof = False
        self.returncode: int | None = None
        self.stdout = ""
        self.stderr = ""
        self.killed = False

    def __iter__(self) -> Iterator[str]:
        pipe = self._group.line_pipe
        assert pipe is not None
        for line in pipe:
            yield line.removesuffix("\n")
        self.eof = True

    def _finish(self, *, graceful: bool, grace: float) -> None:
        group = self._group
        try:
            if graceful:
                group.wait()
            else:
                group.stop(grace)
        finally:
            pipe = group.line_pipe
            if pipe is not None:
                pipe.close()
            self.returncode = group.proc.returncode
            drained = group.drain_reader.text()
            if group.lines_from == "stdout":
                self.stderr = drained
            else:
                self.stdout = drained
            self.killed = group.killed


@contextlib.contextmanager
def spawn_lines(
    argv: Sequence[str],
    *,
    extra_env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    grace: float = DEFAULT_GRACE,
    lines_from: Literal["stdout", "stderr"] = "stdout",
) -> Iterator[LineStream]:
    """Start ``argv`` and yield its stdout lines (or stderr's: Nix logs there while its
    result goes to stdout); the child's process group dies with the block.

    If the block read stdout to the end and returns normally, we wait for the child to exit by
    itself. Otherwise (exception, Ctrl-C, early return, generator closed) the whole group gets
    SIGTERM, ``grace`` seconds, then SIGKILL, and is reaped.
    """
    group = _Group(
        argv, stdin=subprocess.DEVNULL, extra_env=extra_env, cwd=cwd, lines_from=lines_from
    )
    stream = LineStream(group)
    graceful = False
    try:
        yield stream
        graceful = stream.eof
    finally:
        stream._finish(graceful=graceful, grace=grace)
