"""Nix's ``--log-format internal-json`` log as build progress: a pure parser, no I/O.

Each stderr line of ``nix build --log-format internal-json`` is ``@nix {json}``: an activity
starts (a build, a substitution, a download), reports results (progress counters, log lines),
and stops; messages carry errors. ``Progress.feed`` folds one line into the state a display
shows and returns what happened, for plain output. Lines that are not ``@nix`` (or are
malformed) become messages: the log is Nix's, and never makes us fail.
"""

from __future__ import annotations

import collections
import json
import re
from typing import Any, Literal

import attrs

from vmsilo_nix.nixeval.nix import strip_ansi

# Activity and result types of Nix's logger (src/libutil/logging.hh), stable since Nix 2.3.
ACT_COPY_PATHS = 103  # the substitutions of one build command: progress of all of them
ACT_BUILDS = 104  # the builds of one build command: progress of all of them
ACT_BUILD = 105  # one derivation's build: fields [drvPath, machine, round, rounds]
ACT_SUBSTITUTE = 108  # one path fetched from a cache: fields [storePath, substituter]
RES_BUILD_LOG_LINE = 101
RES_PROGRESS = 105  # fields [done, expected, running, failed]
RES_POST_BUILD_LOG_LINE = 107

#: Log lines kept per build, for the report of a failed build.
TAIL_LINES = 10

_FAILED_BUILDER = re.compile(r"builder for '(/[^']+\.drv)' failed")
# Most lines of a log are counters and stops; Nix prints their keys sorted, so they are read
# without a JSON parse (other spellings still go through json.loads).
_COUNTERS = re.compile(
    r'@nix \{"action":"result","fields":\[(\d+),(\d+),(\d+),(\d+)\],"id":(\d+),"type":105\}'
)
_RESULT = '@nix {"action":"result",'
_STOP_PREFIX = '@nix {"action":"stop",'
_EXPECTED = '"type":106}'  # the realise activity's "expected" counters: not shown
_STOP = re.compile(r'@nix \{"action":"stop","id":(\d+)\}')


@attrs.define
class Build:
    """A build that is running: on this machine (``machine`` empty) or a remote builder."""

    drv: str
    machine: str
    last_line: str = ""


@attrs.frozen
class Event:
    """Something a plain (non-terminal) display prints as one line."""

    kind: Literal["build", "finished", "substitute", "substituted", "message"]
    text: str
    machine: str = ""


@attrs.frozen
class Counts:
    done: int = 0
    expected: int = 0
    running: int = 0
    failed: int = 0


def drv_name(drv: str) -> str:
    """``/nix/store/<hash>-linux-6.12.drv`` -> ``linux-6.12``."""
    base = drv.rsplit("/", 1)[-1].removesuffix(".drv")
    return base.split("-", 1)[1] if "-" in base else base


@attrs.define
class Progress:
    builds: Counts = Counts()
    substitutions: Counts = Counts()
    running: dict[int, Build] = attrs.field(factory=dict)
    substituting: dict[int, str] = attrs.field(factory=dict)
    #: The last lines of each build's log, by drvPath (running or finished).
    tails: dict[str, collections.deque[str]] = attrs.field(factory=dict)
    #: Derivations whose builder failed, in the order Nix reported them.
    failed: list[str] = attrs.field(factory=list)
    #: Error messages of Nix, without colour codes.
    errors: list[str] = attrs.field(factory=list)
    #: Remote builders seen building something.
    remote: set[str] = attrs.field(factory=set)
    #: Store paths fetched from a substituter.
    substituted_paths: set[str] = attrs.field(factory=set)
    _built: int = 0
    # Which ids are the "builds" and "copy paths" activities, whose results are the counters.
    _aggregates: dict[int, int] = attrs.field(factory=dict)
    _raw: dict[int, tuple[str, ...]] = attrs.field(factory=dict)  # their last counters, as read

    @property
    def built(self) -> int:
        """Builds that finished (successful or not: failures are in ``failed``)."""
        return self._built

    def feed(self, line: str) -> Event | None:
        if line.startswith(_RESULT):
            if line.endswith(_EXPECTED):
                return None
            if (m := _COUNTERS.fullmatch(line)) is not None:
                aggregate = self._aggregates.get(int(m[5]))
                if aggregate is not None and (raw := m.group(1, 2, 3, 4)) != self._raw.get(
                    aggregate
                ):
                    self._raw[aggregate] = raw
                    counts = Counts(*map(int, raw))
                    if aggregate == ACT_BUILDS:
                        self.builds = counts
                    else:
                        self.substitutions = counts
                return None
        elif line.startswith(_STOP_PREFIX) and (m := _STOP.fullmatch(line)) is not None:
            return self._stop(int(m[1]))
        if not line.startswith("@nix "):
            text = strip_ansi(line).rstrip()
            return Event("message", text) if text else None
        try:
            entry = json.loads(line[5:])
        except (json.JSONDecodeError, RecursionError):
            return None
        if not isinstance(entry, dict):
            return None
        action = entry.get("action")
        if action == "result":
            return self._result(entry)
        if action == "start":
            return self._start(entry)
        if action == "stop":
            return self._stop(entry.get("id"))
        if action == "msg":
            return self._msg(entry)
        return None

    def _start(self, entry: dict[str, Any]) -> Event | None:
        kind, fields, act = entry.get("type"), entry.get("fields"), entry.get("id")
        if not isinstance(act, int):
            return None
        if kind in (ACT_BUILDS, ACT_COPY_PATHS):
            self._aggregates[act] = kind
            return None
        if not isinstance(fields, list) or not fields:
            return None
        if kind == ACT_BUILD and isinstance(fields[0], str):
            machine = fields[1] if len(fields) > 1 and isinstance(fields[1], str) else ""
            self.running[act] = Build(fields[0], machine)
            self.tails[fields[0]] = collections.deque(maxlen=TAIL_LINES)
            if machine:
                self.remote.add(machine)
            return Event("build", fields[0], machine)
        if kind == ACT_SUBSTITUTE and isinstance(fields[0], str):
            self.substituting[act] = fields[0]
            return Event("substitute", fields[0])
        return None

    def _stop(self, act: object) -> Event | None:
        if not isinstance(act, int):
            return None
        build = self.running.pop(act, None)
        if build is not None:
            self._built += 1
            return Event("finished", build.drv, build.machine)
        path = self.substituting.pop(act, None)
        if path is not None:
            self.substituted_paths.add(path)
            return Event("substituted", path)
        return None

    def _result(self, entry: dict[str, Any]) -> Event | None:
        kind, fields, act = entry.get("type"), entry.get("fields"), entry.get("id")
        if not isinstance(fields, list):
            return None
        if kind == RES_PROGRESS:
            counts = _counts(fields)
            aggregate = self._aggregates.get(act) if isinstance(act, int) else None
            if counts is not None and aggregate == ACT_BUILDS:
                self.builds = counts
            elif counts is not None and aggregate == ACT_COPY_PATHS:
                self.substitutions = counts
            return None
        if kind in (RES_BUILD_LOG_LINE, RES_POST_BUILD_LOG_LINE) and isinstance(act, int):
            build = self.running.get(act)
            if build is not None and fields and isinstance(fields[0], str):
                text = strip_ansi(fields[0]).strip()
                if text:
                    build.last_line = text
                    self.tails[build.drv].append(text)
        return None

    def _msg(self, entry: dict[str, Any]) -> Event | None:
        level, msg = entry.get("level"), entry.get("msg")
        if not isinstance(msg, str):
            return None
        text = strip_ansi(msg).strip()
        if level == 0:  # errors
            self.errors.append(text)
            for drv in _FAILED_BUILDER.findall(text):
                if drv not in self.failed:
                    self.failed.append(drv)
        # Errors are reported per VM at the end; warnings are shown as they come.
        return Event("message", text) if level == 1 else None


def _counts(fields: list[Any]) -> Counts | None:
    if len(fields) < 4 or not all(isinstance(f, int) for f in fields[:4]):
        return None
    return Counts(*fields[:4])
