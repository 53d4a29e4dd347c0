"""Simulated guests behind real control sockets, for the stand-in crosvm
(tests/standins/balloon_crosvm.py)."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from .conftest import ROOT

STANDIN = ROOT / "tests" / "standins" / "balloon_crosvm.py"
MIB = 1 << 20


def install_crosvm(bin_dir: Path) -> Path:
    """The stand-in as `crosvm`, run by this Python (no /usr/bin/env needed, as in a build)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    crosvm = bin_dir / "crosvm"
    crosvm.write_text(f'#!/bin/sh\nexec {sys.executable} {STANDIN} "$@"\n')
    crosvm.chmod(0o755)
    return crosvm


class Guests:
    """VMs that come and go: each is a bound SOCK_SEQPACKET socket plus its guest file."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.sockets: dict[str, socket.socket] = {}

    def path(self, name: str) -> Path:
        return self.run_dir / name / "crosvm.sock"

    def start(self, name: str, memory: int, used: int, behave: str = "ok", actual: int = 0) -> None:
        p = self.path(name)
        p.parent.mkdir(parents=True, exist_ok=True)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.bind(str(p))
        self.sockets[name] = s
        self.write(
            name,
            {"memory": memory, "used": used, "actual": actual, "target": actual, "behave": behave},
        )

    def write(self, name: str, guest: dict[str, Any]) -> None:
        Path(f"{self.path(name)}.guest").write_text(json.dumps(guest))

    def read(self, name: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(Path(f"{self.path(name)}.guest").read_text())
        return data

    def set(self, name: str, **changes: Any) -> None:
        self.write(name, {**self.read(name), **changes})

    def stop(self, name: str) -> None:
        self.sockets.pop(name).close()
        os.unlink(self.path(name))

    def close(self) -> None:
        for name in list(self.sockets):
            self.stop(name)


def calls(record: Path) -> list[list[str]]:
    path = record / "crosvm.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]
