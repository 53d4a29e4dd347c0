"""The VM identity on the kernel command line, and what a guest makes of it at boot."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vmsilo_nix.cli import app as cli
from vmsilo_nix.guest.setup import Mount, plan_setup
from vmsilo_nix.pipeline import check
from vmsilo_nix.plan.argv import flatten
from vmsilo_nix.plan.host import plan
from vmsilo_nix.plan.identity import IdentityError, decode_cmdline, param

from .conftest import EXAMPLES, ROOT

DESKTOP = check(json.loads((EXAMPLES / "desktop.json").read_text()))


def cmdline_of(vm: str) -> str:
    """The kernel command line crosvm builds: its own, then every -p value, in order."""
    argv = flatten(plan(DESKTOP).vms[vm].crosvm)
    params = [argv[i + 1] for i, w in enumerate(argv) if w == "-p"]
    return " ".join(["panic=-1", "console=ttyS0", *params])


@pytest.mark.parametrize("vm", ["banking", "work", "vault", "net"])
def test_the_guest_writes_exactly_the_network_files_the_host_planned(vm: str) -> None:
    setup = plan_setup(decode_cmdline(cmdline_of(vm)))
    assert setup.hostname == vm
    assert setup.network_files == dict(plan(DESKTOP).vms[vm].network.guest_files)


def test_mounts_follow_the_shares() -> None:
    assert plan_setup(decode_cmdline(cmdline_of("work"))).mounts == (
        Mount("home", "/home/user", False),
        Mount("projects", "/mnt/projects", False),
        Mount("reference", "/mnt/reference", True),
    )
    assert plan_setup(decode_cmdline(cmdline_of("net"))).mounts == ()
    assert Mount("r", "/mnt/r", True).argv() == [
        "mount",
        "-t",
        "virtiofs",
        "-o",
        "ro",
        "r",
        "/mnt/r",
    ]


def test_the_last_identity_on_the_command_line_wins() -> None:
    """As for the kernel's own parameters; a bare vmsilo.config sets nothing."""
    first, last = DESKTOP.nixos_vms[0], DESKTOP.nixos_vms[1]
    cmdline = f"{param(first, 0)} quiet vmsilo.config {param(last, 1)}"
    assert plan_setup(decode_cmdline(cmdline)).hostname == last.name


@pytest.mark.parametrize(
    ("cmdline", "message"),
    [
        ("quiet", "no vmsilo.config= on the kernel command line"),
        ("vmsilo.config=!!!", "is damaged"),
        ("vmsilo.config=WzFd", "is not an object"),  # [1]
    ],
)
def test_bad_identity(cmdline: str, message: str) -> None:
    with pytest.raises(IdentityError, match=message):
        decode_cmdline(cmdline)


def test_identity_of_a_vm_that_is_not_valid_is_refused() -> None:
    bad = "vmsilo.config=" + param(DESKTOP.nixos_vms[0], 0).split("=", 1)[1]
    assert plan_setup(decode_cmdline(bad)).hostname == "banking"
    broken = base64.urlsafe_b64encode(b'{"name": 5}').decode()
    with pytest.raises(IdentityError, match="does not describe a VM"):
        plan_setup(decode_cmdline(f"vmsilo.config={broken}"))


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare for a private hostname",
)
def test_guest_setup_applies_in_a_private_namespace(tmp_path: Path) -> None:
    (tmp_path / "cmdline").write_text(cmdline_of("net") + "\n")
    stubs = tmp_path / "bin"
    stubs.mkdir()
    netdir = tmp_path / "network"
    code = (
        "import sys, socket; from vmsilo_nix.cli import main; "
        f"rc = main(['guest-setup', '--cmdline', {str(tmp_path / 'cmdline')!r}, "
        f"'--network-dir', {str(netdir)!r}]); print(socket.gethostname()); sys.exit(rc)"
    )
    result = subprocess.run(
        ["unshare", "--uts", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "net"
    assert {p.name: p.read_text() for p in netdir.iterdir()} == dict(
        plan(DESKTOP).vms["net"].network.guest_files
    )


def test_dry_run(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "cmdline").write_text(cmdline_of("work"))
    assert cli.main(["guest-setup", "--dry-run", "--cmdline", str(tmp_path / "cmdline")]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["hostname"] == "work"
    assert done["mounts"][0] == ["mount", "-t", "virtiofs", "home", "/home/user"]
    assert cli.main(["guest-setup", "--cmdline", str(tmp_path / "none")]) == 3
