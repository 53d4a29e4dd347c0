"""`vmsilo status`: every state, from a tree generated with really built artifacts and
stand-ins for systemctl and journalctl (there is no running systemd here)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import install_program, needs_nix
from tests.test_build import Flake
from vmsilo_nix.build.status import Unit, decide
from vmsilo_nix.config.artifacts import VmArtifacts, load_artifacts
from vmsilo_nix.config.rules import check
from vmsilo_nix.plan.host import plan
from vmsilo_nix.plan.layout import Layout
from vmsilo_nix.render.generate import build_tree
from vmsilo_nix.render.tree import write_tree

ENTRY = {
    "fingerprint": "sha256:new",
    "unbuilt": [],
    "artifacts": {"kernel": "/k", "initrd": "/i", "rootImage": "/r", "toplevel": "/t"},
}


@pytest.mark.parametrize(
    ("unit", "running", "flake", "exists", "state"),
    [
        ("inactive", None, None, True, "built"),
        ("inactive", None, None, False, "not built"),
        ("active", "sha256:new", None, True, "running current"),
        ("active", "sha256:new", "/t", True, "running current"),
        ("active", "sha256:old", None, True, "running outdated"),
        ("activating", None, None, True, "running outdated"),
        ("active", "sha256:new", "/t2", True, "running stale"),
        ("active", "sha256:old", "/t2", True, "running outdated"),
        ("failed", None, None, True, "failed"),
    ],
)
def test_decide(
    unit: str, running: str | None, flake: str | None, exists: bool, state: str
) -> None:
    got, _ = decide(ENTRY, Unit("u", unit), running, flake, exists=lambda _: exists)
    assert got == state


def test_decide_unbuilt_entry() -> None:
    entry = {**ENTRY, "unbuilt": ["kernel", "rootImage"], "artifacts": {}}
    assert decide(entry, Unit("u"), None, None) == ("not built", "missing: kernel, rootImage")


def test_decide_a_missing_program_image() -> None:
    """A VM the build gave a program image is not built while the image is gone (collected,
    or never built); a VM without one does not need it."""
    image = "/nix/store/x-vmsilo-programs.img"
    boot = {"kernel": "/k", "initrd": "/i", "rootImage": "/r", "toplevel": "/t"}
    entry = {**ENTRY, "artifacts": {**boot, "programImage": image}}
    there = {"/k", "/i", "/r", "/t"}
    assert decide(entry, Unit("u"), None, None, exists=there.__contains__) == (
        "not built",
        "missing: programImage",
    )
    assert decide(entry, Unit("u"), None, None, exists=(there | {image}).__contains__) == (
        "built",
        "",
    )
    assert decide(ENTRY, Unit("u"), None, None, exists=there.__contains__) == ("built", "")
    # vm-status asks the same of the files it is given
    arts = VmArtifacts(
        kernel="/k", initrd="/i", root_image="/r", toplevel="/t", program_image=image
    )
    assert arts.boot_files() == {
        "kernel": "/k",
        "initrd": "/i",
        "rootImage": "/r",
        "programImage": image,
    }


SYSTEMCTL = """#!/usr/bin/env bash
# systemctl show: each unit's state from $STATE/<unit> (default inactive), logged.
printf '%s\\n' "$*" >> "$STATE/systemctl.log"
[[ $1 == show ]] || exit 1
shift; while [[ $1 != -- ]]; do shift; done; shift
for unit in "$@"; do
  printf 'Id=%s\\nActiveState=%s\\nResult=%s\\n\\n' "$unit" \\
    "$(cat "$STATE/$unit" 2>/dev/null || echo inactive)" success
done
"""
JOURNALCTL = """#!/usr/bin/env bash
printf '%s\\n' "$*" >> "$STATE/journalctl.log"
printf 'starting\\ncrosvm: failed to open /dev/kvm: Permission denied\\n'
"""


@needs_nix
def test_every_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run: Any) -> None:
    monkeypatch.chdir(tmp_path)
    flake = Flake(tmp_path, {"banking": "base", "work": "office", "vault": "base", "net": "base"})
    assert run("build", "--flake", flake.host).code == 0
    built = load_artifacts(json.loads(Path("vmsilo-artifacts.json").read_text()))
    names = ["banking", "work", "vault", "net", "spare"]  # spare was never built
    config = check({"user": "alice", "nixosVms": [{"name": n} for n in names]})
    layout = Layout(run_dir=str(tmp_path / "run"), state_dir=str(tmp_path / "var"))
    p = plan(config, built, layout)
    write_tree(tmp_path / "tree", build_tree(config, p, built))
    manifest = json.loads((tmp_path / "tree/share/vmsilo/manifest.json").read_text())

    state, stubs = tmp_path / "state", tmp_path / "stubs"
    state.mkdir()
    install_program(stubs, "systemctl", SYSTEMCTL)
    install_program(stubs, "journalctl", JOURNALCTL)
    monkeypatch.setenv("PATH", f"{stubs}:{os.environ['PATH']}")
    monkeypatch.setenv("STATE", str(state))

    def running(vm: str, fingerprint: str) -> None:
        (state / f"vmsilo-{vm}.service").write_text("active\n")
        runtime = Path(manifest["vms"][vm]["runtime"])
        runtime.mkdir(parents=True, exist_ok=True)
        (runtime / "fingerprint").write_text(fingerprint + "\n")

    running("banking", manifest["vms"]["banking"]["fingerprint"])
    running("work", "sha256:what-it-started-with")
    (state / "vmsilo-vault.service").write_text("failed\n")

    result = run("status", "--tree", "tree", "--json")
    assert result.code == 0, result.err
    vms = result.json()["vms"]
    assert {n: v["state"] for n, v in vms.items()} == {
        "banking": "running current",
        "work": "running outdated",
        "vault": "failed",
        "net": "built",
        "spare": "not built",
    }
    assert vms["vault"]["detail"] == "crosvm: failed to open /dev/kvm: Permission denied"
    assert vms["banking"]["cid"] == p.vms["banking"].cid
    assert vms["banking"]["memory"] == 1024
    assert vms["banking"]["units"] == ["vmsilo-banking.service"]
    assert (state / "systemctl.log").read_text().splitlines() == [
        "show --property=Id,ActiveState,Result -- "
        + " ".join(f"vmsilo-{n}.service" for n in sorted(names))
    ]
    assert (state / "journalctl.log").read_text().splitlines() == [
        "--unit vmsilo-vault.service --lines 1 --output cat --no-pager"
    ]

    # The flake on disk now gives banking's software set another system: banking is stale.
    flake.set_vms({"banking": "base", "work": "office", "vault": "base", "net": "base"}, "newer")
    result = run("status", "--tree", "tree", "--flake", flake.host, "banking", "net")
    assert result.code == 0, result.err
    banking, net = (line.split("\t") for line in result.out.splitlines())
    cid = str(p.vms["banking"].cid)
    assert banking[:5] == ["banking", "running stale", cid, "1024 MiB", "vmsilo-banking.service"]
    assert banking[5].startswith("the flake gives /nix/store/")
    assert net == ["net", "built", str(p.vms["net"].cid), "1024 MiB", "vmsilo-net.service"]


def test_status_without_a_tree(run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    result = run("status")
    assert result.code == 3 and "vm-status is not on PATH" in result.err
    result = run("status", "--tree", str(tmp_path))
    assert result.code == 3 and "is not a vmsilo package tree" in result.err
