"""The planned virtiofsd command lines, run by the real virtiofsd as an unprivileged user.

The VM's launcher runs virtiofsd as ``programs.vmsilo.user``, so that is how it runs here: as
``nobody`` when the tests run as root (CI), else as the user running them. A command line
virtiofsd does not accept, or a setting it cannot honour without privileges, ends it at once;
one it accepts leaves it waiting for crosvm on the planned socket.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vmsilo_nix import structure
from vmsilo_nix.config.artifacts import Artifacts
from vmsilo_nix.plan.argv import flatten
from vmsilo_nix.plan.layout import Layout
from vmsilo_nix.plan.virtiofs import VirtiofsPlan, plan_virtiofs

from .conftest import cargo_program, minimal
from .test_virtiofs import EVERY_SETTING

VIRTIOFSD = cargo_program("virtiofsd")
pytestmark = pytest.mark.skipif(
    VIRTIOFSD is None, reason="virtiofsd is not installed (scripts/setup: cargo install virtiofsd)"
)
NOBODY = 65534


@pytest.fixture
def world() -> Iterator[Path]:
    """A directory every user can reach: the unprivileged virtiofsd cannot enter root's tmp."""
    root = Path(tempfile.mkdtemp(prefix="vmsilo-vfs-", dir="/tmp"))
    root.chmod(0o755)
    (root / "run").mkdir(mode=0o777)
    (root / "run").chmod(0o777)
    (root / "bin").mkdir()
    assert VIRTIOFSD is not None
    shutil.copy(VIRTIOFSD, root / "bin" / "virtiofsd")
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def plans(world: Path, **vm: Any) -> tuple[VirtiofsPlan, ...]:
    artifacts = Artifacts(packages={"virtiofsd": str(world)})
    layout = Layout(run_dir=str(world / "run"), state_dir=str(world / "state"))
    return plan_virtiofs(structure(minimal(**vm)), 0, layout, artifacts)


def share(world: Path, name: str) -> str:
    path = world / name
    path.mkdir(mode=0o777)
    path.chmod(0o777)
    return str(path)


def run_as_vm_user(argv: list[str], socket: str, timeout: float = 30.0) -> tuple[bool, str]:
    """Start virtiofsd; True once it waits for crosvm on ``socket`` (it says so after its
    sandbox and file system are set up), False with its log when it exits first."""
    prefix = []
    runtime = os.path.dirname(socket)
    os.makedirs(runtime, exist_ok=True)  # as the VM service's RuntimeDirectory, owned by its user
    if os.geteuid() == 0:
        prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        os.chown(runtime, NOBODY, NOBODY)
    proc = subprocess.Popen([*prefix, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    fd = proc.stderr.fileno()  # raw reads: a buffered readline would hide lines from select
    log = b""
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:  # exited
                return False, log.decode(errors="replace")
            log += chunk
            if b"Waiting for vhost-user socket connection" in log:
                return os.path.exists(socket), log.decode(errors="replace")
        return False, "timed out: " + log.decode(errors="replace")
    finally:
        proc.kill()
        proc.wait()


def test_the_default_home_share_starts(world: Path) -> None:
    (home,) = plans(world, sharedHome=share(world, "home"))
    ok, log = run_as_vm_user(flatten(home.argv), home.socket)
    assert ok, log


def test_a_share_with_every_setting_an_unprivileged_virtiofsd_can_honour(world: Path) -> None:
    # Unprivileged, mandatory file handles are refused (see below) and a map of other IDs needs
    # newuidmap with subordinate ranges (docs/sharing.md): the rest is as the planner's test has it.
    settings = {**EVERY_SETTING, "path": share(world, "s"), "inodeFileHandles": "never"}
    del settings["uidMap"], settings["gidMap"]
    (s,) = plans(world, sharedHome=False, sharedDirectories={"s": settings})
    ok, log = run_as_vm_user(flatten(s.argv), s.socket)
    assert ok, log


@pytest.mark.parametrize("cache", ["auto", "always", "metadata", "never"])
def test_every_cache_mode_is_a_word_virtiofsd_knows(world: Path, cache: str) -> None:
    (s,) = plans(
        world,
        sharedHome=False,
        sharedDirectories={"c": {"path": share(world, "c"), "cache": cache}},
    )
    ok, log = run_as_vm_user(flatten(s.argv), s.socket)
    assert ok, log


def test_the_check_sees_a_command_line_virtiofsd_refuses(world: Path) -> None:
    """The helper can fail: a flag virtiofsd does not know ends it with its usage error."""
    (home,) = plans(world, sharedHome=share(world, "home"))
    ok, log = run_as_vm_user([*flatten(home.argv), "--no-such-flag"], home.socket)
    assert not ok and "--no-such-flag" in log


def test_mandatory_file_handles_need_privileges_the_vm_user_lacks(world: Path) -> None:
    """Why `inodeFileHandles = "mandatory"` is refused by vmsilo check: unprivileged, virtiofsd
    cannot open file handles and refuses to start."""
    (s,) = plans(
        world,
        sharedHome=False,
        sharedDirectories={"m": {"path": share(world, "m"), "inodeFileHandles": "mandatory"}},
    )
    ok, log = run_as_vm_user(flatten(s.argv), s.socket)
    assert not ok and "mandatory" in log
