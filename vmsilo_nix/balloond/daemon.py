"""The loop: read the host and every VM, decide, act, record, sleep.

Every VM's step is confined: a VM that vanishes, hangs, answers garbage or reports impossible
numbers affects only itself. Balloons are adopted at their current size on start and left as
they are on exit.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Final, Protocol, TypeVar

import attrs

from vmsilo_nix.files import write_atomically

from . import policy
from .crosvm_ctl import Reply
from .policy import MIB, Decision, Follow, Guest, Host, Params
from .sources import SourceUnreadable

log = logging.getLogger("vmsilo-balloond")
T = TypeVar("T")

#: Consecutive failed calls after which a VM is retried with a growing delay (ghaf's rule).
FAILURES_BEFORE_BACKOFF: Final = 5
MAX_BACKOFF: Final = 60.0
#: Parallel crosvm calls: each waits for a guest, and a hung guest must not delay the rest.
WORKERS: Final = 16


class Control(Protocol):
    def stats(self, socket: str) -> Reply: ...
    def adjust(self, socket: str, size: int) -> Reply: ...


@attrs.frozen(kw_only=True)
class VmSpec:
    name: str
    socket: str
    memory: int  # bytes, as configured


@attrs.frozen(kw_only=True)
class Settings:
    params: Params
    poll_interval: float
    min_poll_interval: float
    psi_ceiling: float
    dry_run: bool = False


@attrs.define
class VmState:
    """What the daemon remembers of one VM between ticks."""

    status: str = "absent"  # absent, not-ready, running, failed
    detail: str = ""
    requested: int | None = None  # None until adopted
    actual: int | None = None
    available: int | None = None
    follow: Follow = attrs.field(factory=Follow)
    failures: int = 0
    retry_at: float = 0.0
    decision: Decision | None = None

    def forget(self, status: str, detail: str) -> None:
        """The VM is gone or not ready: whatever runs on that socket next is adopted afresh."""
        self.status, self.detail = status, detail
        self.requested = self.actual = self.available = None
        self.follow, self.failures, self.retry_at, self.decision = Follow(), 0, 0.0, None


@attrs.define
class Daemon:
    settings: Settings
    vms: Sequence[VmSpec]
    control: Control
    read_host: Callable[[], Host]
    read_psi: Callable[[], float] | None
    clock: Callable[[], float] = time.monotonic
    # The decision function: the policy; the benchmark swaps in a naive controller.
    decide: Callable[[Params, Host, Sequence[Guest]], tuple[Decision, ...]] = policy.decide
    state_file: Path | None = None
    states: dict[str, VmState] = attrs.field(factory=dict)
    psi: float | None = None
    interval: float = 0.0
    host: Host | None = None
    _said: set[str] = attrs.field(factory=set)
    _stuck: bool = False
    _pool: ThreadPoolExecutor | None = None

    def __attrs_post_init__(self) -> None:
        self.states = {vm.name: VmState() for vm in self.vms}
        self.interval = self.settings.poll_interval

    def _once(self, key: str, level: int, message: str) -> None:
        if key not in self._said:
            self._said.add(key)
            log.log(level, "%s", message)

    def _map(self, fn: Callable[[T], Reply], vms: Sequence[T]) -> list[Reply]:
        if len(vms) <= 1:
            return [fn(vm) for vm in vms]
        if self._pool is None:
            self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="crosvm")
        return list(self._pool.map(fn, vms))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def tick(self) -> tuple[Decision, ...]:
        now = self.clock()
        self._read_psi()
        try:
            self.host = self.read_host()
        except SourceUnreadable as err:
            log.error("skipping this tick: %s", err)
            return ()
        due = [vm for vm in self.vms if self.states[vm.name].retry_at <= now]
        replies = self._map(self._stats, due)
        guests = [g for vm, r in zip(due, replies, strict=True) if (g := self._take(vm, r, now))]
        decisions = self.decide(self.settings.params, self.host, guests)
        self._warn_if_stuck(decisions)
        self._act(decisions)
        self._write_state()
        return decisions

    def _warn_if_stuck(self, decisions: Sequence[Decision]) -> None:
        """Say once per episode that the host is short and no guest can give anything."""
        assert self.host is not None
        short = self.host.available < policy.critical_host(self.settings.params, self.host)
        stuck = short and bool(decisions) and all(d.target <= d.actual for d in decisions)
        if stuck and not self._stuck:
            log.warning(
                "the host is below its critical level and no VM can give more memory "
                "(each is at its floor, empty or held)"
            )
        self._stuck = stuck

    def _read_psi(self) -> None:
        self.psi = None
        if self.read_psi is not None:
            try:
                self.psi = self.read_psi()
            except SourceUnreadable as err:
                self._once(
                    "psi",
                    logging.WARNING,
                    f"no memory pressure ({err}): polling at a fixed interval",
                )
        s = self.settings
        self.interval = policy.poll_interval(
            s.poll_interval, s.min_poll_interval, s.psi_ceiling, self.psi
        )

    def _stats(self, vm: VmSpec) -> Reply:
        try:
            return self.control.stats(vm.socket)
        except Exception as err:  # a bug in one VM's step must not stop the others
            log.exception("balloon_stats of %s", vm.name)
            return Reply("failed", f"internal error: {err}")

    def _take(self, vm: VmSpec, reply: Reply, now: float) -> Guest | None:
        state = self.states[vm.name]
        if reply.status in ("gone", "not-ready"):
            if state.status != reply.status:
                log.info("%s: %s (%s)", vm.name, reply.status, reply.detail)
            state.forget("absent" if reply.status == "gone" else "not-ready", reply.detail)
            return None
        if reply.status != "ok" or reply.stats is None:
            state.failures += 1
            state.status, state.detail = "failed", reply.detail
            if state.failures >= FAILURES_BEFORE_BACKOFF:
                k = state.failures - FAILURES_BEFORE_BACKOFF
                state.retry_at = now + min(MAX_BACKOFF, 2.0**k)
            log.warning("%s: %s", vm.name, reply.detail)
            return None
        stats = reply.stats
        if stats.available is None:
            state.status, state.detail = "not-ready", "the guest reports no available memory"
            return None
        actual = min(stats.balloon_actual, vm.memory)
        if state.requested is None:
            state.requested = actual  # adopt the balloon as we find it
            log.info("%s: adopted its balloon at %d MiB", vm.name, actual // MIB)
            state.actual = actual
        assert state.actual is not None
        state.follow = policy.track(state.follow, state.requested, actual, state.actual, now)
        state.status, state.detail, state.failures, state.retry_at = "running", "", 0, 0.0
        state.actual, state.available = actual, stats.available
        return Guest(
            name=vm.name,
            memory=vm.memory,
            available=stats.available,
            balloon_actual=stats.balloon_actual,
            requested=state.requested,
            following=state.follow.following(now),
        )

    def _act(self, decisions: Sequence[Decision]) -> None:
        by_name = {vm.name: vm for vm in self.vms}
        moves = []
        for d in decisions:
            state = self.states[d.name]
            state.decision = d
            log.debug(
                "%s: actual %d MiB, available %s MiB, margin %d MiB, target %d MiB: %s",
                d.name,
                d.actual // MIB,
                (state.available or 0) // MIB,
                d.margin // MIB,
                d.target // MIB,
                d.reason,
            )
            if d.target != state.requested:
                moves.append(d)
        if self.settings.dry_run:
            for d in moves:
                print(f"{d.name}: would set the balloon to {d.target} bytes: {d.reason}")
            return
        replies = self._map(lambda d: self._adjust(by_name[d.name], d.target), moves)
        for d, reply in zip(moves, replies, strict=True):
            state = self.states[d.name]
            if reply.status == "ok":
                state.requested = d.target
                log.info(
                    "%s: balloon %d MiB -> %d MiB: %s",
                    d.name,
                    d.actual // MIB,
                    d.target // MIB,
                    d.reason,
                )
            else:
                log.warning("%s: balloon %d failed: %s", d.name, d.target, reply.detail)

    def _adjust(self, vm: VmSpec, size: int) -> Reply:
        try:
            return self.control.adjust(vm.socket, size)
        except Exception as err:
            log.exception("balloon of %s", vm.name)
            return Reply("failed", f"internal error: {err}")

    def snapshot(self) -> dict[str, Any]:
        """The state file's content: the host, the interval and each VM's target and reason."""
        vms = {}
        for vm in self.vms:
            s = self.states[vm.name]
            d = s.decision
            vms[vm.name] = {
                "status": s.status,
                "memory": vm.memory,
                "actual": s.actual,
                "target": s.requested,
                "available": s.available,
                "reason": d.reason if d and s.status == "running" else s.detail,
                "held": s.status == "running" and not s.follow.following(self.clock()),
            }
        return {
            "host": attrs.asdict(self.host) if self.host else None,
            "psi_some_avg10": self.psi,
            "interval": self.interval,
            "dry_run": self.settings.dry_run,
            "vms": vms,
        }

    def _write_state(self) -> None:
        if self.state_file is None:
            return
        try:
            write_atomically(self.state_file, json.dumps(self.snapshot(), indent=1) + "\n")
        except OSError as err:
            self._once("state", logging.WARNING, f"cannot write {self.state_file}: {err}")

    def run(self, sleep: Callable[[float], str], stop: Callable[[], bool]) -> None:
        """Tick until ``stop()``; ``sleep(seconds)`` waits and says why it woke."""
        while not stop():
            try:
                self.tick()
            except Exception:  # a bug: log it and keep balancing rather than leave the VMs
                log.exception("this round failed")
            why = sleep(self.interval)
            if why == "pressure":
                log.debug("woken by memory pressure")
