"""The host's side of the picture: /proc/meminfo and /proc/pressure/memory.

Paths are parameters so that tests read fixture files. Parsers are strict: a file that does not
say what we need raises ``SourceUnreadable`` rather than guessing.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
from pathlib import Path
from typing import Final

import attrs

from vmsilo_nix.errors import VmsiloError

from .policy import Host

MEMINFO: Final = Path("/proc/meminfo")
PSI_MEMORY: Final = Path("/proc/pressure/memory")
#: The kernel's trigger: wake us when tasks stall 150 ms in any 1 s window (psi.rst's example;
#: an unprivileged trigger needs a window that is a multiple of 2 s, so fall back to that).
TRIGGERS: Final = ("some 150000 1000000", "some 300000 2000000")
_MEMINFO_LINE: Final = re.compile(r"(\w+):\s+([0-9]+)(?: kB)?")
_PSI_AVG10: Final = re.compile(r"some avg10=([0-9]+(?:\.[0-9]+)?) ")
# meminfo counts fit in 2**63 bytes; anything longer is not a real file.
_MAX_DIGITS: Final = 19


class SourceUnreadable(VmsiloError):
    """A /proc file is missing or does not hold what it should."""


def parse_meminfo(text: str) -> Host:
    """MemTotal and MemAvailable (kB in the file) in bytes."""
    found: dict[str, int] = {}
    for line in text.splitlines():
        m = _MEMINFO_LINE.fullmatch(line.strip())
        if m and m.group(1) in ("MemTotal", "MemAvailable") and len(m.group(2)) <= _MAX_DIGITS:
            found[m.group(1)] = int(m.group(2)) * 1024
    missing = [k for k in ("MemTotal", "MemAvailable") if k not in found]
    if missing:
        raise SourceUnreadable(f"meminfo lacks {' and '.join(missing)}")
    if found["MemTotal"] <= 0:
        raise SourceUnreadable("meminfo says MemTotal is 0")
    return Host(total=found["MemTotal"], available=min(found["MemAvailable"], found["MemTotal"]))


def parse_psi(text: str) -> float:
    """The ``some avg10`` of a PSI file: percent of the last 10 s some task stalled on memory."""
    m = _PSI_AVG10.match(text)
    if m is None:
        raise SourceUnreadable("the PSI file has no 'some avg10=' line")
    return min(100.0, float(m.group(1)))


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as err:
        raise SourceUnreadable(f"cannot read {path}: {err.strerror}") from err


def read_host(path: Path = MEMINFO) -> Host:
    return parse_meminfo(_read(path))


def read_psi(path: Path = PSI_MEMORY) -> float:
    return parse_psi(_read(path))


@attrs.define
class Waker:
    """Sleeps until the next tick, woken early by a PSI trigger or a signal.

    ``wake_fd`` (a pipe the signal handlers write to) ends any sleep. The PSI trigger is armed
    on ``psi_path`` when the kernel allows it; ``trigger`` says which one is armed, or None.
    """

    wake_fd: int | None = None
    psi_path: Path = PSI_MEMORY
    trigger: str | None = None
    _psi_fd: int | None = None
    _poll: select.poll = attrs.field(factory=select.poll)

    def arm(self) -> str | None:
        """Arm the PSI trigger; the error that prevented it, or None when armed."""
        if self.wake_fd is not None:
            self._poll.register(self.wake_fd, select.POLLIN)
        last = "no trigger tried"
        for trigger in TRIGGERS:
            try:
                fd = os.open(self.psi_path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as err:
                return f"cannot open {self.psi_path}: {err.strerror}"
            try:
                os.write(fd, trigger.encode() + b"\0")
            except OSError as err:
                os.close(fd)
                last = f"the kernel refused the trigger {trigger!r}: {err.strerror}"
                continue
            self._psi_fd, self.trigger = fd, trigger
            self._poll.register(fd, select.POLLPRI)
            return None
        return last

    def sleep(self, seconds: float) -> str:
        """Sleep up to ``seconds``; why it ended: "timeout", "pressure" or "signal"."""
        events = self._poll.poll(max(0, int(seconds * 1000)))
        why = "timeout"
        for fd, event in events:
            if fd == self.wake_fd:
                with contextlib.suppress(BlockingIOError):
                    os.read(fd, 512)
                return "signal"
            if fd == self._psi_fd and event & select.POLLPRI:
                why = "pressure"
            elif fd == self._psi_fd and event & (select.POLLERR | select.POLLHUP):
                self.close()  # the trigger is gone (cgroup removed): plain timer from now on
        return why

    def close(self) -> None:
        if self._psi_fd is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._poll.unregister(self._psi_fd)
            os.close(self._psi_fd)
            self._psi_fd, self.trigger = None, None
