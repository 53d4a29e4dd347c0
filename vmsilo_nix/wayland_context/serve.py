"""Keep a registration until SIGTERM or SIGINT arrives or the compositor goes away."""

from __future__ import annotations

import contextlib
import os
import select
import signal
from collections.abc import Callable, Iterator
from types import FrameType

from vmsilo_nix.wayland_context.registration import Registration


@contextlib.contextmanager
def _stop_signals() -> Iterator[tuple[list[int], int]]:
    """SIGTERM and SIGINT recorded instead of acted on, and a descriptor that becomes readable
    when one arrives (so a poll wakes up). Main thread only, as for any signal handler."""
    received: list[int] = []

    def record(signum: int, _frame: object) -> None:
        received.append(signum)

    wake_read, wake_write = os.pipe()
    previous: dict[signal.Signals, Callable[[int, FrameType | None], object] | int] = {}
    previous_wakeup: int | None = None
    try:
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        for s in (signal.SIGTERM, signal.SIGINT):
            handler = signal.signal(s, record)
            previous[s] = signal.SIG_DFL if handler is None else handler
        previous_wakeup = signal.set_wakeup_fd(wake_write, warn_on_full_buffer=False)
        yield received, wake_read
    finally:
        if previous_wakeup is not None:
            signal.set_wakeup_fd(previous_wakeup)
        for s, old in previous.items():
            signal.signal(s, old)
        os.close(wake_read)
        os.close(wake_write)


def serve(
    start: Callable[[], Registration],
    *,
    on_ready: Callable[[Registration], None] | None = None,
) -> int | None:
    """Register (``start``: :func:`.registration.register` with its arguments bound), then
    wait until SIGTERM or SIGINT arrives or the compositor hangs up, then clean up. Returns the
    signal's number, or None when the compositor went away.

    Must run in the main thread (it installs signal handlers, restored on return); they are in
    place before ``start`` runs, so a stop asked for during the registration is not lost.
    """
    with _stop_signals() as (received, wake):
        registration = start()
        with registration:
            if on_ready is not None:
                on_ready(registration)
            poller = select.poll()
            poller.register(registration.fileno(), select.POLLIN)
            poller.register(wake, select.POLLIN)
            while not received:
                for fd, _events in poller.poll():
                    if fd == wake:
                        with contextlib.suppress(BlockingIOError):
                            os.read(wake, 512)
                    elif not registration.dispatch(0):
                        return None
        return received[0]
