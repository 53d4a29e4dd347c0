"""End to end: a generated launcher run with recording stand-ins for crosvm, virtiofsd and the
sound backend, the real qemu-img and bash. The stand-ins must get exactly the planned argv, the
overlay must exist with its virtual size, and nothing may be left after crosvm ends or dies."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from vmsilo_nix.config.artifacts import Artifacts, VmArtifacts
from vmsilo_nix.pipeline import check
from vmsilo_nix.plan.argv import flatten
from vmsilo_nix.plan.host import Plan, plan
from vmsilo_nix.plan.layout import Layout
from vmsilo_nix.render import launcher
from vmsilo_nix.render.generate import build_tree, launcher_path
from vmsilo_nix.render.tree import write_tree

from .procs import alive, gone

STANDIN = Path(__file__).parent / "standins" / "record.py"
pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img not installed")

CONFIG: dict[str, Any] = {
    "user": "alice",
    "nixosVms": [
        {
            "name": "box",
            "gpu": False,
            "rootOverlay": {"size": "2G"},
            "sound": {"capture": True},
            "sharedHome": "@TMP@/box home",
            "sharedDirectories": {"docs": {"path": "@TMP@/a,b $HOME", "readonly": True}},
            "network": {"interfaces": {"wan": {"tap": {"name": "vt-box"}}}},
            "kernelParams": ["quiet", "x='y z'"],
        },
        {"name": "unbuilt", "gpu": False, "sharedHome": False},
    ],
}


class Rig:
    def __init__(self, tmp: Path, config_data: dict[str, Any] = CONFIG) -> None:
        self.tmp = tmp
        # shared directories below tmp (@TMP@), made as the user would make them
        config_data = json.loads(json.dumps(config_data).replace("@TMP@", str(tmp)))
        for vm in config_data["nixosVms"]:
            if isinstance(vm.get("sharedHome"), str):
                Path(vm["sharedHome"]).mkdir(parents=True)
            for share in vm.get("sharedDirectories", {}).values():
                Path(share["path"]).mkdir(parents=True)
        # the user's session: a runtime directory with a PipeWire socket
        self.session = tmp / "session"
        self.session.mkdir()
        self.pipewire = socket.socket(socket.AF_UNIX)
        self.pipewire.bind(str(self.session / "pipewire-0"))
        self.pipewire.listen()
        self.record = tmp / "record"
        self.record.mkdir()
        self.bin = tmp / "bin"
        self.bin.mkdir()
        for name in ("crosvm", "virtiofsd", "vhost-device-sound", "pw-container", "ip"):
            (self.bin / name).symlink_to(STANDIN)
        layout = Layout(run_dir=str(tmp / "run"), state_dir=str(tmp / "state dir"))
        built = VmArtifacts(
            kernel="/k/bzImage", initrd="/k/initrd", root_image="/k/root.img", toplevel="/k/system"
        )
        self.artifacts = Artifacts(vms={vm["name"]: built for vm in config_data["nixosVms"]})
        self.artifacts = attrs.evolve(
            self.artifacts, vms={k: v for k, v in self.artifacts.vms.items() if k != "unbuilt"}
        )
        config = check(config_data)
        self.plan: Plan = plan(config, self.artifacts, layout)
        self.out = tmp / "out"
        write_tree(self.out, build_tree(config, self.plan, self.artifacts))
        self.env = {
            **os.environ,
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            "VMSILO_RECORD": str(self.record),
            "XDG_RUNTIME_DIR": str(self.session),
            "VMSILO_BEHAVE_VIRTIOFSD": "serve",
            "VMSILO_BEHAVE_VHOST_DEVICE_SOUND": "serve",
        }

    def launch(self, vm: str, **behave: str) -> subprocess.Popen[str]:
        env = {**self.env, **{f"VMSILO_BEHAVE_{k.upper()}": v for k, v in behave.items()}}
        return subprocess.Popen(
            [str(self.out / launcher_path(vm))],
            env=env,
            text=True,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    def calls(self, name: str) -> list[list[str]]:
        path = self.record / f"{name}.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def pids(self, name: str) -> list[int]:
        path = self.record / f"{name}.pids"
        return [int(x) for x in path.read_text().split()] if path.exists() else []

    def wait_for(self, name: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while not self.calls(name):
            assert time.monotonic() < deadline, f"{name} never started"
            time.sleep(0.05)

    def assert_clean(self) -> None:
        for name in ("crosvm", "virtiofsd", "vhost-device-sound"):
            for pid in self.pids(name):
                assert gone(pid), f"{name} ({pid}) left running"
        run = Path(self.plan.vms["box"].control_socket).parent
        assert sorted(p.name for p in run.iterdir()) == []  # sockets, pid files, fingerprint
        assert not Path(str(self.plan.vms["box"].overlay.path)).exists()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    for name in ("crosvm", "virtiofsd", "vhost-device-sound"):
        for pid in r.pids(name):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_standins_get_exactly_the_planned_argv(rig: Rig) -> None:
    proc = rig.launch("box", crosvm="sleep")
    rig.wait_for("crosvm")
    box = rig.plan.vms["box"]
    assert rig.calls("crosvm") == [flatten(box.crosvm)[1:]]
    assert rig.calls("virtiofsd") == [flatten(s.argv)[1:] for s in box.virtiofsd]
    assert box.sound is not None
    assert rig.calls("vhost-device-sound") == [flatten(box.sound.argv)[1:]]
    assert rig.calls("ip") == [["link", "show", "dev", "vt-box"]]  # the TAP exists already
    # the overlay exists, fresh, with the requested virtual size, while the VM runs
    info = json.loads(
        subprocess.run(
            ["qemu-img", "info", "--output=json", str(box.overlay.path)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    assert (info["format"], info["virtual-size"]) == ("qcow2", 2 * 1024**3)
    running = Path(box.control_socket).parent / "fingerprint"
    manifest = json.loads((rig.out / "share/vmsilo/manifest.json").read_text())
    assert running.read_text().strip() == manifest["vms"]["box"]["fingerprint"]
    for pid in rig.pids("crosvm"):
        os.kill(pid, signal.SIGKILL)  # crosvm dies
    assert proc.wait(timeout=20) == 128 + signal.SIGKILL
    rig.assert_clean()


def test_clean_exit_of_crosvm(rig: Rig) -> None:
    proc = rig.launch("box", crosvm="exit:0")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "crosvm exited with status 0" in err
    rig.assert_clean()


def test_launcher_stopped_by_systemd(rig: Rig) -> None:
    proc = rig.launch("box", crosvm="sleep")
    rig.wait_for("crosvm")
    proc.send_signal(signal.SIGTERM)  # what `systemctl stop` sends
    assert proc.wait(timeout=20) == 143
    rig.assert_clean()


def test_a_second_sigterm_during_cleanup_does_not_cut_it_short(rig: Rig) -> None:
    """vm-stop's forced path sends `crosvm stop`, then `systemctl stop`; a host shutdown can
    land a second SIGTERM while the launcher waits for a child slow to exit. The cleanup still
    finishes: nothing it made is left behind."""
    proc = rig.launch("box", crosvm="sleep", virtiofsd="serve-slow-exit:1.5")
    rig.wait_for("crosvm")
    proc.send_signal(signal.SIGTERM)
    time.sleep(0.5)  # the cleanup is waiting for the slow virtiofsd
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 143
    rig.assert_clean()


def test_a_share_that_fails_stops_the_start(rig: Rig) -> None:
    proc = rig.launch("box", virtiofsd="exit:1", crosvm="sleep")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 1
    assert "virtiofsd of share home exited before creating its socket" in err
    assert rig.calls("crosvm") == []
    rig.assert_clean()


def test_missing_tap_is_created_or_reported(rig: Rig) -> None:
    # `ip link show` fails: the launcher runs the planned set-up (the stand-in records it)
    proc = rig.launch("box", ip="exit:1", crosvm="exit:0")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 1 and "cannot create TAP vt-box" in err
    assert rig.calls("ip") == [
        ["link", "show", "dev", "vt-box"],
        ["tuntap", "add", "dev", "vt-box", "mode", "tap", "user", "alice", "vnet_hdr"],
        ["link", "delete", "dev", "vt-box"],  # what the failed set-up may have left
    ]
    rig.assert_clean()


def test_a_tap_the_launcher_made_is_removed_when_the_vm_stops(rig: Rig) -> None:
    # the TAP is missing (`ip link show` fails) and is made here; after crosvm, it goes
    proc = rig.launch("box", ip="exit-when:show:1", crosvm="exit:0")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    (tap,) = rig.plan.vms["box"].network.taps
    assert rig.calls("ip") == [
        ["link", "show", "dev", "vt-box"],
        *(cmd[1:] for cmd in tap.setup_argv("ip")),
        *(cmd[1:] for cmd in tap.teardown_argv("ip")),
    ]
    rig.assert_clean()


def test_a_tap_the_host_made_is_left_to_the_host(rig: Rig) -> None:
    proc = rig.launch("box", crosvm="exit:0")  # `ip link show` succeeds: the TAP exists
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert rig.calls("ip") == [["link", "show", "dev", "vt-box"]]


def test_unbuilt_vm_refuses_to_start(rig: Rig) -> None:
    proc = rig.launch("unbuilt")
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 1
    assert "VM unbuilt cannot start: not built yet: initrd, kernel, rootImage, toplevel" in err
    assert rig.calls("crosvm") == []


SLOW = {
    "user": "alice",
    "nixosVms": [
        {
            "name": "wl",
            "sharedHome": "@TMP@/wl",
            "sound": {"playback": False},
            "sharedDirectories": {"docs": {"path": "@TMP@/docs"}},
        }
    ],
}


def _wait_socket(path: Path, timeout: float = 20) -> float:
    deadline = time.monotonic() + timeout
    while not path.is_socket():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)
    return time.monotonic()


@pytest.fixture
def slow_rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    """Two virtiofsd that take 2.5 s each: together longer than one socket wait (4 s)."""
    monkeypatch.setattr(launcher, "SOCKET_WAIT_SECONDS", 4)
    r = Rig(tmp_path, SLOW)
    r.env["VMSILO_BEHAVE_VIRTIOFSD"] = "serve-after:2.5"
    yield r
    for name in ("crosvm", "virtiofsd"):
        for pid in r.pids(name):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def test_wayland_wait_counts_from_its_own_start(slow_rig: Rig) -> None:
    vm = slow_rig.plan.vms["wl"]
    assert vm.wayland is not None and [s.tag for s in vm.virtiofsd] == ["home", "docs"]
    proc = slow_rig.launch("wl", crosvm="sleep")
    _wait_socket(Path(vm.virtiofsd[1].socket))  # about 5 s after the start: both waits done
    time.sleep(1.5)  # the proxy is slow too, but well within its own 4 s
    proxy = socket.socket(socket.AF_UNIX)
    proxy.bind(vm.wayland.socket)
    proxy.listen()
    try:
        slow_rig.wait_for("crosvm")
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 143, err
        assert "giving up" not in err
    finally:
        proxy.close()


def test_wayland_wait_says_what_it_waited_for_and_how_long(slow_rig: Rig) -> None:
    vm = slow_rig.plan.vms["wl"]
    assert vm.wayland is not None
    proc = slow_rig.launch("wl", crosvm="sleep")
    began = _wait_socket(Path(vm.virtiofsd[1].socket))
    _, err = proc.communicate(timeout=30)
    waited = time.monotonic() - began
    assert proc.returncode == 1
    assert (
        "waited 4s for the VM's Wayland proxy (vmsilo-wl-wayland.service, a user unit of the VM "
        "user's graphical session: is that session running?) "
        f"to create its socket {vm.wayland.socket}; giving up"
    ) in err
    assert waited >= 3.9  # the whole wait, although the launcher started more than 4 s ago
    assert slow_rig.calls("crosvm") == []


@pytest.mark.parametrize(
    ("share", "option"),
    [
        ("home", "sharedHome"),
        ("docs", "sharedDirectories.docs.path"),
    ],
)
def test_a_missing_shared_directory_refuses_the_start_naming_the_option(
    rig: Rig, share: str, option: str
) -> None:
    box = rig.plan.vms["box"]
    (missing,) = [s.shared_dir for s in box.virtiofsd if s.tag == share]
    Path(missing).rmdir()
    proc = rig.launch("box", crosvm="sleep")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 1
    assert err == (
        f"vmsilo-launch[box]: programs.vmsilo.nixosVms[0] (box).{option}: the directory "
        f"{missing} does not exist; create it (the VM user must be able to read it) before "
        "starting box\n"
    )
    assert rig.calls("crosvm") == []


def test_the_default_home_says_the_host_module_makes_it(tmp_path: Path) -> None:
    rig = Rig(tmp_path, {"user": "alice", "nixosVms": [{"name": "box", "gpu": False}]})
    (home,) = rig.plan.vms["box"].virtiofsd
    assert home.shared_dir == "/shared/box" and not Path(home.shared_dir).exists()
    proc = rig.launch("box", crosvm="sleep")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 1
    assert err == (
        "vmsilo-launch[box]: programs.vmsilo.nixosVms[0] (box).sharedHome: the directory "
        "/shared/box does not exist; vmsilo's host module creates it at boot and at every switch "
        "(systemd-tmpfiles); as root, run systemd-tmpfiles --create, or switch to the "
        "configuration again\n"
    )
    assert rig.calls("virtiofsd") == [] and rig.calls("crosvm") == []


def test_without_the_users_pipewire_sound_refuses_at_once(rig: Rig) -> None:
    """The launcher runs in a system unit: it finds the user's PipeWire under
    /run/user/<uid> when the unit gives no XDG_RUNTIME_DIR, and says at once when there is
    none (no session) instead of starting a backend that cannot play."""
    env = {k: v for k, v in rig.env.items() if k != "XDG_RUNTIME_DIR"}
    rig.env = env
    proc = rig.launch("box", crosvm="sleep")
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 1
    socket_path = f"/run/user/{os.getuid()}/pipewire-0"
    assert (
        "vmsilo-launch[box]: programs.vmsilo.nixosVms[0] (box).sound.capture: sound needs the "
        "PipeWire of the VM user's session, and it is not running (no socket "
        f"{socket_path}); log in first"
    ) in err
    assert rig.calls("vhost-device-sound") == [] and rig.calls("crosvm") == []
    # with the session's runtime directory, it starts (the backend sees it too)
    rig.env["XDG_RUNTIME_DIR"] = str(rig.session)
    proc = rig.launch("box", crosvm="sleep")
    rig.wait_for("crosvm")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=20)
    assert proc.returncode == 143
