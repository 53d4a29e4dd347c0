"""crosvm's balloon commands: ``balloon_stats`` and ``balloon``, each bounded by a timeout.

``crosvm balloon_stats SOCKET`` prints ``{"BalloonStats": {"stats": {...}, "balloon_actual":
N}}``; every stats field may be null. Until the guest's balloon driver is up, crosvm answers
every balloon request with ``ENOTCONN``: the VM is booting, which is not an error. The reply
holds guest-written numbers, so it is parsed strictly and its size bounded.
"""

from __future__ import annotations

import errno
import json
import os
import stat
from typing import Any, Final

import attrs

from vmsilo_nix import process
from vmsilo_nix.errors import ProgramTimeout, VmsiloError

#: Seconds one crosvm call may take: balloon_stats waits for the guest to answer, and a stuck
#: guest must not stall the other VMs (ghaf allows 3 s, cloud-hypervisor 1 s).
DEFAULT_TIMEOUT: Final = 1.0
#: A real reply is well under 1 KiB; more is garbage and is not parsed.
MAX_REPLY: Final = 64 * 1024
_U64_MAX: Final = 2**64 - 1
_FIELDS: Final = ("available_memory", "total_memory", "free_memory", "disk_caches")
_NOT_CONNECTED: Final = ("Transport endpoint is not connected", "ENOTCONN")
_GONE: Final = ("No such file or directory", "Connection refused", "ECONNREFUSED", "ENOENT")


class BadReply(VmsiloError):
    """crosvm printed something that is not a balloon stats reply."""


@attrs.frozen(kw_only=True)
class Stats:
    """What one balloon_stats reply says, in bytes; None where the guest said nothing."""

    available: int | None
    total: int | None
    free: int | None
    disk_caches: int | None
    balloon_actual: int


@attrs.frozen
class Reply:
    """How a call went: ``ok``, ``not-ready`` (guest booting), ``gone`` (no VM on the socket)
    or ``failed`` (timeout, garbage, error); ``stats`` with a stats reply that parsed."""

    status: str
    detail: str = ""
    stats: Stats | None = None


def _u64(value: Any, what: str) -> int:
    # JSON true is an int to Python; a guest must not pass it off as a number.
    if type(value) is not int or not 0 <= value <= _U64_MAX:
        raise BadReply(f"{what} is not a byte count: {str(value)[:40]!r}")
    return value


def parse_stats(text: str) -> Stats:
    """Parse crosvm's balloon_stats output; ``BadReply`` for anything else."""
    if len(text) > MAX_REPLY:
        raise BadReply(f"the reply is {len(text)} characters long")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as err:
        raise BadReply(f"the reply is not JSON: {err}") from None
    if not isinstance(doc, dict) or list(doc) != ["BalloonStats"]:
        raise BadReply("the reply is not a BalloonStats response")
    body = doc["BalloonStats"]
    if not isinstance(body, dict) or not isinstance(body.get("stats"), dict):
        raise BadReply("the reply has no stats object")
    stats = body["stats"]
    values = {key: None if stats.get(key) is None else _u64(stats[key], key) for key in _FIELDS}
    return Stats(
        available=values["available_memory"],
        total=values["total_memory"],
        free=values["free_memory"],
        disk_caches=values["disk_caches"],
        balloon_actual=_u64(body.get("balloon_actual"), "balloon_actual"),
    )


def _is_not_ready(out: str, err: str) -> bool:
    with_err = out.strip()
    if with_err.startswith("{") and len(with_err) < MAX_REPLY:
        try:
            doc = json.loads(with_err)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and doc.get("Err") == errno.ENOTCONN:
            return True
    return any(s in err or s in out for s in _NOT_CONNECTED)


@attrs.frozen
class CrosvmControl:
    """Runs ``crosvm`` (the program ``crosvm`` names) against VM control sockets."""

    crosvm: str = "crosvm"
    timeout: float = DEFAULT_TIMEOUT

    def _call(self, *args: str) -> Reply | process.Completed:
        socket = args[-1]
        try:
            if not stat.S_ISSOCK(os.stat(socket).st_mode):
                return Reply("gone", f"{socket} is not a socket")
        except OSError as err:
            return Reply("gone", f"{socket}: {err.strerror}")
        try:
            return process.run([self.crosvm, *args], timeout=self.timeout, grace=0.1)
        except ProgramTimeout:
            return Reply("failed", f"crosvm {args[0]} did not answer within {self.timeout:g}s")
        except VmsiloError as err:  # crosvm itself is missing
            return Reply("failed", str(err))

    @staticmethod
    def _failure(done: process.Completed) -> Reply:
        if _is_not_ready(done.stdout[:MAX_REPLY], done.stderr[:MAX_REPLY]):
            return Reply("not-ready", "the guest's balloon driver is not up yet")
        last = (done.stderr.strip().splitlines() or [""])[-1][:200]
        if any(s in done.stderr for s in _GONE):
            return Reply("gone", last)
        return Reply("failed", f"crosvm exited with status {done.returncode}: {last}")

    def stats(self, socket: str) -> Reply:
        done = self._call("balloon_stats", socket)
        if isinstance(done, Reply):
            return done
        if done.returncode != 0:
            return self._failure(done)
        try:
            return Reply("ok", stats=parse_stats(done.stdout))
        except BadReply as err:
            return Reply("failed", str(err))

    def adjust(self, socket: str, size: int) -> Reply:
        """Ask for ``size`` bytes in the balloon; never ``--wait`` (the next tick looks)."""
        done = self._call("balloon", str(size), socket)
        if isinstance(done, Reply):
            return done
        if done.returncode != 0:
            return self._failure(done)
        return Reply("ok")
