"""The Nix side: every .nix file parses; the host and guest modules, evaluated by the real
nixpkgs module system with stand-in NixOS options and a stand-in pkgs, set what they should;
and the host module's package, built by Nix, is the tree `vmsilo generate` writes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from vmsilo_nix.balloond import cli as balloond_cli
from vmsilo_nix.config.artifacts import load_artifacts
from vmsilo_nix.nixeval import nix
from vmsilo_nix.pipeline import check
from vmsilo_nix.plan.host import plan
from vmsilo_nix.render.generate import build_tree
from vmsilo_nix.render.tree import File, read_tree

from .conftest import EXAMPLES, ROOT, needs_nix
from .test_cli import SESSION_VMS

HOST_EVAL = ROOT / "tests/nix/host-eval.nix"
GUEST_EVAL = ROOT / "tests/nix/guest-eval.nix"
# Unsandboxed builds as root, so that the stand-in engine can run this checkout's Python.
BUILD = nix.NixOptions(options={"substituters": "", "build-users-group": ""})


def build_outputs(drvs: list[str]) -> Mapping[str, Mapping[str, str]]:
    """Build with real nix; each drvPath's outputs (the build log is not needed here)."""
    outcome = nix.build(drvs, lambda _: None, opts=BUILD)
    assert outcome.built is not None, outcome.error
    return outcome.built


NIX_FILES = sorted(
    str(p)
    for p in [
        *ROOT.glob("*.nix"),
        *ROOT.glob("nix/*.nix"),
        *ROOT.glob("examples/*.nix"),
        *ROOT.glob("vmsilo_nix/nixeval/exprs/*.nix"),
        *ROOT.glob("tests/nix/**/*.nix"),
    ]
)


@needs_nix
@pytest.mark.parametrize("path", NIX_FILES, ids=lambda p: str(Path(p).relative_to(ROOT)))
def test_every_nix_file_parses(path: str) -> None:
    instantiate = shutil.which("nix-instantiate")
    assert instantiate is not None
    subprocess.run([instantiate, "--parse", path], check=True, capture_output=True)


def host(
    monkeypatch: pytest.MonkeyPatch,
    lib: Path,
    extra: dict[str, Any] | None = None,
    config: Path = EXAMPLES / "desktop.nix",
) -> Any:
    monkeypatch.setenv("VMSILO_NIXPKGS_LIB", str(lib))
    monkeypatch.setenv("VMSILO_ROOT", str(ROOT))
    monkeypatch.setenv("VMSILO_PYTHON", sys.executable)
    monkeypatch.setenv("CONFIG_FILE", str(config))
    monkeypatch.setenv("EXTRA_JSON", json.dumps(extra or {}))
    return nix.eval_json_file(str(HOST_EVAL))


@needs_nix
def test_host_module_units_for_the_example(
    monkeypatch: pytest.MonkeyPatch, nixpkgs_lib: Path
) -> None:
    h = host(monkeypatch, nixpkgs_lib)
    tree = h["packageOut"]
    services = h["services"]
    # one unit per VM (removing a VM removes its unit, so switching stops it), not a template
    assert sorted(services) == sorted(
        [
            "vmsilo-banking",
            "vmsilo-work",
            "vmsilo-vault",
            "vmsilo-net",
            "vmsilo-balloond",
            "vmsilo-banking-taps",
            "vmsilo-work-taps",
            "vmsilo-net-taps",
        ]
    )
    work = services["vmsilo-work"]
    assert work["serviceConfig"]["ExecStart"] == f"{tree}/libexec/vmsilo/work/launch"
    assert work["serviceConfig"]["User"] == "alice"
    assert work["requires"] == ["vmsilo-net.service", "vmsilo-work-taps.service"]
    assert work["wantedBy"] == []  # socket activation
    assert services["vmsilo-net"]["wantedBy"] == ["multi-user.target"]  # autoStart
    assert services["vmsilo-banking-taps"]["serviceConfig"]["ExecStart"] == (
        f"{tree}/libexec/vmsilo/banking/taps-up"
    )
    assert h["sockets"] == {}  # the polkit rule lets the user start VMs, no socket does
    assert "vmsilo-work.service" in h["polkit"] and 'subject.user == "alice"' in h["polkit"]
    assert "d /run/vmsilo/work 0700 alice users - -" in h["tmpfiles"]
    assert sorted(h["userServices"]) == [
        "vmsilo-banking-wayland",
        "vmsilo-tray",
        "vmsilo-work-wayland",
    ]
    tray = h["userServiceUnits"]["vmsilo-tray"]
    assert tray["serviceConfig"] == {
        "ExecStart": f"{tree}/libexec/vmsilo/tray",
        "Restart": "on-failure",
    }
    assert tray["wantedBy"] == ["graphical-session.target"]
    assert h["trayPackage"].endswith("-vmsilo-tray-0")  # nix/tray.nix over the engine
    assert list(h["guestTrayLogLevels"].values()) == ["info"]
    assert 'KERNEL=="0000:03:00.0", ATTR{driver_override}="vfio-pci"' in h["udev"]
    assert h["initrdModules"] == ["vfio-pci"]
    assert h["preSwitch"].strip().endswith(f"check --host-paths --file {h['configJson']}")
    assert "vm-status" in h["activation"]
    assert h["systemPackages"] == [tree]  # with bash completion
    internal = h["internal"]
    assert sorted(internal["vmScripts"]) == ["banking", "net", "vault", "work"]
    assert internal["userScripts"]["vm-run"] == f"{tree}/bin/vm-run"
    assert internal["bashCompletionScript"] == (f"{tree}/share/bash-completion/completions/vm-run")
    assert internal["desktopFilesPackage"] == tree
    # the example's four VMs share one guest system
    assert h["guestSystems"] == 1


@needs_nix
def test_host_module_agrees_with_the_engine(
    monkeypatch: pytest.MonkeyPatch, nixpkgs_lib: Path
) -> None:
    """The two rules the module states in Nix (TAP names for NAT, which VMs have Wayland)
    give what the Python plan gives."""
    h = host(monkeypatch, nixpkgs_lib)
    p = plan(check(json.loads((EXAMPLES / "desktop.json").read_text())))
    assert p.nat is not None
    assert h["nat"] == {
        "enable": True,
        "externalInterface": p.nat.external_interface,
        "internalInterfaces": list(p.nat.internal_interfaces),
    }
    assert sorted(h["internal"]["proxyScripts"]) == sorted(
        n for n, v in p.vms.items() if v.wayland is not None
    )


@needs_nix
def test_autostart_waits_for_the_session_as_the_engine_says(
    monkeypatch: pytest.MonkeyPatch, nixpkgs_lib: Path, tmp_path: Path
) -> None:
    """The module's sessionTarget and the engine's VmPlan.needs: a VM the engine says needs
    nothing of the user starts at boot; any other autoStart VM is started by a user unit of
    the target its devices need, after the units that make them."""
    data = tmp_path / "session.json"
    data.write_text(json.dumps(SESSION_VMS))
    config = tmp_path / "session.nix"
    config.write_text(f"builtins.fromJSON (builtins.readFile {data})")
    h = host(monkeypatch, nixpkgs_lib, config=config)
    p = plan(check(SESSION_VMS))
    target = {"graphical-session": "graphical-session.target", "session": "default.target"}
    for name, vm in p.vms.items():
        system = h["services"][f"vmsilo-{name}"]["wantedBy"]
        autostart = h["userServiceUnits"].get(f"vmsilo-{name}-autostart")
        if vm.needs == "boot":
            assert (system, autostart) == (["multi-user.target"], None), name
            continue
        assert system == [], name
        assert autostart is not None, name
        assert autostart["wantedBy"] == [target[vm.needs]]
        assert autostart["serviceConfig"] == {
            "Type": "oneshot",
            "ExecStart": f"{h['packageOut']}/bin/vm-start {name}",
        }
    assert h["userServiceUnits"]["vmsilo-desk-autostart"]["after"] == [
        "graphical-session.target",
        "vmsilo-desk-wayland.service",
        "pipewire.socket",
    ]
    assert h["userServiceUnits"]["vmsilo-radio-autostart"]["after"] == [
        "default.target",
        "pipewire.socket",
    ]


@needs_nix
def test_guest_systems_follow_the_guest_software(
    monkeypatch: pytest.MonkeyPatch, nixpkgs_lib: Path
) -> None:
    extra: dict[str, Any] = {
        "programs": {"banking": ["firefox"], "work": ["firefox"], "vault": ["keepassxc"]}
    }
    h = host(monkeypatch, nixpkgs_lib, extra)
    # one base system without programs; a program image per set: firefox, keepassxc
    assert h["guestSystems"] == 1
    assert list(h["guestPrograms"].values()) == [[]]
    assert sorted(map(sorted, h["programImageSets"].values())) == [["banking", "work"], ["vault"]]
    images = h["programImages"]
    assert sorted(images) == ["banking", "vault", "work"]  # net has no programs
    assert images["banking"] == images["work"] != images["vault"]
    assert [p.rsplit("-", 1)[-1] for p in images["vault"]["packages"]] == ["keepassxc"]
    vms = h["artifacts"]["vms"]
    assert vms["vault"]["programImage"] == images["vault"]["image"]
    assert vms["vault"]["programs"] == images["vault"]["profile"]
    assert "programImage" not in vms["net"] and "programs" not in vms["net"]
    assert len({vm["rootImage"] for vm in vms.values()}) == 1
    # a guestConfig module cannot be compared with another: that VM gets its own system,
    # with its programs installed in it, and no image
    extra["guestConfig"] = ["work"]
    h = host(monkeypatch, nixpkgs_lib, extra)
    assert h["guestSystems"] == 2
    assert sorted(map(len, h["guestPrograms"].values())) == [0, 1]
    assert sorted(h["programImages"]) == ["banking", "vault"]


@needs_nix
def test_disabled_module_sets_nothing(monkeypatch: pytest.MonkeyPatch, nixpkgs_lib: Path) -> None:
    h = host(monkeypatch, nixpkgs_lib, {"set": {"enable": False}})
    assert h == {"enabled": False, "defined": [], "systemDefined": []}


@needs_nix
def test_without_bash_integration(monkeypatch: pytest.MonkeyPatch, nixpkgs_lib: Path) -> None:
    h = host(monkeypatch, nixpkgs_lib, {"set": {"enableBashIntegration": False}})
    assert h["systemPackages"] != [h["packageOut"]]
    assert len(h["systemPackages"]) == 1


@needs_nix
def test_host_module_package_is_the_generated_tree(
    monkeypatch: pytest.MonkeyPatch, nixpkgs_lib: Path
) -> None:
    h = host(monkeypatch, nixpkgs_lib)
    out = Path(build_outputs([h["package"]])[h["package"]]["out"])
    # The same tree the CLI writes from the module's own JSON.
    config = check(json.loads(Path(h["configJson"]).read_text()))
    artifacts = load_artifacts(json.loads(Path(h["artifactsJson"]).read_text()))

    # The store makes every file read-only; what must match is content and executability.
    def shape(tree: dict[str, Any]) -> dict[str, Any]:
        return {
            p: (e.content, bool(e.mode & 0o111)) if isinstance(e, File) else e
            for p, e in tree.items()
        }

    expected = dict(build_tree(config, plan(config, artifacts), artifacts))
    assert shape(read_tree(out)) == shape(expected)
    launcher = (out / "libexec/vmsilo/work/launch").read_text()
    first = launcher.splitlines()[0]
    assert first.startswith("#!/nix/store/") and first.endswith("/bin/bash")
    assert "not built yet" not in launcher  # every boot artifact came from the guest system
    # The tray unit's program is real: it runs and answers --help.
    tray = (out / "libexec/vmsilo/tray").read_text()
    program = next(w for w in tray.split() if w.endswith("/bin/vmsilo-tray"))
    build_outputs([h["trayDrv"]])
    shown = subprocess.run([program, "--help"], capture_output=True, text=True, check=True)
    assert "NAME=#RRGGBB,ADDRESS" in shown.stdout
    assert "--vm 'work=#4169e1,vsock:3000675797:5001'" in tray


def unit_file(service: dict[str, Any]) -> str:
    """A [Service] section as NixOS writes one: lists become repeated lines, booleans words."""
    lines = ["[Unit]", "Description=test", "[Service]"]
    for key, value in service.items():
        for v in value if isinstance(value, list) else [value]:
            lines.append(f"{key}={str(v).lower() if isinstance(v, bool) else v}")
    return "\n".join(lines) + "\n"


@needs_nix
def test_balloond_unit_runs_the_real_daemon_hardened(
    monkeypatch: pytest.MonkeyPatch, nixpkgs_lib: Path, tmp_path: Path
) -> None:
    h = host(monkeypatch, nixpkgs_lib)
    unit = h["services"]["vmsilo-balloond"]
    service = unit["serviceConfig"]
    assert unit["wantedBy"] == ["multi-user.target"]
    assert service["ExecStart"] == f"{h['packageOut']}/libexec/vmsilo/balloond"
    assert service["User"] == "alice"  # crosvm's sockets are the VM user's
    # the state file --status reads outside the unit is where the unit keeps it
    assert f"/run/{service['RuntimeDirectory']}" == balloond_cli.DEFAULT_RUNTIME_DIR
    assert service["ProtectSystem"] == "strict" and service["ProtectHome"] is True
    assert service["PrivateNetwork"] is True
    assert service["RestrictAddressFamilies"] == ["AF_UNIX"]
    assert service["CapabilityBoundingSet"] == ""
    built = build_outputs([h["package"], h["internal"]["balloond"]])
    tree = Path(built[h["package"]]["out"])
    daemon = Path(built[h["internal"]["balloond"]]["out"]) / "bin" / "vmsilo-balloond"
    script = (tree / "libexec/vmsilo/balloond").read_text()
    assert f"exec {daemon} --log-level info" in script
    crosvm = json.loads(Path(h["artifactsJson"]).read_text())["packages"]["crosvm"]
    assert f" --crosvm {crosvm}/bin/crosvm " in script  # a service's PATH has no crosvm
    # systemd accepts every directive (the unit file as NixOS would render it)
    if shutil.which("systemd-analyze"):
        path = tmp_path / "vmsilo-balloond.service"
        path.write_text(unit_file({**service, "User": "root"}))
        done = subprocess.run(
            ["systemd-analyze", "verify", str(path)], capture_output=True, text=True, check=False
        )
        assert "Unknown key" not in done.stderr and "Failed to parse" not in done.stderr, (
            done.stderr
        )
    # the unit's ExecStart starts the daemon: it finds no VM running and says so in its state
    runtime = tmp_path / "runtime"
    runtime.mkdir()
    proc = subprocess.Popen(
        [str(tree / "libexec/vmsilo/balloond")],
        env={**os.environ, "RUNTIME_DIRECTORY": str(runtime)},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not (runtime / "state.json").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        state = json.loads((runtime / "state.json").read_text())
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    finally:
        proc.kill()
        _, err = proc.communicate()
    assert sorted(state["vms"]) == ["banking", "net", "vault", "work"]
    assert {vm["status"] for vm in state["vms"].values()} == {"absent"}
    assert state["vms"]["work"]["memory"] == 8192 * 1024 * 1024
    assert "watching 4 VMs" in err


def test_balloond_unit_as_real_nixos_renders_it(tmp_path: Path) -> None:
    """With a real nixpkgs: the flake's overlay provides pkgs.vmsilo-balloond, the module's
    default is that package, and the unit NixOS writes is one systemd accepts whole."""
    nix_bin, nixpkgs = os.environ.get("VMSILO_NIX"), os.environ.get("VMSILO_NIXPKGS")
    if not nix_bin or not nixpkgs:
        pytest.skip("VMSILO_NIX and VMSILO_NIXPKGS are not set (a real Nix and nixpkgs)")
    done = subprocess.run(
        [nix_bin, "--extra-experimental-features", "nix-command", "eval", "--impure", "--json",
         "--option", "substituters", "", "--file", str(ROOT / "tests/nix/real-balloond.nix")],
        env={**os.environ, "VMSILO_ROOT": str(ROOT)},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["daemon"] == got["overlay"]
    assert got["mainProgram"] == "vmsilo-balloond"
    lines = got["unit"].splitlines()
    assert "User=alice" in lines and "ProtectSystem=strict" in lines
    assert "SystemCallFilter=~@privileged" in lines
    # systemd-analyze needs an ExecStart that exists here and a known user
    unit = tmp_path / "vmsilo-balloond.service"
    unit.write_text(
        "\n".join(
            "ExecStart=/bin/true" if line.startswith("ExecStart=")
            else "User=root" if line.startswith("User=")
            else line
            for line in lines
        )
        + "\n"
    )  # fmt: skip
    if shutil.which("systemd-analyze"):
        verify = subprocess.run(
            ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
        )
        assert verify.returncode == 0, verify.stderr
        assert "vmsilo-balloond.service" not in verify.stderr, verify.stderr


def guest(monkeypatch: pytest.MonkeyPatch, lib: Path, proxy: str, channel: bool) -> Any:
    monkeypatch.setenv("VMSILO_NIXPKGS_LIB", str(lib))
    monkeypatch.setenv("VMSILO_ROOT", str(ROOT))
    monkeypatch.setenv("GUEST_JSON", json.dumps({"proxy": proxy, "copyChannel": channel}))
    return nix.eval_json_file(str(GUEST_EVAL))


@needs_nix
def test_guest_module(monkeypatch: pytest.MonkeyPatch, nixpkgs_lib: Path) -> None:
    g = guest(monkeypatch, nixpkgs_lib, "wayland-proxy-virtwl", False)
    setup = g["services"]["vmsilo-guest-setup"]
    assert setup["ExecStart"].endswith("/bin/vmsilo guest-setup")
    assert {"systemd-networkd.service", "systemd-udev-trigger.service"} <= set(g["setupOrder"])
    agent = g["services"]["vmsilo-agent"]
    assert agent["ExecStart"].endswith(
        "/bin/vmsilo channel agent --port 720 --user user "
        "--session-env WAYLAND_DISPLAY=wayland-1 --session-env XDG_SESSION_TYPE=wayland"
    )
    assert agent["Type"] == "notify"
    assert g["user"]["uid"] == 1000 and g["user"]["home"] == "/home/user"
    assert (
        "wayland-proxy-virtwl --virtio-gpu"
        in (g["userServices"]["vmsilo-wayland-proxy"]["ExecStart"])
    )
    tray = g["userServices"]["vmsilo-tray-guest"]
    assert tray["ExecStart"].endswith(
        "/bin/vmsilo-tray-guest --log-level info --listen vsock::5001"
    )
    assert tray["Restart"] == "always"
    assert [p.rsplit("-", 1)[-1] for p in g["systemPackages"]] == ["firefox"]
    assert g["rootImageContents"] == g["toplevel"]
    assert g["fileSystems"]["/nix/.ro-store"]["device"] == "/dev/vda"
    assert g["networkd"] is True and g["channel"] is False
    # program images: a second lower layer of the store, mounted in stage 1 when the kernel
    # command line names a profile; the profile link is a profile of the system
    assert g["fileSystems"]["/nix/store"]["overlay"]["lowerdir"] == [
        "/nix/.ro-store",
        "/nix/.ro-programs",
    ]
    unit = g["programsUnit"]
    assert unit["requiredBy"] == unit["before"] == ["sysroot-nix-store.mount"]
    assert "vmsilo.programs=*)" in unit["script"]
    assert (
        "mount -t squashfs -o ro /dev/disk/by-id/virtio-vmsilo-programs /sysroot/nix/.ro-programs"
        in unit["script"]
    )
    assert g["profiles"] == ["/run/vmsilo/programs"]
    s = guest(monkeypatch, nixpkgs_lib, "sommelier", True)
    assert "sommelier --virtgpu-channel" in s["userServices"]["vmsilo-wayland-proxy"]["ExecStart"]
    assert s["channel"] is True and len(s["rootImageContents"].split()) == 2
