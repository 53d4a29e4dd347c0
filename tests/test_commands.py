"""The generated vm-* commands and proxy scripts, run for real in bash with stand-ins for
systemctl, crosvm and vmsilo that record what they are asked."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from vmsilo_nix.config.artifacts import Artifacts, VmArtifacts
from vmsilo_nix.pipeline import check
from vmsilo_nix.plan.host import Plan, plan
from vmsilo_nix.plan.layout import Layout
from vmsilo_nix.render.generate import build_tree, fingerprint, proxy_path
from vmsilo_nix.render.tree import write_tree

# systemctl: `is-active` answers from $STATE/<unit> (a file holding "active"), every call logged;
# `start`/`stop` flip that state, so vm-stop sees its VM power off.
SYSTEMCTL = r"""#!/usr/bin/env bash
printf '%s\n' "$*" >> "$STATE/systemctl.log"
case $1 in
  is-active) [[ $(cat "$STATE/${@: -1}" 2>/dev/null) == active ]] ;;
  is-failed) [[ $(cat "$STATE/${@: -1}" 2>/dev/null) == failed ]] ;;
  start) echo active > "$STATE/${@: -1}" ;;
  stop) rm -f "$STATE/${@: -1}" ;;
esac
"""
# crosvm: `powerbtn` stops the unit after a moment unless $STUBBORN is set.
CROSVM = r"""#!/usr/bin/env bash
printf '%s\n' "$*" >> "$STATE/crosvm.log"
if [[ $1 == powerbtn && -z ${STUBBORN:-} ]]; then rm -f "$STATE/vmsilo-work.service"; fi
"""
RECORD = """#!/usr/bin/env bash
printf '%s\\n' "$*" >> "$STATE/$(basename "$0").log"
"""


class Host:
    def __init__(self, tmp: Path) -> None:
        self.state = tmp / "state"
        self.state.mkdir()
        stubs = tmp / "stubs"
        stubs.mkdir()
        for name, text in (("systemctl", SYSTEMCTL), ("crosvm", CROSVM), ("vmsilo", RECORD)):
            (stubs / name).write_text(text)
            (stubs / name).chmod(0o755)
        config = check({"user": "alice", "nixosVms": [{"name": "work"}, {"name": "vault"}]})
        self.store = tmp / "store"  # the boot files exist: vm-status looks for them
        self.store.mkdir()
        for name in ("k", "i", "r", "t"):
            (self.store / name).write_text("")
        built = VmArtifacts(
            kernel=str(self.store / "k"),
            initrd=str(self.store / "i"),
            root_image=str(self.store / "r"),
            toplevel=str(self.store / "t"),
        )
        self.artifacts = Artifacts(vms={"work": built, "vault": built})
        self.plan: Plan = plan(
            config, self.artifacts, Layout(run_dir=str(tmp / "run"), state_dir=str(tmp / "var"))
        )
        self.out = tmp / "out"
        write_tree(self.out, build_tree(config, self.plan, self.artifacts))
        self.env = {**os.environ, "PATH": f"{stubs}:{os.environ['PATH']}", "STATE": str(self.state)}

    def run(self, *argv: str, **env: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.out / "bin" / argv[0]), *argv[1:]]
        return subprocess.run(
            cmd, env={**self.env, **env}, capture_output=True, text=True, timeout=30, check=False
        )

    def log(self, name: str) -> list[str]:
        path = self.state / f"{name}.log"
        return path.read_text().splitlines() if path.exists() else []

    def set_active(self, vm: str) -> None:
        (self.state / f"vmsilo-{vm}.service").write_text("active\n")


@pytest.fixture
def host(tmp_path: Path) -> Host:
    return Host(tmp_path)


def test_vm_start(host: Host) -> None:
    assert host.run("vm-start", "work").returncode == 0
    assert host.log("systemctl") == ["start --no-ask-password -- vmsilo-work.service"]


def test_unknown_vm_and_usage(host: Host) -> None:
    result = host.run("vm-start", "wrok")
    assert result.returncode == 2
    assert "unknown VM 'wrok'" in result.stderr and "work" in result.stderr
    assert host.run("vm-run", "work").returncode == 2  # no command
    assert host.run("vm-stop", "--help").returncode == 0
    assert host.log("systemctl") == []


def test_vm_run_starts_the_vm_then_uses_the_channel(host: Host) -> None:
    result = host.run("vm-run", "work", "firefox", "--new-window", "a b")
    assert result.returncode == 0, result.stderr
    assert host.log("systemctl") == [
        "is-active --quiet -- vmsilo-work.service",
        "start --no-ask-password -- vmsilo-work.service",
    ]
    cid = host.plan.vms["work"].cid
    assert host.log("vmsilo") == [f"channel run --cid {cid} -- firefox --new-window a b"]


def test_vm_shell_on_a_running_vm(host: Host) -> None:
    host.set_active("vault")
    assert host.run("vm-shell", "vault").returncode == 0
    assert host.log("systemctl") == ["is-active --quiet -- vmsilo-vault.service"]
    assert host.log("vmsilo") == [f"channel shell --cid {host.plan.vms['vault'].cid}"]


def test_vm_stop_presses_the_power_button(host: Host) -> None:
    host.set_active("work")
    result = host.run("vm-stop", "work")
    assert result.returncode == 0, result.stderr
    sock = host.plan.vms["work"].control_socket
    assert host.log("crosvm") == [f"powerbtn {sock}"]
    assert "stop --no-ask-password -- vmsilo-work.service" not in host.log("systemctl")


def test_vm_stop_forces_after_the_timeout(host: Host) -> None:
    host.set_active("work")
    result = host.run("vm-stop", "--timeout", "1", "work", STUBBORN="1")
    assert result.returncode == 0, result.stderr
    sock = host.plan.vms["work"].control_socket
    assert host.log("crosvm") == [f"powerbtn {sock}", f"stop {sock}"]
    assert host.log("systemctl")[-1] == "stop --no-ask-password -- vmsilo-work.service"
    assert "did not power off within 1s" in result.stderr


def test_vm_stop_of_a_stopped_vm(host: Host) -> None:
    result = host.run("vm-stop", "work")
    assert result.returncode == 0 and "work is not running" in result.stdout
    assert host.log("crosvm") == []


def test_vm_status(host: Host) -> None:
    work = host.plan.vms["work"]
    run = Path(work.control_socket).parent
    run.mkdir(parents=True)
    host.set_active("work")
    (run / "fingerprint").write_text(fingerprint(work) + "\n")
    assert host.run("vm-status").stdout == "work\trunning current\nvault\tbuilt\n"
    (run / "fingerprint").write_text("sha256:an-older-configuration\n")
    result = host.run("vm-status", "work")
    assert result.stdout == "work\trunning outdated (restart it to apply the new configuration)\n"
    (host.state / "vmsilo-vault.service").write_text("failed\n")
    assert json.loads(host.run("vm-status", "--json").stdout) == {
        "work": "running outdated",
        "vault": "failed",
    }


def test_vm_status_of_a_collected_vm(host: Host) -> None:
    """A VM whose boot files were garbage-collected is not built, as `vmsilo status` says."""
    assert host.run("vm-status", "vault").stdout == "vault\tbuilt\n"
    (host.store / "r").unlink()
    assert host.run("vm-status", "vault").stdout == "vault\tnot built\n"


@pytest.mark.parametrize("kind", ["fifo", "zero", "big"])
def test_vm_status_reads_the_fingerprint_with_bounds(host: Host, kind: str) -> None:
    """The runtime directory is the VM user's; vm-status (run by root after a switch) reads
    only a regular file there, at most 256 bytes, and neither hangs on a FIFO nor reads a
    device without end."""
    run = Path(host.plan.vms["work"].control_socket).parent
    run.mkdir(parents=True)
    host.set_active("work")
    target = run / "fingerprint"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "zero":
        target.symlink_to("/dev/zero")
    else:
        target.write_text(fingerprint(host.plan.vms["work"]) + "x" * 10_000_000)
    result = host.run("vm-status", "--json", "work")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"work": "running outdated"}


def test_proxy_script_registers_the_security_context(host: Host) -> None:
    script = host.out / proxy_path("work")
    # without the directory the host makes, a clear error rather than a mkdir under /run
    result = subprocess.run(
        [str(script)], env=host.env, capture_output=True, text=True, check=False, timeout=10
    )
    assert result.returncode == 1 and "the host module's tmpfiles rules create it" in result.stderr
    assert host.log("vmsilo") == []
    Path(host.plan.vms["work"].control_socket).parent.mkdir(parents=True)
    result = subprocess.run(
        [str(script)], env=host.env, capture_output=True, text=True, check=False, timeout=10
    )
    assert result.returncode == 0, result.stderr
    w = host.plan.vms["work"].wayland
    assert w is not None
    assert host.log("vmsilo") == [
        f"wayland-context --socket {w.socket} --engine org.vmsilo --app-id work "
        f"--instance-id work #ff0000"
    ]
    assert Path(w.socket).parent.is_dir()
