"""The root overlay: qcow2 creation (run for real with qemu-img) and the crosvm disk."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from vmsilo_nix import structure
from vmsilo_nix.config.artifacts import Artifacts
from vmsilo_nix.plan.argv import flatten
from vmsilo_nix.plan.layout import Layout
from vmsilo_nix.plan.overlay import OverlayPlan, crosvm_args, plan_overlay

from .conftest import minimal

LAYOUT = Layout(run_dir="/run/vmsilo", state_dir="/var/lib/vmsilo")
ARTIFACTS = Artifacts(packages={"qemu-img": "/nix/store/bbbb-qemu-utils"})
SRC = ("nixosVms", 0, "rootOverlay")

needs_qemu_img = pytest.mark.skipif(
    shutil.which("qemu-img") is None,
    reason="qemu-img is not installed (apt-get install qemu-utils)",
)


def plan(layout: Layout = LAYOUT, artifacts: Artifacts = ARTIFACTS, **vm: Any) -> OverlayPlan:
    return plan_overlay(structure(minimal(**vm)), 0, layout, artifacts)


def test_default_is_a_10g_qcow2_in_the_state_dir() -> None:
    p = plan()
    assert p == OverlayPlan(
        type="qcow2",
        path="/var/lib/vmsilo/a/overlay.qcow2",
        size="10G",
        create_argv=(
            "/nix/store/bbbb-qemu-utils/bin/qemu-img",
            "create",
            "-f",
            "qcow2",
            "/var/lib/vmsilo/a/overlay.qcow2",
            "10G",
        ),
        sources=((*SRC, "type"), (*SRC, "size")),
    )
    args = crosvm_args(p)
    assert flatten(args) == ["--block", "path=/var/lib/vmsilo/a/overlay.qcow2,ro=false,sparse=true"]
    assert args[0].sources == ((*SRC, "type"), (*SRC, "size"))


def test_size_option_and_program_from_path() -> None:
    p = plan(artifacts=Artifacts(), rootOverlay={"size": "20G"})
    assert p.size == "20G"
    assert p.create_argv == ("qemu-img", "create", "-f", "qcow2", p.path, "20G")


def test_tmpfs_needs_nothing_on_the_host() -> None:
    p = plan(rootOverlay={"type": "tmpfs", "size": "20G"})
    assert p == OverlayPlan(
        type="tmpfs", path=None, size=None, create_argv=(), sources=((*SRC, "type"),)
    )
    assert crosvm_args(p) == []


def test_awkward_state_dir_goes_through_exactly() -> None:
    odd = "/var/lib/my vms, \"x\" 'y' $z"
    p = plan(layout=Layout(run_dir="/run", state_dir=odd))
    assert p.path == f"{odd}/a/overlay.qcow2"
    assert p.create_argv[4] == f"{odd}/a/overlay.qcow2"
    assert flatten(crosvm_args(p)) == [
        "--block",
        'path="/var/lib/my vms, \\"x\\" \'y\' $z/a/overlay.qcow2",ro=false,sparse=true',
    ]


@needs_qemu_img
@pytest.mark.parametrize(("size", "nbytes"), [("1G", 1 << 30), ("512M", 512 << 20)])
def test_planned_qemu_img_create_makes_the_requested_disk(
    tmp_path: Path, size: str, nbytes: int
) -> None:
    layout = Layout(run_dir=str(tmp_path / "run"), state_dir=str(tmp_path / "state, odd $dir"))
    p = plan(layout=layout, artifacts=Artifacts(), rootOverlay={"size": size})
    assert p.path is not None
    Path(p.path).parent.mkdir(parents=True)
    subprocess.run(p.create_argv, check=True, capture_output=True)
    # A second start recreates it: the old contents are gone.
    Path(p.path).write_bytes(b"junk")
    subprocess.run(p.create_argv, check=True, capture_output=True)
    info = subprocess.run(
        ["qemu-img", "info", "--output=json", p.path], check=True, capture_output=True, text=True
    )
    data = json.loads(info.stdout)
    assert data["format"] == "qcow2"
    assert data["virtual-size"] == nbytes
