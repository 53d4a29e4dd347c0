"""The documented first VM on a real systemd host: docs/nixos.md's banking VM, with the defaults
a new user gets (sound on, the default shared home, the default GPU), installed as a real NixOS
evaluation renders the module's units, rules and files, into Debian 13's systemd booted in a
container (tests/systemd_host.py), with real polkit, a real user manager, PipeWire and
WirePlumber, the real virtiofsd and Debian's pw-container.

Two VMs of tests/nix/real/session-vms.nix stand beside it: `desk` (autoStart with the default
GPU and sound) and `router` (autoStart with neither).

What cannot run here, and stands in: crosvm (no guest boots on this machine: a recording
crosvm, tests/standins/host_crosvm.py); the compositor (none with Wayland security contexts in
the container: `vmsilo wayland-context` is tests/standins/host_wayland_context.py, run by the
module's real user unit); vhost-device-sound when it is not built (scripts/setup builds it;
VMSILO_VHOST_DEVICE_SOUND names another; else tests/standins/host_sound_backend.py, a real
PipeWire client); the graphical session
(tests/fixtures/systemd/test-desktop.target starts graphical-session.target, as a compositor's
session target does); switch-to-configuration (its rule for a removed unit, stop it, is run by
the test). Needs root, debootstrap and systemd-nspawn, VMSILO_NIX and VMSILO_NIXPKGS.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from .conftest import ROOT, cargo_program, needs_real_nixos
from .systemd_host import (
    NOT_INSTALLED,
    OTHER_USER,
    VM_UID,
    VM_USER,
    Container,
    LocalStore,
    install,
    rootfs,
    why_not,
)
from .test_real_nixos import eval_real
from .test_virtiofsd_real import VIRTIOFSD

_WHY = why_not() or (None if VIRTIOFSD else "virtiofsd is not installed (scripts/setup)")
pytestmark = [
    needs_real_nixos,
    pytest.mark.skipif(_WHY is not None, reason=f"no real systemd host here: {_WHY}"),
]
STANDINS = ROOT / "tests/standins"


#: The real vhost-device-sound (scripts/setup builds it), else the stand-in.
SOUND_BACKEND = (
    os.environ.get("VMSILO_VHOST_DEVICE_SOUND")
    or cargo_program("vhost-device-sound")
    or str(STANDINS / "host_sound_backend.py")
)
VMS = ("banking", "desk", "router")


def doc_module(to: Path) -> Path:
    """docs/nixos.md's /etc/nixos/vmsilo.nix, exactly as a reader copies it."""
    blocks = re.findall(r"```nix\n(.*?)```", (ROOT / "docs/nixos.md").read_text(), re.S)
    (text,) = [b for b in blocks if b.startswith("# /etc/nixos/vmsilo.nix")]
    to.write_text(text)
    return to


def vmsilo(*args: str) -> str:
    r = subprocess.run(
        [sys.executable, "-m", "vmsilo_nix", *args], capture_output=True, text=True, check=False
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


@attrs.frozen
class Host:
    box: Container
    evaluated: dict[str, Any]
    planned: dict[str, Any]  # `vmsilo plan --json` of the same options and local programs
    tree: str
    at_boot: dict[str, dict[str, str]]
    record: Path

    def unit(self, vm: str) -> str:
        return f"vmsilo-{vm}.service"

    def state(self, vm: str) -> dict[str, str]:
        return self.box.show(self.unit(vm), "ActiveState", "Result", "ExecMainStatus")

    def command(
        self, name: str, *args: str, user: str = VM_USER
    ) -> subprocess.CompletedProcess[str]:
        return self.box.run(f"{self.tree}/bin/{name}", *args, user=user, timeout=90)

    def option(self, vm: str) -> str:
        """The option path prefix of a VM, as messages name it."""
        names = [v["name"] for v in self.evaluated["vmsilo"]["nixosVms"]]
        return f"programs.vmsilo.nixosVms[{names.index(vm)}] ({vm})"

    def wait_for_run(self, vm: str, timeout: float = 30) -> dict[str, Any]:
        """The one crosvm run of ``vm``, once its launcher got there."""
        deadline = time.monotonic() + timeout
        while not self.crosvm_runs(vm) and time.monotonic() < deadline:
            time.sleep(0.1)
        (run,) = self.crosvm_runs(vm)
        return run

    def crosvm_runs(self, vm: str) -> list[dict[str, Any]]:
        path = self.record / "crosvm.jsonl"
        lines = path.read_text().splitlines() if path.exists() else []
        runs = [json.loads(line) for line in lines]
        socket = f"/run/vmsilo/{vm}/crosvm.sock"
        return [r for r in runs if "run" in r["argv"] and socket in r["argv"]]


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    top = tmp_path_factory.mktemp("systemd-host")
    top.chmod(0o755)
    module = str(doc_module(top / "vmsilo.nix"))
    evaluated, _ = eval_real("session-host.nix", "host", module=module)
    assert evaluated["failedAssertions"] == [] and evaluated["warnings"] == []

    store = LocalStore(top)
    artifacts = {
        "packages": {
            "crosvm": store.program("crosvm-standin", "crosvm", STANDINS / "host_crosvm.py"),
            "virtiofsd": store.program("virtiofsd", "virtiofsd", Path(str(VIRTIOFSD))),
            "vhost-device-sound": store.program(
                "vhost-device-sound", "vhost-device-sound", Path(SOUND_BACKEND)
            ),
            "vmsilo": store.program("vmsilo", "vmsilo", STANDINS / "host_wayland_context.py"),
            **{
                program: store.debian(store.path(package))
                for program, package in (
                    ("qemu-img", "qemu-utils"),
                    ("ip", "iproute2"),
                    ("pw-container", "pipewire"),
                    ("bash", "bash"),
                )
            },
        },
        "vms": {
            vm: {
                part: store.file(f"{vm}-{part}")
                for part in ("kernel", "initrd", "rootImage", "toplevel", "programImage")
            }
            | {"programs": store.path(f"{vm}-programs")}
            for vm in VMS
        },
    }
    (top / "config.json").write_text(json.dumps(evaluated["vmsilo"]))
    (top / "artifacts.json").write_text(json.dumps(artifacts))
    files = ["--file", str(top / "config.json"), "--artifacts", str(top / "artifacts.json")]
    tree = evaluated["tree"]
    vmsilo("generate", *files, "--out", str(store.host(tree)))
    planned = json.loads(vmsilo("plan", "--json", *files))
    units = [
        u["text"]
        for kind in ("units", "userUnits")
        for name, u in evaluated[kind].items()
        if name not in NOT_INSTALLED
    ]
    store.map_units(iter(units), tree)

    binds = install(evaluated, top)
    shutil.copy(ROOT / "tests/fixtures/systemd/test-desktop.target", top / "user-units")
    record = top / "record"
    record.mkdir(mode=0o777)
    record.chmod(0o777)
    binds["/srv/record"] = record
    binds["/nix/store"] = store.dir
    box = Container(rootfs(), binds, top / "boot.log")
    try:
        box.wait_for("vmsilo-router.service", ("active", "failed"))
        at_boot = {vm: box.show(f"vmsilo-{vm}.service", "ActiveState", "Result") for vm in VMS}
        yield Host(box, evaluated, planned, tree, at_boot, record)
    finally:
        box.poweroff()


@pytest.fixture(scope="module")
def session(host: Host) -> Host:
    """The VM user logs in to a graphical session."""
    r = host.box.user_manager("systemctl", "start", "test-desktop.target")
    assert r.returncode == 0, r.stderr
    return host


def test_at_boot_only_the_vm_that_needs_no_session_starts(host: Host) -> None:
    # desk's GPU and sound need the user's session, which does not exist at boot: it waits
    # for it (not started, not failed); router needs nothing of it and starts at boot
    assert host.at_boot["router"] == {"ActiveState": "active", "Result": "success"}
    assert host.at_boot["desk"] == {"ActiveState": "inactive", "Result": "success"}
    assert host.at_boot["banking"] == {"ActiveState": "inactive", "Result": "success"}
    assert len(host.crosvm_runs("router")) == 1


def test_the_default_shared_home_is_made_for_the_vm_user(host: Host) -> None:
    st = host.box.root_path("/shared/banking").stat()
    assert (st.st_uid, oct(st.st_mode & 0o7777)) == (VM_UID, "0o700")
    assert oct(host.box.root_path("/shared").stat().st_mode & 0o7777) == "0o755"
    # sharedHome = false: nothing is made
    assert not host.box.root_path("/shared/desk").exists()


def test_an_autostart_vm_starts_with_the_graphical_session(session: Host) -> None:
    box = session.box
    assert box.wait_for("vmsilo-desk.service", ("active", "failed")) == "active"
    autostart = box.show("vmsilo-desk-autostart.service", "Result", user=True)
    assert autostart["Result"] == "success"
    run = session.wait_for_run("desk")
    assert run["argv"] == session.planned["vms"]["desk"]["crosvm"]["argv"][1:]


def test_another_user_may_not_start_a_vm(session: Host) -> None:
    r = session.command("vm-start", "banking", user=OTHER_USER)
    assert r.returncode != 0
    assert "Interactive authentication required" in r.stderr
    assert session.state("banking")["ActiveState"] == "inactive"
    # nor may the VM user start anything else
    r = session.box.run(
        "systemctl", "start", "--no-ask-password", "systemd-hostnamed.service", user=VM_USER
    )
    assert "Interactive authentication required" in r.stderr


def test_the_vm_user_starts_the_documented_vm_and_it_reaches_crosvm(session: Host) -> None:
    r = session.command("vm-start", "banking")
    assert r.returncode == 0, r.stderr
    assert session.box.wait_for("vmsilo-banking.service", ("active", "failed")) == "active"
    run = session.wait_for_run("banking")
    planned = session.planned["vms"]["banking"]
    assert run["argv"] == planned["crosvm"]["argv"][1:]
    # as the VM user, with /dev/kvm's group, and every socket crosvm connects to served
    assert run["uid"] == VM_UID
    kvm = int(session.box.run("getent", "group", "kvm", check=True).stdout.split(":")[2])
    assert kvm in run["groups"]
    sockets = [s["socket"] for s in planned["virtiofsd"]] + [
        planned["sound"]["socket"],
        planned["wayland"]["socket"],
    ]
    assert run["sockets"] == dict.fromkeys(sorted(sockets), True)
    # root's TAP unit made the VM's TAP, the VM user's, before the VM started
    (tap,) = planned["taps"]
    link = session.box.run("ip", "-d", "link", "show", "dev", tap["name"], check=True).stdout
    assert re.search(rf"tun type tap .* user {VM_USER} ", link), link


def processes(box: Container, vm: str) -> list[tuple[str, str]]:
    """(user, command line) of every process the VM's unit runs for it: those naming its
    run-time directory (virtiofsd's sandbox hides its unit from ps), less the user session's
    Wayland proxy, which outlives the VM."""
    r = box.run("ps", "-e", "-ww", "-o", "user=,unit=,args=", check=True)
    rows = [line.split(None, 2) for line in r.stdout.splitlines()]
    return [
        (user, args)
        for user, unit, args in (row for row in rows if len(row) == 3)
        if f"/run/vmsilo/{vm}/" in args and unit != f"user@{VM_UID}.service"
    ]


def test_the_home_share_is_served_by_the_real_virtiofsd(session: Host) -> None:
    procs = processes(session.box, "banking")
    served = [(u, a) for u, a in procs if "virtiofsd" in a.split()[0]]
    assert served and all(u == VM_USER for u, _ in served)
    assert any("--shared-dir=/shared/banking" in a for _, a in served)


def pipewire_clients(box: Container) -> list[dict[str, Any]]:
    r = box.in_session("pw-dump", timeout=30)
    assert r.returncode == 0, r.stderr
    objects = json.loads(r.stdout)
    return [o["info"]["props"] for o in objects if o["type"] == "PipeWire:Interface:Client"]


def test_the_sound_backend_is_a_client_of_the_users_pipewire_without_capture(
    session: Host,
) -> None:
    box = session.box
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        ours = [c for c in pipewire_clients(box) if c.get("pipewire.sec.engine") == "org.vmsilo"]
        if any(c.get("application.process.binary") != "pw-container" for c in ours):
            break
        time.sleep(0.2)
    backends = [
        c
        for c in ours
        if c.get("application.process.binary") != "pw-container"
        and c.get("pipewire.sec.app-id") == "banking"
    ]
    assert backends, ours
    for c in backends:
        assert c["pipewire.access"] == "restricted"


def test_vm_stop_leaves_the_unit_inactive_and_nothing_running(session: Host) -> None:
    before = processes(session.box, "banking")
    for program in ("virtiofsd", "pw-container", "vhost-device-sound"):
        assert any(f"/bin/{program} " in args for _, args in before), (program, before)
    cursor = session.box.run("journalctl", "-n", "0", "--show-cursor").stdout.split()[-1]
    # the stand-in crosvm ignores the power button: vm-stop then stops the unit (SIGTERM)
    r = session.command("vm-stop", "--timeout", "1", "banking")
    assert r.returncode == 0, r.stderr
    assert session.state("banking") == {
        "ActiveState": "inactive",
        "Result": "success",
        "ExecMainStatus": "143",
    }
    assert not session.box.root_path("/run/vmsilo/banking/sound.sock").exists()
    assert processes(session.box, "banking") == []
    # every child stopped on SIGTERM (pw-container's backend too), none needed SIGKILL
    log = session.box.journal(f"--cursor={cursor}", "-u", "vmsilo-banking.service")
    assert "did not exit" not in log and "SIGKILL" not in log, log


VM_CONTEXT = json.dumps(
    {
        "pipewire.access": "restricted",
        "pipewire.sec.engine": "org.vmsilo",
        "pipewire.sec.app-id": "banking",
    }
)


def node_names(box: Container, *, in_vm_context: bool) -> set[str]:
    """The PipeWire nodes the VM user's client sees: in vmsilo's security context (as a VM's
    sound backend without capture is), or as an ordinary client."""
    out = "/srv/record/pw-dump.json"
    dump = f"pw-dump > {out}"
    argv = ["pw-container", "-P", VM_CONTEXT, "--", dump] if in_vm_context else ["sh", "-c", dump]
    r = box.in_session(*argv, timeout=30)
    assert r.returncode == 0, r.stderr
    objects = json.loads(box.root_path(out).read_text())
    return {o["info"]["props"].get("node.name") for o in objects if o["type"].endswith(":Node")}


def recorded_peak(box: Container, target: str) -> int:
    """The loudest sample a client of the VM's context records from ``target`` in 1.5 s (0
    when it records nothing)."""
    out = "/srv/record/vm-recording.wav"
    record = f"timeout 1.5 pw-record --target {target} --channels 1 {out}"
    box.in_session("pw-container", "-P", VM_CONTEXT, "--", record, timeout=30)
    path = box.root_path(out)
    if not path.exists() or path.stat().st_size <= 44:  # a WAV header, no samples
        return 0
    with wave.open(str(path)) as w:
        frames, width = w.readframes(w.getnframes()), w.getsampwidth()
    return max(
        abs(int.from_bytes(frames[i : i + width], "little", signed=True))
        for i in range(0, len(frames), width)
    )


def test_the_capture_rule_holds_in_the_real_wireplumber(session: Host) -> None:
    box = session.box
    # the component is required: WirePlumber would not run had it failed to load
    wp = box.show("wireplumber.service", "ActiveState", "NRestarts", user=True)
    assert wp == {"ActiveState": "active", "NRestarts": "0"}
    r = box.in_session(
        "pw-cli",
        "create-node",
        "adapter",
        "{ factory.name=support.null-audio-sink node.name=vmsilo-test-mic "
        "media.class=Audio/Source/Virtual object.linger=true audio.position=[MONO] }",
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    # an ordinary client sees the capture node; a client of a VM's context does not, and what
    # it records from it is silence
    assert "vmsilo-test-mic" in node_names(box, in_vm_context=False)
    seen = node_names(box, in_vm_context=True)
    assert "vmsilo-test-mic" not in seen and "Dummy-Driver" in seen
    assert recorded_peak(box, "vmsilo-test-mic") == 0


def test_without_the_users_pipewire_a_vm_with_sound_refuses_at_once(session: Host) -> None:
    """No PipeWire of the VM user (nobody logged in, no lingering): the launcher says why at
    once, naming the option, instead of starting a backend that cannot play. The user's
    PipeWire is stopped and its socket removed, which is what the launcher sees without a
    session (stopping the whole user manager hangs in this container)."""
    box = session.box
    box.user_manager("systemctl", "stop", "pipewire.socket", "pipewire.service")
    box.run("rm", "-f", f"/run/user/{VM_UID}/pipewire-0", check=True)
    try:
        r = session.command("vm-start", "banking")
        assert box.wait_for("vmsilo-banking.service", ("failed",)) == "failed", r.stderr
        log = box.journal("-u", "vmsilo-banking.service", "-n", "20")
        assert (
            f"{session.option('banking')}.sound.playback: sound needs the PipeWire of the VM "
            "user's session, and it is not running (no socket /run/user/1000/pipewire-0)"
        ) in log, log
    finally:
        box.run("systemctl", "reset-failed", "vmsilo-banking.service")
        box.user_manager("systemctl", "start", "pipewire.socket", "wireplumber.service")


def test_a_vm_removed_by_a_switch_is_stopped(session: Host) -> None:
    """switch-to-configuration stops an active unit that the new generation no longer has
    (restartIfChanged = false does not keep it); the test does that step itself."""
    box = session.box
    assert session.state("router")["ActiveState"] == "active"
    units = box.root_path("/usr/local/lib/systemd/system")
    assert (units / "vmsilo-router.service").exists()
    assert processes(box, "router")
    r = box.run("systemctl", "stop", "vmsilo-router.service")
    assert r.returncode == 0, r.stderr
    assert session.state("router") == {
        "ActiveState": "inactive",
        "Result": "success",
        "ExecMainStatus": "143",
    }
    assert processes(box, "router") == []
