"""The fingerprint in the manifest covers every fact that needs a VM restart to apply.

Exhaustive over the options: every option of the model (walked from the schema, so a new
option fails this test until it is classified) is either restart-relevant, and changing it
changes the VM's fingerprint, or runtime-only (the host daemons' settings, the start policy,
the guest side), and changing it leaves the fingerprint alone.
"""

from __future__ import annotations

import copy
import json
import typing
from collections.abc import Mapping
from typing import Any

import attrs
import pytest

from tests.test_virtiofs import EVERY_SETTING
from vmsilo_nix.config.artifacts import Artifacts, VmArtifacts
from vmsilo_nix.config.model import Config
from vmsilo_nix.config.rules import check
from vmsilo_nix.config.schema import fields_of
from vmsilo_nix.plan.host import plan
from vmsilo_nix.render.generate import build_tree, fingerprint

BASE: dict[str, Any] = {
    "user": "alice",
    "isolatedPciDevices": ["0000:03:00.0"],
    "nixosVms": [
        {
            "name": "a",
            "network": {
                "nameservers": ["9.9.9.9"],
                "interfaces": {
                    "wan": {
                        "addresses": ["10.0.0.1/24"],
                        "routes": {"0.0.0.0/0": {"via": "10.0.0.254"}},
                        "v6Addresses": ["fd00::1/64"],
                        "v6Routes": {"::/0": {"via": "fd00::fe"}},
                        "tap": {"hostAddress": "10.0.0.254/24"},
                    }
                },
            },
            "sharedDirectories": {"docs": {"path": "/srv/docs"}},
            "rootOverlay": {"type": "qcow2"},
            "gpu": True,
        },
        {"name": "b"},
    ],
}

# option path (as in the schema walk) -> (JSON path in BASE, new value)
Edit = tuple[tuple[Any, ...], Any] | None  # None: an option that cannot change in place
RESTART: dict[str, Edit] = {
    "crosvm.logLevel": (("crosvm", "logLevel"), "debug"),
    "crosvm.extraArgs": (("crosvm", "extraArgs"), ["--syslog-tag", "x"]),
    "crosvm.extraRunArgs": (("crosvm", "extraRunArgs"), ["--disable-sandbox"]),
    "schedulerIsolation": (("schedulerIsolation",), "off"),
    "user": (("user",), "bob"),
    "nixosVms.color": ((0, "color"), "blue"),
    "nixosVms.name": None,  # another name is another VM (its own unit and files)
    "nixosVms.memory": ((0, "memory"), 2048),
    "nixosVms.cpus": ((0, "cpus"), 3),
    "nixosVms.network.nameservers": ((0, "network", "nameservers"), ["1.1.1.1"]),
    "nixosVms.network.interfaces.type": None,  # one choice only: "tap"
    "nixosVms.network.interfaces.macAddress": (
        (0, "network", "interfaces", "wan", "macAddress"),
        "02:00:00:00:00:01",
    ),
    "nixosVms.network.interfaces.tap.name": (
        (0, "network", "interfaces", "wan", "tap", "name"),
        "t0",
    ),
    "nixosVms.network.interfaces.tap.hostAddress": (
        (0, "network", "interfaces", "wan", "tap", "hostAddress"),
        "10.0.0.253/24",
    ),
    "nixosVms.network.interfaces.tap.bridge": (
        (0, "network", "interfaces", "wan", "tap"),
        {"bridge": "br0"},
    ),
    "nixosVms.network.interfaces.dhcp": ((0, "network", "interfaces", "wan", "dhcp"), True),
    "nixosVms.network.interfaces.addresses": (
        (0, "network", "interfaces", "wan", "addresses"),
        ["10.0.0.2/24"],
    ),
    "nixosVms.network.interfaces.routes.via": (
        (0, "network", "interfaces", "wan", "routes", "0.0.0.0/0", "via"),
        "10.0.0.253",
    ),
    "nixosVms.network.interfaces.v6Addresses": (
        (0, "network", "interfaces", "wan", "v6Addresses"),
        ["fd00::2/64"],
    ),
    "nixosVms.network.interfaces.v6Routes.via": (
        (0, "network", "interfaces", "wan", "v6Routes", "::/0", "via"),
        "fd00::fd",
    ),
    "nixosVms.autoShutdown.enable": ((0, "autoShutdown", "enable"), True),
    "nixosVms.autoShutdown.after": ((0, "autoShutdown"), {"enable": True, "after": 99}),
    "nixosVms.rootOverlay.type": ((0, "rootOverlay", "type"), "tmpfs"),
    "nixosVms.rootOverlay.size": ((0, "rootOverlay", "size"), "20G"),
    "nixosVms.additionalDisks": ((0, "additionalDisks"), [{"path": "/dev/sdb"}]),
    "nixosVms.rootDisk": ((0, "rootDisk"), {"path": "/srv/root.img", "ro": True}),
    "nixosVms.kernel": ((0, "kernel"), "/srv/bzImage"),
    "nixosVms.initramfs": ((0, "initramfs"), "/srv/initrd"),
    "nixosVms.rootDiskReadonly": ((0, "rootDiskReadonly"), False),
    "nixosVms.sharedHome": ((0, "sharedHome"), False),
    "nixosVms.kernelParams": ((0, "kernelParams"), ["quiet"]),
    "nixosVms.gpu": ((0, "gpu"), False),
    "nixosVms.sound.playback": ((0, "sound", "playback"), False),
    "nixosVms.sound.capture": ((0, "sound", "capture"), True),
    "nixosVms.vhostUser": ((0, "vhostUser"), [{"type": "net", "socket": "/run/x.sock"}]),
    "nixosVms.pciDevices": ((0, "pciDevices"), [{"path": "0000:03:00.0"}]),
    "nixosVms.crosvm.logLevel": ((0, "crosvm", "logLevel"), "trace"),
    "nixosVms.crosvm.extraArgs": ((0, "crosvm", "extraArgs"), ["--syslog-tag", "y"]),
    "nixosVms.crosvm.extraRunArgs": ((0, "crosvm", "extraRunArgs"), ["--disable-sandbox"]),
}
SHARE = (0, "sharedDirectories", "docs")
# Every setting of a share, changed from its default ("mandatory" file handles are refused by
# the rules for an unprivileged virtiofsd, so "never" stands in).
for key, value in {**EVERY_SETTING, "inodeFileHandles": "never"}.items():
    if key in ("translateUid", "translateGid"):
        # virtiofsd refuses translation with POSIX ACLs (on by default)
        RESTART[f"nixosVms.sharedDirectories.{key}"] = (
            SHARE,
            {"path": "/srv/docs", "posixAcl": False, key: value},
        )
    else:
        RESTART[f"nixosVms.sharedDirectories.{key}"] = ((*SHARE, key), value)

# Options whose change never needs a running VM restarted.
RUNTIME: dict[str, Edit] = {
    "enable": (("enable",), True),
    "enableBashIntegration": (("enableBashIntegration",), False),
    "hostNetworking.nat.enable": (("hostNetworking", "nat"), {"enable": True, "interface": "eth0"}),
    "hostNetworking.nat.interface": (
        ("hostNetworking", "nat"),
        {"enable": True, "interface": "eth1"},
    ),
    "isolatedPciDevices": (("isolatedPciDevices",), ["0000:03:00.0", "0000:04:00.0"]),
    "nixosVms.autoStart": ((0, "autoStart"), True),
    "nixosVms.dependsOn": ((0, "dependsOn"), ["b"]),
    "vmsilo-tray.logLevel": (("vmsilo-tray", "logLevel"), "debug"),
    **{
        f"vmsilo-balloond.{key}": (("vmsilo-balloond", key), value)
        for key, value in {
            "logLevel": "debug",
            "pollInterval": "2s",
            "criticalHostPercent": 10,
            "criticalGuestAvailable": "200M",
            "guestAvailableBias": "500M",
            "minPollInterval": "50ms",
            "psiCeiling": 40,
            "extraArgs": ["--verbose"],
        }.items()
    },
}
# The guest system: what these change reaches the VM through its built artifacts (kernel,
# root image), which are in the crosvm command line: see test_artifacts_are_in_the_fingerprint.
VIA_GUEST_SYSTEM = {"nixosVms.waylandProxy", "nixosVms.copyChannel", "nixosVms.guestPrograms"}


def _walk(cls: type, prefix: str = "") -> list[str]:
    paths = []
    for f in fields_of(cls):
        path = f"{prefix}{f.name}"
        nested = _attrs_class(f.type)
        if nested is not None:
            paths += _walk(nested, path + ".")
        else:
            paths.append(path)
    return paths


def _attrs_class(t: Any) -> type | None:
    """The attrs class in a type: ``X``, ``X | None``, ``tuple[X, ...]``, ``Mapping[str, X]``."""
    if attrs.has(t):
        return typing.cast(type, t)
    for arg in typing.get_args(t):
        if arg is not type(None) and (found := _attrs_class(arg)) is not None:
            return found
    return None


def test_every_option_is_classified() -> None:
    options = set(_walk(Config))
    classified = set(RESTART) | set(RUNTIME) | VIA_GUEST_SYSTEM
    assert options - classified == set(), "classify these options"
    assert classified - options == set(), "these are not options"


def _edit(base: dict[str, Any], where: tuple[Any, ...], value: Any) -> dict[str, Any]:
    raw = copy.deepcopy(base)
    node: Any = raw["nixosVms"] if isinstance(where[0], int) else raw
    for key in where[:-1]:
        node = node.setdefault(key, {}) if isinstance(node, dict) else node[key]
    node[where[-1]] = value
    return raw


def _fingerprints(raw: Mapping[str, Any], artifacts: Artifacts | None = None) -> dict[str, str]:
    artifacts = artifacts or Artifacts()
    config = check(json.loads(json.dumps(raw)))
    p = plan(config, artifacts)
    build_tree(config, p, artifacts)  # what generate writes must also build
    return {name: fingerprint(v) for name, v in p.vms.items()}


@pytest.mark.parametrize("option", sorted(o for o, e in RESTART.items() if e is not None))
def test_restart_relevant_option_changes_the_fingerprint(option: str) -> None:
    edit = RESTART[option]
    assert edit is not None
    where, value = edit
    before = _fingerprints(BASE)
    after = _fingerprints(_edit(BASE, where, value))
    # Host-wide options reach VM a (which has a share, a TAP, a GPU) at least.
    assert before["a"] != after["a"], option
    if isinstance(where[0], int):
        assert before["b"] == after["b"], f"{option} of a must not change b"


@pytest.mark.parametrize("option", sorted(o for o, e in RUNTIME.items() if e is not None))
def test_runtime_only_option_keeps_the_fingerprint(option: str) -> None:
    edit = RUNTIME[option]
    assert edit is not None
    where, value = edit
    assert _fingerprints(_edit(BASE, where, value)) == _fingerprints(BASE), option


def test_artifacts_are_in_the_fingerprint() -> None:
    """Guest software changes the built system, so the kernel and image the VM boots."""
    built = VmArtifacts(kernel="/k1", initrd="/i1", root_image="/r1", toplevel="/t1")
    before = _fingerprints(BASE, Artifacts(vms={"a": built}))
    for change in ("kernel", "initrd", "root_image"):
        other = attrs.evolve(built, **{change: "/other"})
        after = _fingerprints(BASE, Artifacts(vms={"a": other}))
        assert before["a"] != after["a"], change
