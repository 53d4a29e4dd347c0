"""Real NixOS: hosts importing the vmsilo module, evaluated with a real nixpkgs (the example,
and a host using every option family), through eval-config.nix and through the flake. Every
host toplevel, `programs.vmsilo.package` and guest toplevel and root image give derivation
paths, no assertion fails and nothing warns; the rendered units pass `systemd-analyze verify`.

Needs VMSILO_NIX (a Nix >= 2.18) and VMSILO_NIXPKGS (a nixpkgs tree); skipped without them.
Nothing is built: nixpkgs cannot be built offline. Each evaluation costs seconds and over a GiB,
so the hosts are evaluated once per module, several in one run of Nix."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from .conftest import DRV, NIX, NIXPKGS, OFFLINE, ROOT, needs_real_nixos

REAL = ROOT / "tests/nix/real"
pytestmark = needs_real_nixos


def nix(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NIX, *OFFLINE, *args], capture_output=True, text=True, check=False, timeout=900
    )


def eval_real(file: str, attr: str, **argstr: str) -> tuple[Any, str]:
    """``attr`` of a .nix file of tests/nix/real (its function given the real nixpkgs and
    ``argstr``) as JSON, and Nix's stderr."""
    args: list[str] = []
    for name, value in {"nixpkgs": NIXPKGS, **argstr}.items():
        args += ["--argstr", name, value]
    r = nix("eval", "--json", *args, "--file", str(REAL / file), attr)
    assert r.returncode == 0, r.stderr[-4000:]
    return json.loads(r.stdout), r.stderr


def evaluate(hosts: Sequence[str]) -> tuple[dict[str, Any], str]:
    """The facts (tests/nix/real/facts.nix) of the given hosts, and Nix's stderr."""
    facts, stderr = eval_real("eval.nix", "facts", hosts=json.dumps(list(hosts)))
    return facts, stderr


@pytest.fixture(scope="module")
def small() -> tuple[dict[str, Any], str]:
    return evaluate(["example", "sommelier-broken", "scripted-initrd", "no-pipewire"])


@pytest.fixture(scope="module")
def families() -> tuple[dict[str, Any], str]:
    return evaluate(["families"])


def no_warnings(stderr: str) -> None:
    """Nix prints evaluation warnings (lib.warn, NixOS `warnings`) on stderr."""
    assert [line for line in stderr.splitlines() if "warning" in line.lower()] == []


def assert_evaluates(h: dict[str, Any]) -> None:
    assert h["failedAssertions"] == []
    assert h["warnings"] == []
    assert DRV.match(h["toplevel"]) and DRV.match(h["package"])
    assert h["guests"]
    for name, g in h["guests"].items():
        assert g["failedAssertions"] == [] and g["warnings"] == [], name
        for part in ("toplevel", "rootImage", "initrd"):
            assert DRV.match(g[part]), (name, part)


def test_the_example_evaluates(small: tuple[dict[str, Any], str]) -> None:
    facts, stderr = small
    h = facts["example"]
    assert_evaluates(h)
    no_warnings(stderr)
    # the example's four VMs share one guest system
    assert sorted(h["guests"]) == ["banking", "net", "vault", "work"]
    assert len({g["toplevel"] for g in h["guests"].values()}) == 1


def test_every_option_family_evaluates(families: tuple[dict[str, Any], str]) -> None:
    facts, stderr = families
    h = facts["families"]
    assert_evaluates(h)
    no_warnings(stderr)
    g = h["guests"]
    # guestPrograms come in program images (test_real_programs), not in the shared base;
    # work's guestConfig gives it a system of its own with its programs installed
    assert "hello" not in g["banking"]["systemPackages"]
    assert "jq" not in g["chat"]["systemPackages"]
    assert g["work"]["systemPackages"].count("hello") == 1
    # guestConfig gives work a system of its own, with what the module added
    assert g["work"]["toplevel"] != g["banking"]["toplevel"]
    assert g["net"]["channel"] is True and g["banking"]["channel"] is False
    assert "sommelier --virtgpu-channel" in g["chat"]["userUnits"]["vmsilo-wayland-proxy.service"]


def test_the_guest_boots_with_systemd_in_stage_1(families: tuple[dict[str, Any], str]) -> None:
    g = families[0]["families"]["guests"]["chat"]
    assert g["initrdSystemd"] is True
    fs = g["fileSystems"]
    assert fs["/"]["fsType"] == "tmpfs"
    assert fs["/nix/.ro-store"] | {"options": None} == {
        "device": "/dev/vda",
        "fsType": "squashfs",
        "neededForBoot": True,
        "options": None,
    }
    assert "ro" in fs["/nix/.ro-store"]["options"]
    store = fs["/nix/store"]
    assert store["fsType"] == "overlay" and store["neededForBoot"] is True
    assert store["options"][:3] == [
        "lowerdir=/sysroot/nix/.ro-store:/sysroot/nix/.ro-programs",  # the program image
        "upperdir=/sysroot/nix/.rw-store/upper",
        "workdir=/sysroot/nix/.rw-store/work",
    ]
    disk = g["initrdUnits"]["vmsilo-rw-disk.service"]
    assert "ConditionKernelCommandLine=vmsilo.overlay=qcow2" in disk
    assert "Before=rw-sysroot-nix-store.service" in disk
    assert (
        "mkdir -p -m 0755 /sysroot/nix/.rw-store/upper"
        in (g["initrdUnits"]["rw-sysroot-nix-store.service"])
    )
    assert "e2fsprogs" in g["initrdBin"]


def test_a_scripted_initrd_is_refused_by_name(small: tuple[dict[str, Any], str]) -> None:
    [message] = small[0]["scripted-initrd"]["failedAssertions"]
    assert message.startswith("programs.vmsilo.nixosVms[0] (old): the guest system: ")
    assert "boot.initrd.systemd.enable = false" in message


def test_broken_sommelier_is_our_assertion(small: tuple[dict[str, Any], str]) -> None:
    [message] = small[0]["sommelier-broken"]["failedAssertions"]
    assert message.startswith('programs.vmsilo.nixosVms[1] (chat).waylandProxy = "sommelier"')
    assert "programs.vmsilo._internal.sommelier" in message


def test_sound_without_pipewire_is_refused_by_name(small: tuple[dict[str, Any], str]) -> None:
    [message] = small[0]["no-pipewire"]["failedAssertions"]
    assert message == (
        "programs.vmsilo.nixosVms[1] (music).sound: the VM has sound (sound.playback is on by "
        "default), which plays through the user's PipeWire, but services.pipewire.enable (with "
        "services.pipewire.wireplumber.enable) is not set; enable PipeWire, or set "
        "sound.playback = false and sound.capture = false."
    )


def test_units(families: tuple[dict[str, Any], str]) -> None:
    h = families[0]["families"]
    units = h["units"]
    tree = h["packageOut"]
    # no socket starts a VM; the daemons run their packages' programs
    assert sorted(units) == [
        "vmsilo-balloond.service",
        "vmsilo-banking-taps.service",
        "vmsilo-banking.service",
        "vmsilo-chat.service",
        "vmsilo-net.service",
        "vmsilo-work-taps.service",
        "vmsilo-work.service",
    ]
    work = units["vmsilo-work.service"]
    assert f"ExecStart={tree}/libexec/vmsilo/work/launch" in work
    assert "Requires=vmsilo-net.service vmsilo-work-taps.service" in work
    assert "After=vmsilo-net.service vmsilo-work-taps.service" in work
    assert "User=bob" in work and "SupplementaryGroups=kvm" in work
    assert "RuntimeDirectory" not in work  # tmpfiles' directory outlives the VM
    assert "X-RestartIfChanged=false" in work
    assert "LimitMEMLOCK" not in work
    assert "LimitMEMLOCK=infinity" in units["vmsilo-net.service"]  # VFIO
    assert "WantedBy" not in work
    wanted = {n for n, t in units.items() if "WantedBy=multi-user.target" in t}
    # banking (autoStart, default GPU) starts with the user's graphical session, not at boot
    assert wanted == {"vmsilo-balloond.service", "vmsilo-net.service"}
    autostart = h["userUnits"]["vmsilo-banking-autostart.service"]
    assert "WantedBy=graphical-session.target" in autostart
    assert f"ExecStart={tree}/bin/vm-start banking" in autostart
    assert "After=graphical-session.target vmsilo-banking-wayland.service pipewire.socket" in (
        autostart
    )
    assert f"ExecStart={tree}/libexec/vmsilo/balloond" in units["vmsilo-balloond.service"]
    assert (
        f"ExecStart={tree}/libexec/vmsilo/banking/taps-up" in (units["vmsilo-banking-taps.service"])
    )
    assert sorted(h["userUnits"]) == [
        "vmsilo-banking-autostart.service",
        "vmsilo-banking-wayland.service",
        "vmsilo-chat-wayland.service",
        "vmsilo-tray.service",
        "vmsilo-work-wayland.service",
    ]
    assert f"ExecStart={tree}/libexec/vmsilo/tray" in h["userUnits"]["vmsilo-tray.service"]


def test_removing_a_vm_removes_its_unit(families: tuple[dict[str, Any], str]) -> None:
    """switch-to-configuration stops the units that are gone: the specialisation without the
    chat VM has every unit but chat's."""
    h = families[0]["families"]
    after = h["specialisations"]["without-chat"]
    assert set(h["units"]) - set(after) == {"vmsilo-chat.service"}
    assert set(after) <= set(h["units"])


def test_rules(families: tuple[dict[str, Any], str]) -> None:
    h = families[0]["families"]
    assert h["nat"] == {
        "enable": True,
        "externalInterface": "eth0",
        "internalInterfaces": ["banking-0"],
    }
    assert 'KERNEL=="0000:05:00.0", ATTR{driver_override}="vfio-pci"' in h["udev"]
    assert 'SUBSYSTEM=="vfio", KERNEL!="vfio", OWNER="bob", MODE="0600"' in h["udev"]
    assert h["initrdKernelModules"].count("vfio-pci") == 1
    assert h["tmpfiles"] == [
        "d /run/vmsilo 0755 root root - -",
        "d /run/vmsilo/banking 0700 bob users - -",
        "d /run/vmsilo/work 0700 bob users - -",
        "d /run/vmsilo/chat 0700 bob users - -",
        "d /run/vmsilo/net 0700 bob users - -",
    ]
    assert h["polkitEnabled"] is True
    rule = h["polkit"]
    assert '"org.freedesktop.systemd1.manage-units"' in rule
    assert (
        '["vmsilo-banking.service","vmsilo-work.service","vmsilo-chat.service",'
        '"vmsilo-net.service"].indexOf(action.lookup("unit"))'
    ) in rule
    assert 'subject.user == "bob"' in rule
    assert h["wireplumber"]["90-vmsilo-deny-capture"]["wireplumber.profiles"] == {
        "main": {"custom.vmsilo-deny-capture": "required"}
    }
    assert h["wireplumberScripts"]["vmsilo/deny-capture.lua"] == (
        'local engine = "org.vmsilo"\n' + (ROOT / "nix/vmsilo-deny-capture.lua").read_text()
    )
    assert "setpriv --reuid=bob" in h["activation"]
    assert h["preSwitch"].strip().endswith(".json")


def verify(units: dict[str, str], where: Path, user: bool = False) -> list[str]:
    """What `systemd-analyze verify` says about ``units`` beyond the programs not being built
    (nothing can be, offline)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    where.mkdir()
    (where / "xdg").mkdir(mode=0o700)
    for name, text in units.items():
        (where / name).write_text(text)
    mode = ["--user"] if user else []
    r = subprocess.run(
        [analyze, "verify", *mode, "--man=no", "--recursive-errors=no", *sorted(units)],
        cwd=where,
        env={**os.environ, "SYSTEMD_UNIT_PATH": f"{where}:", "XDG_RUNTIME_DIR": str(where / "xdg")},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    missing = re.compile(r"^[\w@.-]+\.service: Command /nix/store/\S+ is not executable: ")
    return [line for line in (r.stdout + r.stderr).splitlines() if not missing.match(line)]


def test_systemd_analyze_verifies_the_units(
    families: tuple[dict[str, Any], str], tmp_path: Path
) -> None:
    h = families[0]["families"]
    assert verify(h["units"], tmp_path / "host") == []
    assert verify(h["userUnits"], tmp_path / "user", user=True) == []
    for name in ("chat", "work"):  # sommelier and not, with and without a guestConfig
        g = h["guests"][name]
        assert verify(g["units"] | g["initrdUnits"], tmp_path / name) == []
        assert verify(g["userUnits"], tmp_path / f"{name}-user", user=True) == []


def test_flake_check(tmp_path: Path) -> None:
    """`nix flake check --no-build` with nixpkgs overridden: the package, the example host's
    toplevel, the NixOS VM test of a host (which cannot run here) and the dev shell evaluate."""
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    # the checkout as a flake of its own files, whatever is committed or not
    src = tmp_path / "src"
    shutil.copytree(
        ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", "*_cache")
    )
    r = nix(
        "flake",
        "check",
        "--no-build",
        "--no-write-lock-file",
        "--override-input",
        "nixpkgs",
        f"path:{NIXPKGS}",
        f"path:{src}",
    )
    assert r.returncode == 0, r.stderr[-4000:]
    evaluated = re.findall(
        r"checking derivation (\S+)\.\.\.\nderivation evaluated to (\S+)", r.stderr
    )
    names = {name for name, drv in evaluated if DRV.match(drv)}
    assert {
        "checks.x86_64-linux.package",
        "checks.x86_64-linux.example-host",
        "checks.x86_64-linux.host",
    } <= names
    assert "nixos-system" in dict(evaluated)["checks.x86_64-linux.example-host"]
    assert "vm-test-run-vmsilo-host" in dict(evaluated)["checks.x86_64-linux.host"]
    warnings = [
        line
        for line in r.stderr.splitlines()
        if line.startswith("warning:")
        and "not writing modified lock file" not in line
        and "incompatible systems" not in line
    ]
    assert warnings == []
