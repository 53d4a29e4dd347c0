"""Plans: exact command lines for the examples and for every option, CIDs, order, unbuilt."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from vmsilo_nix import structure
from vmsilo_nix.config.artifacts import Artifacts, load_artifacts
from vmsilo_nix.pipeline import check
from vmsilo_nix.plan import cid as cids
from vmsilo_nix.plan import identity as guest_identity
from vmsilo_nix.plan.argv import flatten
from vmsilo_nix.plan.host import plan, to_json
from vmsilo_nix.plan.layout import Layout
from vmsilo_nix.plan.order import start_order

from .conftest import EXAMPLES, ROOT

GOLDEN = ROOT / "tests" / "golden"
ARTIFACTS = load_artifacts(json.loads((GOLDEN / "desktop-artifacts.json").read_text()))
UPDATE = os.environ.get("VMSILO_UPDATE_GOLDEN") == "1"


def desktop() -> Any:
    return check(json.loads((EXAMPLES / "desktop.json").read_text()))


def test_golden_plan_of_the_example() -> None:
    """The whole plan of the example desktop, with artifacts for two of its VMs."""
    got = json.dumps(to_json(plan(desktop(), ARTIFACTS)), indent=2, sort_keys=True) + "\n"
    golden = GOLDEN / "desktop-plan.json"
    if UPDATE:
        golden.write_text(got)
    assert got == golden.read_text(), "regenerate with VMSILO_UPDATE_GOLDEN=1 and review the diff"


BANKING_CROSVM = [
    "/nix/store/00000000000000000000000000000000-crosvm-0-unstable/bin/crosvm",
    "--log-level", "info",
    "run",
    "--cpus", "2",
    "--mem", "4096",
    "--block", "path=/nix/store/66666666666666666666666666666666-vmsilo-root-browsing/root.img,"
    "ro=true",
    "--block", "path=/var/lib/vmsilo/banking/overlay.qcow2,ro=false,sparse=true",
    "--initrd", "/nix/store/55555555555555555555555555555555-initrd/initrd",
    "-p", "init=/nix/store/77777777777777777777777777777777-nixos-system-vmsilo-guest/init",
    "-p", "vmsilo.name=banking",
    "-p", "vmsilo.overlay=qcow2",
    "-p", guest_identity.param(desktop().nixos_vms[0], 0),
    "--gpu", "context-types=cross-domain",
    "--wayland-sock", "/run/vmsilo/banking/wayland.sock",
    "--vhost-user", "type=fs,socket=/run/vmsilo/banking/virtiofs-home.sock",
    "--net", "tap-name=banking-0,mac=3e:e2:0c:26:9e:86",
    "--vsock", str(cids.preferred("banking")),
    "--socket", "/run/vmsilo/banking/crosvm.sock",
    "--core-scheduling=true",
    "/nix/store/44444444444444444444444444444444-linux-6.12/bzImage",
]  # fmt: skip


def test_banking_crosvm_argv() -> None:
    p = plan(desktop(), ARTIFACTS).vms["banking"]
    assert flatten(p.crosvm) == BANKING_CROSVM
    assert p.unbuilt == ()
    assert p.sound is None  # playback and capture both off


def test_unbuilt_artifacts_are_reported_never_invented() -> None:
    p = plan(desktop(), ARTIFACTS).vms["vault"]
    assert p.unbuilt == ("initrd", "kernel", "rootImage", "toplevel")
    argv = flatten(p.crosvm)
    assert argv[-1] == "<unbuilt:kernel>"
    assert "path=<unbuilt:rootImage>,ro=true" in argv
    assert not any(w.startswith("/nix/store") and "vault" in w for w in argv)
    # programs Nix did not supply run from PATH by name
    assert flatten(plan(desktop()).vms["vault"].crosvm)[0] == "crosvm"


EVERYTHING = {
    "user": "alice",
    "schedulerIsolation": "vm",
    "crosvm": {"logLevel": "warn", "extraArgs": ["--syslog-tag", "all"],
               "extraRunArgs": ["--disable-sandbox"]},
    "isolatedPciDevices": ["0000:03:00.1"],
    "nixosVms": [{
        "name": "full",
        "memory": 3000,
        "cpus": 3,
        "kernel": "/boot/my kernel",
        "initramfs": "/boot/my,initrd",
        "rootDisk": {"path": "/vm/root \"disk\".img", "ro": True, "id": None, "lock": False},
        "additionalDisks": [{"path": "/data/a,b [c].img", "block-size": 4096, "sparse": False}],
        "rootOverlay": {"type": "tmpfs"},
        "kernelParams": ["quiet", "loglevel=3"],
        "gpu": {"context-types": "cross-domain:virgl2", "width": 1920, "egl": True,
                "displays": "[[mode=windowed[1920,1080]]]"},
        "sound": {"capture": True, "playback": False},
        "sharedHome": False,
        "vhostUser": [{"socket": "/run/net.sock", "type": "net"}],
        "pciDevices": [{"path": "03:00.1", "iommu": "viommu"}],
        "network": {"interfaces": {"eth0": {"tap": {"name": "true"},
                                            "macAddress": "02:00:00:00:00:01"}}},
        "crosvm": {"logLevel": "debug", "extraArgs": ["--no-syslog"],
                   "extraRunArgs": ["--hugepages"]},
    }],
}  # fmt: skip


def test_every_option_reaches_the_command_line() -> None:
    p = plan(check(EVERYTHING), Artifacts(), Layout(run_dir="/r", state_dir="/s")).vms["full"]
    assert flatten(p.crosvm) == [
        "crosvm",
        "--log-level", "debug",
        "--syslog-tag", "all",
        "--no-syslog",
        "run",
        "--cpus", "3",
        "--mem", "3000",
        "--block", 'path="/vm/root \\"disk\\".img",ro=true,lock=false',
        "--block", 'path="/data/a,b [c].img",block-size=4096,sparse=false',
        "--initrd", "/boot/my,initrd",
        "-p", "init=<unbuilt:toplevel>",
        "-p", "vmsilo.name=full",
        "-p", "vmsilo.overlay=tmpfs",
        "-p", guest_identity.param(check(EVERYTHING).nixos_vms[0], 0),
        "-p", "quiet",
        "-p", "loglevel=3",
        "--gpu", "context-types=cross-domain:virgl2,width=1920,egl=true,"
                 "displays=[[mode=windowed[1920,1080]]]",
        "--wayland-sock", "/r/full/wayland.sock",
        "--vhost-user", "type=sound,socket=/r/full/sound.sock",
        "--vhost-user", "type=net,socket=/run/net.sock",
        "--vfio", "/sys/bus/pci/devices/0000:03:00.1,iommu=viommu",
        "--net", 'tap-name="true",mac=02:00:00:00:00:01',
        "--vsock", str(cids.preferred("full")),
        "--socket", "/r/full/crosvm.sock",
        "--per-vm-core-scheduling",
        "--disable-sandbox",
        "--hugepages",
        "/boot/my kernel",
    ]  # fmt: skip
    assert p.unbuilt == ("toplevel",)  # kernel, initrd and root disk came from options
    assert p.virtiofsd == ()
    assert p.overlay.type == "tmpfs" and p.overlay.create_argv == ()
    assert p.sound is not None and p.sound.capture


def test_every_arg_names_its_option() -> None:
    p = plan(check(EVERYTHING), Artifacts()).vms["full"]
    by_flag = {a.words[0]: a.explain([p.name]) for a in p.crosvm}
    assert by_flag["--mem"] == "programs.vmsilo.nixosVms[0] (full).memory"
    assert by_flag["--log-level"] == "programs.vmsilo.nixosVms[0] (full).crosvm.logLevel"
    assert by_flag["--per-vm-core-scheduling"] == "programs.vmsilo.schedulerIsolation"
    assert by_flag["--vfio"] == "programs.vmsilo.nixosVms[0] (full).pciDevices[0]"
    assert by_flag["--disable-sandbox"] == "programs.vmsilo.crosvm.extraRunArgs[0]"
    assert by_flag["--socket"] == "control socket for vm-stop and vmsilo-balloond"
    assert all(a.sources or a.note for a in p.crosvm)


def test_core_scheduling_per_isolation() -> None:
    for isolation, words in (
        ("full", ["--core-scheduling=true"]),
        ("vm", ["--per-vm-core-scheduling"]),
        ("off", ["--core-scheduling=false"]),
    ):
        config = check({"user": "a", "schedulerIsolation": isolation, "nixosVms": [{"name": "x"}]})
        argv = flatten(plan(config).vms["x"].crosvm)
        assert [w for w in argv if "core-scheduling" in w] == words


def test_log_level_falls_back_to_global() -> None:
    config = check({"user": "a", "crosvm": {"logLevel": "trace"}, "nixosVms": [{"name": "x"}]})
    assert flatten(plan(config).vms["x"].crosvm)[1:3] == ["--log-level", "trace"]


def test_cids_are_stable_across_edits_of_other_vms() -> None:
    before = cids.assign(["banking", "work", "vault"])
    after = cids.assign(["zebra", "work", "banking", "new"])
    assert before["banking"] == after["banking"] and before["work"] == after["work"]
    assert all(cids.FIRST <= c <= cids.LAST for c in after.values())


def test_cid_collisions_move_only_the_later_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cids, "preferred", lambda name: 7 if name in ("a", "b") else 9)
    assert cids.assign(["b", "a", "c"]) == {"a": 7, "b": 8, "c": 9}
    monkeypatch.setattr(cids, "preferred", lambda name: cids.LAST)
    assert cids.assign(["x", "y"]) == {"x": cids.LAST, "y": cids.FIRST}


def test_start_order_puts_dependencies_first() -> None:
    config = structure(
        {
            "user": "a",
            "nixosVms": [
                {"name": "app", "dependsOn": ["db", "net"]},
                {"name": "db", "dependsOn": ["net"]},
                {"name": "solo"},
                {"name": "net"},
            ],
        }
    )
    assert start_order(config) == ["solo", "net", "db", "app"]
    assert plan(desktop()).start_order == ("banking", "vault", "net", "work")


def test_plan_json_shape_is_stable() -> None:
    doc = to_json(plan(desktop(), ARTIFACTS), ["work"])
    assert list(doc) == ["vms", "startOrder", "nat", "isolatedPciDevices", "balloond", "tray"]
    work = doc["vms"]["work"]
    # starting work starts net first, so the order names it although only work was asked for
    assert list(doc["vms"]) == ["work"] and doc["startOrder"] == ["net", "work"]
    assert isinstance(work["crosvm"]["argv"], list) and work["crosvm"]["argv"][0].endswith("crosvm")
    assert [s["tag"] for s in work["virtiofsd"]] == ["home", "projects", "reference"]
    assert all(isinstance(s["argv"], list) for s in work["virtiofsd"])
    assert work["taps"][0]["name"] == "work-0" and work["taps"][0]["mac"]
    assert isinstance(work["cid"], int)


def test_wayland_security_context_carries_name_and_colour() -> None:
    p = plan(desktop()).vms
    assert p["vault"].wayland is None  # gpu = false
    w = p["banking"].wayland
    assert w is not None and (w.app_id, w.instance_id, w.color) == (
        "banking",
        "banking #2e7d32",
        "#2e7d32",
    )
    work = p["work"].wayland
    assert work is not None and work.color == "#4169e1"  # royalblue


def test_wayland_socket_only_with_cross_domain() -> None:
    def argv(gpu: Any) -> list[str]:
        config = check({"user": "a", "nixosVms": [{"name": "x", "gpu": gpu}]})
        return flatten(plan(config).vms["x"].crosvm)

    assert "--wayland-sock" in argv({"context-types": "virgl2:cross-domain"})
    plain = argv({"backend": "2d"})
    assert "--wayland-sock" not in plain and 'backend="2d"' in plain
    assert "--gpu" not in argv(False)


def test_auto_start_reaches_the_plan() -> None:
    doc = to_json(plan(desktop()))
    assert {n: v["autoStart"] for n, v in doc["vms"].items()} == {
        "banking": False,
        "work": False,
        "vault": False,
        "net": True,
    }
    assert doc["isolatedPciDevices"] == [
        {"bdf": "0000:03:00.0", "sysfs": "/sys/bus/pci/devices/0000:03:00.0"}
    ]


def test_a_program_image_is_the_last_disk_and_names_its_profile() -> None:
    """A VM's program image: one more read-only disk with its serial, after every other disk
    (no disk letter moves), and its profile on the kernel command line; both from
    guestPrograms."""
    image = "/nix/store/88888888888888888888888888888888-vmsilo-programs-0123456789ab.img"
    profile = "/nix/store/99999999999999999999999999999999-vmsilo-programs-0123456789ab"
    raw = json.loads((GOLDEN / "desktop-artifacts.json").read_text())
    raw["vms"]["banking"] |= {"programImage": image, "programs": profile}
    p = plan(desktop(), load_artifacts(raw)).vms["banking"]
    disk = f"path={image},ro=true,id=vmsilo-programs"
    param = f"vmsilo.programs={profile}"
    expected = list(BANKING_CROSVM)
    expected[expected.index("--gpu") : expected.index("--gpu")] = ["-p", param]
    expected[expected.index("--initrd") : expected.index("--initrd")] = ["--block", disk]
    assert flatten(p.crosvm) == expected
    sources = {a.words[1]: a.sources for a in p.crosvm if len(a.words) > 1}
    assert sources[disk] == sources[param] == (("nixosVms", 0, "guestPrograms"),)
    # without an image: neither
    plain = flatten(plan(desktop(), ARTIFACTS).vms["banking"].crosvm)
    assert not any("vmsilo-programs" in w or "vmsilo.programs" in w for w in plain)
