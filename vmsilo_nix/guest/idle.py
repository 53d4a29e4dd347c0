"""Auto-shutdown: the agent powers the VM off ``after`` seconds after the last connection ended.

A connection arriving in between cancels it. The agent counts connections rather than commands,
so a command about to start holds the VM up too. The clock is injectable
(:class:`IdleShutdown`), which is how the tests control time.
"""

from __future__ import annotations

import logging
import shlex
import threading
import time
from collections.abc import Callable, Sequence

from vmsilo_nix import facts, process
from vmsilo_nix.assignments import last_assignment
from vmsilo_nix.errors import VmsiloError

log = logging.getLogger("vmsilo.channel")

CMDLINE_KEY = facts.PARAM_AUTOSHUTDOWN
DEFAULT_POWEROFF = ("systemctl", "poweroff")


class IdleShutdown:
    """Calls ``poweroff`` once, ``after`` seconds into a stretch with no connection.

    The first stretch starts when the agent does: a VM nobody runs anything in also stops.
    :meth:`check` must be called now and then (the agent does, every tick); it uses ``clock``,
    so tests can move time by hand.
    """

    def __init__(
        self,
        after: float,
        poweroff: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.after = after
        self._poweroff = poweroff
        self._clock = clock
        self._lock = threading.Lock()
        self._active = 0
        self._idle_since: float | None = clock()
        self.fired = False

    def begin(self) -> None:
        with self._lock:
            self._active += 1
            self._idle_since = None

    def end(self) -> None:
        with self._lock:
            self._active -= 1
            if self._active == 0:
                self._idle_since = self._clock()

    @property
    def active(self) -> int:
        return self._active

    def deadline(self) -> float | None:
        """When the VM powers off unless something starts (None: something is running)."""
        with self._lock:
            return None if self._idle_since is None else self._idle_since + self.after

    def check(self) -> bool:
        """Power off when the idle time is up; True when this call did it."""
        with self._lock:
            due = (
                not self.fired
                and self._idle_since is not None
                and self._clock() >= self._idle_since + self.after
            )
            if due:
                self.fired = True
        if due:
            log.info("no command for %g s: powering off", self.after)
            self._poweroff()
        return due


def cmdline_auto_shutdown(cmdline: str) -> float | None:
    """The ``vmsilo.autoshutdown=SECONDS`` of a kernel command line (the last one wins, as
    for the kernel's own parameters); None when absent or invalid."""
    value = last_assignment(cmdline.split(), CMDLINE_KEY)
    if value is None:
        return None
    try:
        seconds = int(value)
    except ValueError:
        log.warning("ignoring %s=%s: not a whole number of seconds", CMDLINE_KEY, value)
        return None
    if seconds < 0:
        log.warning("ignoring %s=%s: negative", CMDLINE_KEY, value)
        return None
    return float(seconds)


def run_poweroff(argv: Sequence[str]) -> Callable[[], None]:
    def poweroff() -> None:
        try:
            result = process.run(argv)
        except VmsiloError as err:
            log.error("cannot power off: %s", err)
            return
        if result.returncode != 0:
            log.error(
                "%s failed with status %d: %s",
                shlex.join(argv),
                result.returncode,
                result.stderr.strip(),
            )

    return poweroff
