"""`vmsilo status`: per VM, whether it is built, running, and running what.

The installed package tree's manifest (``share/vmsilo/manifest.json``) says what each VM
should run: its fingerprint, unit, run-time directory and boot artifacts. A running VM's
launcher wrote the fingerprint it started with to ``<runtime>/fingerprint``. systemd says
which units run or failed. Optionally a flake on disk says which guest system each VM would
get now. From those, one state per VM (``decide`` is pure, and the words are vm-status's):

    not built         a boot artifact or the program image is missing (never built, or
                      garbage-collected)
    built             built and not running
    running current   running the installed configuration
    running outdated  running, but started from an older configuration: restart it
    running stale     running the installed configuration, but the flake on disk would give
                      it a different guest system: rebuild and switch
    failed            its unit failed (the last journal line says why)
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs

from vmsilo_nix import process
from vmsilo_nix.assignments import split_assignment
from vmsilo_nix.config.artifacts import BOOT_PARTS
from vmsilo_nix.errors import VmsiloError
from vmsilo_nix.facts import MANIFEST

State = Literal[
    "not built", "built", "running current", "running outdated", "running stale", "failed"
]


class StatusError(VmsiloError):
    """The installed tree cannot be found or read."""


@attrs.frozen
class Unit:
    """What ``systemctl show`` says of a unit."""

    name: str
    active: str = "inactive"  # ActiveState: active, activating, failed, inactive, ...
    result: str = ""

    @property
    def running(self) -> bool:
        return self.active in ("active", "activating", "reloading", "deactivating")


@attrs.frozen
class VmStatus:
    vm: str
    state: State
    cid: int | None
    memory: int | None
    units: tuple[str, ...]
    #: Why: the failed unit's last journal line, the missing artifact, the new system.
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "cid": self.cid,
            "memory": self.memory,
            "units": list(self.units),
            "detail": self.detail or None,
        }


def decide(
    entry: Mapping[str, Any],
    unit: Unit,
    running_fingerprint: str | None,
    flake_toplevel: str | None,
    exists: Any = os.path.exists,
) -> tuple[State, str]:
    """The state of one VM from its manifest entry and what the host says (pure but for
    ``exists``, which tests replace)."""
    if unit.active == "failed":
        return "failed", ""
    artifacts = entry.get("artifacts") or {}
    if unit.running:
        if running_fingerprint != entry.get("fingerprint"):
            return "running outdated", "restart it to apply the installed configuration"
        installed = artifacts.get("toplevel")
        if flake_toplevel is not None and flake_toplevel != installed:
            return "running stale", f"the flake gives {flake_toplevel}"
        return "running current", ""
    # A program image is needed only by a VM the build gave one (guestPrograms, no guestConfig).
    parts = (*BOOT_PARTS, "programImage") if artifacts.get("programImage") else BOOT_PARTS
    missing = [p for p in parts if not artifacts.get(p) or not exists(artifacts[p])]
    if entry.get("unbuilt") or missing:
        what = entry.get("unbuilt") or missing
        return "not built", f"missing: {', '.join(what)}"
    return "built", ""


# --- the host: the installed tree, systemd, the journal --------------------------------------


def find_tree(tree: str | None) -> Path:
    """The installed package tree: ``tree``, or the one ``vm-status`` on PATH belongs to."""
    if tree is None:
        found = shutil.which("vm-status")
        if found is None:
            raise StatusError(
                "no vmsilo package tree is installed (vm-status is not on PATH); "
                "give --tree DIR (a tree `vmsilo generate` wrote)"
            )
        return Path(os.path.realpath(found)).parent.parent
    return Path(tree)


def read_manifest(tree: Path) -> dict[str, Any]:
    path = tree / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StatusError(f"{tree} is not a vmsilo package tree (no {MANIFEST})") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise StatusError(f"{path}: cannot read: {err}") from None
    if not isinstance(data, dict) or not isinstance(data.get("vms"), dict):
        raise StatusError(f"{path}: not a vmsilo manifest")
    return data


def show_units_argv(units: Sequence[str]) -> list[str]:
    return ["systemctl", "show", "--property=Id,ActiveState,Result", "--", *units]


def parse_show(text: str, units: Sequence[str]) -> dict[str, Unit]:
    """``systemctl show`` prints one block of KEY=VALUE lines per unit, blank-line separated."""
    found: dict[str, Unit] = {}
    for block in text.split("\n\n"):
        props = {
            key: value
            for key, value in map(split_assignment, block.splitlines())
            if value is not None
        }
        if "Id" in props:
            found[props["Id"]] = Unit(
                props["Id"], props.get("ActiveState", "inactive"), props.get("Result", "")
            )
    return {u: found.get(u, Unit(u)) for u in units}


def query_units(units: Sequence[str]) -> dict[str, Unit]:
    if not units:
        return {}
    result = process.run(show_units_argv(units))
    if result.returncode != 0:
        raise StatusError(f"systemctl show failed: {result.stderr.strip()}")
    return parse_show(result.stdout, units)


def last_journal_line(unit: str) -> str:
    argv = ["journalctl", "--unit", unit, "--lines", "1", "--output", "cat", "--no-pager"]
    result = process.run(argv)
    return result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""


def read_running_fingerprint(runtime: str) -> str | None:
    try:
        return Path(runtime, "fingerprint").read_text(encoding="utf-8").strip()
    except OSError:
        return None


def status(
    tree: Path,
    wanted: Sequence[str] = (),
    flake_toplevels: Mapping[str, str] | None = None,
) -> list[VmStatus]:
    """Every VM of the tree (by name), or the wanted ones in the order asked."""
    vms: dict[str, Any] = read_manifest(tree)["vms"]
    names = list(wanted) or list(vms)
    units = query_units([vms[n]["unit"] for n in names])
    out = []
    for name in names:
        entry = vms[name]
        unit = units[entry["unit"]]
        fingerprint = read_running_fingerprint(entry.get("runtime", "")) if unit.running else None
        toplevel = None if flake_toplevels is None else flake_toplevels.get(name)
        state, detail = decide(entry, unit, fingerprint, toplevel)
        if state == "failed":
            detail = last_journal_line(unit.name) or f"result: {unit.result}"
        out.append(
            VmStatus(
                name,
                state,
                entry.get("cid"),
                entry.get("memory"),
                (entry["unit"],),
                detail,
            )
        )
    return out
