"""Starting guest commands for the agent: privilege drop, pipes or a pseudo-terminal.

This is the one place besides :mod:`vmsilo_nix.process` that starts programs, and it exists
because that module does a different job: it runs host tools to completion, collects their
output as text in memory and owns the child's whole life inside one call. The agent needs a
child that outlives the call that started it, binary non-blocking pipes it can stream, a
pseudo-terminal that becomes the child's controlling terminal, an exit it can watch with a
pidfd beside a socket, and a switch to an unprivileged user in the right order.

How a command starts: ``subprocess.Popen`` (the fork and exec in C, safe in a threaded
process) runs a short fixed program in a fresh, isolated interpreter (``python -I -S``, so no
``PYTHON*`` variable or site directory influences it) with an empty environment. That program,
still root and already the leader of a new session, makes the pseudo-terminal its controlling
terminal (``TIOCSCTTY``, when there is one), drops privileges for good with ``setgroups``,
``setgid`` and ``setuid``, refuses to continue if any of them did not take, only then changes
to the requested directory (so it cannot enter one the user could not), and finally
``execvpe``\\ s the command with the requested environment. The environment never applies to
the root part, so ``LD_PRELOAD`` and friends only reach the command, which runs as the user.
A failure before the command runs is reported on its stderr with status 126 (127: not found),
as a shell does.

The child is the leader of its own session and process group, so one ``killpg`` reaches the
command and everything it started that stayed in its group.
"""

from __future__ import annotations

import contextlib
import fcntl
import grp
import os
import pwd
import select
import signal
import struct
import subprocess
import sys
import termios

import attrs

from vmsilo_nix.channel.protocol import ChannelError

# The fixed program the child runs before it becomes the command (see the module docstring).
# argv: uid gid groups(comma-separated) cwd ctty(0/1) n-env env... argv...
# Every module it needs is imported before the switch (os.execvpe imports warnings): the user
# may not be able to read the interpreter's library, and nothing it could read should run.
_CHILD = r"""
import fcntl, os, sys, termios, warnings  # all imports while still root: see below
def fail(message, status=126):
    sys.stderr.write("vmsilo: " + message + "\n")
    sys.exit(status)
_, uid, gid, groups, cwd, ctty, count, *rest = sys.argv
# NAME=VALUE, as vmsilo_nix.assignments reads it (this program cannot import it: see above).
env = dict(item.split("=", 1) for item in rest[: int(count)])
argv = rest[int(count):]
try:
    if ctty == "1":
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    if uid != "-":
        os.setgroups([int(g) for g in groups.split(",") if g])
        os.setgid(int(gid))
        os.setuid(int(uid))
        if os.getuid() == 0 or os.geteuid() == 0 or os.getegid() != int(gid):
            fail("the switch to the guest user did not take; not running anything")
        try:
            os.setuid(0)  # must fail now: the switch cannot be undone
        except PermissionError:
            pass
        else:
            fail("root could be regained; not running anything")
except OSError as err:
    fail("cannot become the guest user: " + str(err))
try:
    os.chdir(cwd)
except OSError as err:
    fail("cannot change to " + cwd + ": " + err.strerror)
try:
    os.execvpe(argv[0], argv, env)
except OSError as err:
    fail(argv[0] + ": " + err.strerror, 127 if isinstance(err, FileNotFoundError) else 126)
"""


class SpawnError(ChannelError):
    """The agent cannot run commands as the configured user."""


@attrs.frozen
class GuestUser:
    """The unprivileged account commands run as."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str
    shell: str

    @classmethod
    def lookup(cls, name: str) -> GuestUser:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise SpawnError(f"there is no user {name!r} to run commands as") from None
        groups = tuple(os.getgrouplist(name, entry.pw_gid))
        return cls(
            name=name,
            uid=entry.pw_uid,
            gid=entry.pw_gid,
            groups=groups,
            home=entry.pw_dir,
            shell=entry.pw_shell or "/bin/sh",
        )

    def check(self) -> None:
        """Refuse root, and a user this process cannot become."""
        if self.uid == 0 or self.gid == 0:
            raise SpawnError(f"refusing to run commands as {self.name!r}: it is root")
        if os.geteuid() != 0 and self.uid != os.geteuid():
            raise SpawnError(
                f"the agent runs as uid {os.geteuid()} and cannot switch to {self.name!r} "
                f"(uid {self.uid}); run it as root or as that user"
            )


@attrs.frozen
class Command:
    """What to run: the whole environment (nothing else is inherited) and the directory."""

    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: str
    tty: bool = False
    rows: int = 24
    cols: int = 80


class Child:
    """A started command. ``output`` fds are read until EOF; ``stdin`` is written (None once
    closed). With a pseudo-terminal, ``master`` is both and there is no separate stderr."""

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        *,
        stdin: int,
        stdout: int,
        stderr: int | None,
        tty: bool,
    ) -> None:
        self.popen = popen
        self.pid = popen.pid
        self.pidfd = os.pidfd_open(self.pid)
        self.stdin: int | None = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.tty = tty
        for fd in {stdin, stdout, *([stderr] if stderr is not None else [])}:
            os.set_blocking(fd, False)

    # --- signals ---

    def signal_group(self, sig: int) -> None:
        """Signal the command's process group (its session leader's group)."""
        # The leader stays a zombie until reap(), so until then the group id cannot have been
        # reused by another process; after it, the group is not ours to signal any more.
        if self.popen.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):  # ESRCH: group empty
            os.killpg(self.pid, sig)

    def signal_foreground(self, sig: int) -> None:
        """Signal whoever the user would reach from the keyboard: on a terminal its foreground
        process group (a shell's running job), otherwise the command's group."""
        if self.tty and self.popen.returncode is None:
            with contextlib.suppress(OSError):
                pgrp = os.tcgetpgrp(self.stdout)
                if pgrp > 0:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pgrp, sig)
                    return
        self.signal_group(sig)

    def resize(self, rows: int, cols: int) -> None:
        if self.tty:
            with contextlib.suppress(OSError):
                fcntl.ioctl(self.stdout, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))

    def eof_bytes(self) -> bytes:
        """What ends input on a terminal: its VEOF character (normally ^D)."""
        try:
            veof = termios.tcgetattr(self.stdout)[6][termios.VEOF]
        except (OSError, termios.error, IndexError):
            return b"\x04"
        return veof if isinstance(veof, bytes) else bytes([veof])

    # --- ending ---

    def wait_exit(self, timeout: float | None) -> bool:
        """Whether the command (the leader) has exited, waiting up to ``timeout`` seconds.
        It is not reaped, so its group id stays reserved."""
        ready, _, _ = select.select([self.pidfd], [], [], timeout)
        return bool(ready)

    def reap(self) -> int:
        """Kill what is left of the group, reap the leader and return Popen's status
        (negative: killed by that signal)."""
        if self.popen.returncode is None:
            self.signal_group(signal.SIGKILL)
            self.popen.wait()
        return self.popen.returncode

    def close(self) -> None:
        fds = {self.pidfd, self.stdout}
        if self.stdin is not None:
            fds.add(self.stdin)
        if self.stderr is not None:
            fds.add(self.stderr)
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.stdin = None

    def close_stdin(self) -> None:
        """Close the command's input pipe (not the terminal, which is also its output)."""
        if self.stdin is not None and not self.tty:
            with contextlib.suppress(OSError):
                os.close(self.stdin)
        if not self.tty:
            self.stdin = None


def _child_argv(command: Command, user: GuestUser, *, ctty: bool) -> list[str]:
    switch = os.geteuid() == 0
    env = [f"{k}={v}" for k, v in command.env.items()]
    return [
        sys.executable,
        "-I",
        "-S",
        "-c",
        _CHILD,
        str(user.uid) if switch else "-",
        str(user.gid),
        ",".join(str(g) for g in user.groups),
        command.cwd,
        "1" if ctty else "0",
        str(len(env)),
        *env,
        *command.argv,
    ]


def spawn(command: Command, user: GuestUser) -> Child:
    """Start ``command`` as ``user`` in a new session; see the module docstring."""
    user.check()
    if not command.argv:
        raise SpawnError("nothing to run")
    if command.tty:
        return _spawn_tty(command, user)
    stdin_r, stdin_w = os.pipe()
    stdout_r, stdout_w = os.pipe()
    stderr_r, stderr_w = os.pipe()
    theirs, ours = (stdin_r, stdout_w, stderr_w), (stdin_w, stdout_r, stderr_r)
    popen = _start(command, user, theirs, ours=ours, ctty=False)
    return Child(popen, stdin=stdin_w, stdout=stdout_r, stderr=stderr_r, tty=False)


def _spawn_tty(command: Command, user: GuestUser) -> Child:
    master, slave = os.openpty()
    try:
        fcntl.ioctl(
            slave, termios.TIOCSWINSZ, struct.pack("HHHH", command.rows, command.cols, 0, 0)
        )
        if os.geteuid() == 0:
            # As login(1) does: the user owns their terminal, the tty group may write to it.
            try:
                tty_gid = grp.getgrnam("tty").gr_gid
            except KeyError:
                tty_gid = -1
            os.fchown(slave, user.uid, tty_gid)
            os.fchmod(slave, 0o620)
    except BaseException:
        os.close(master)
        os.close(slave)
        raise
    popen = _start(command, user, (slave, slave, slave), ours=(master,), ctty=True)
    return Child(popen, stdin=master, stdout=master, stderr=None, tty=True)


def _start(
    command: Command,
    user: GuestUser,
    theirs: tuple[int, int, int],
    *,
    ours: tuple[int, ...],
    ctty: bool,
) -> subprocess.Popen[bytes]:
    """The child program on ``theirs`` (its stdin, stdout and stderr; a terminal's one end is
    all three, and with ``ctty`` its controlling terminal), in a session of its own with
    nothing of our environment. ``theirs`` is closed here either way, ``ours`` (the other ends)
    when it cannot start."""
    try:
        return subprocess.Popen(
            _child_argv(command, user, ctty=ctty),
            stdin=theirs[0],
            stdout=theirs[1],
            stderr=theirs[2],
            env={},
            start_new_session=True,
            umask=0o022,
        )
    except BaseException:
        for fd in ours:
            os.close(fd)
        raise
    finally:
        for fd in set(theirs):
            os.close(fd)
