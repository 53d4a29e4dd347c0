"""Command lines of vmsilo-balloond and vmsilo-tray."""

from __future__ import annotations

from vmsilo_nix import structure
from vmsilo_nix.channel.transport import VsockAddress
from vmsilo_nix.config.artifacts import Artifacts
from vmsilo_nix.facts import TRAY_VSOCK_PORT
from vmsilo_nix.plan.argv import flatten
from vmsilo_nix.plan.daemons import balloond_argv, tray_argv
from vmsilo_nix.plan.layout import Layout
from vmsilo_nix.tray.cli import parse_vm

LAYOUT = Layout(run_dir="/run/vmsilo", state_dir="/var/lib/vmsilo")
ARTIFACTS = Artifacts(
    packages={
        "vmsilo-balloond": "/nix/store/eeee-balloond",
        "vmsilo-tray": "/nix/store/ffff-tray",
        "crosvm": "/nix/store/cccc-crosvm",
    }
)
B = "vmsilo-balloond"


def test_balloond_defaults_and_one_vm_flag_per_vm_in_config_order() -> None:
    config = structure(
        {"user": "alice", "nixosVms": [{"name": "work"}, {"name": "banking", "memory": 4096}]}
    )
    args = balloond_argv(config, LAYOUT, ARTIFACTS)
    assert flatten(args) == [
        "/nix/store/eeee-balloond/bin/vmsilo-balloond",
        "--log-level",
        "info",
        "--poll-interval",
        "2s",
        "--min-poll-interval",
        "250ms",
        "--critical-host-percent",
        "5",
        "--critical-guest-available",
        "256m",
        "--guest-available-bias",
        "400m",
        "--psi-ceiling",
        "25",
        "--crosvm",
        "/nix/store/cccc-crosvm/bin/crosvm",
        "--vm",
        "work=/run/vmsilo/work/crosvm.sock",
        "--vm-memory",
        "work=1024m",
        "--vm",
        "banking=/run/vmsilo/banking/crosvm.sock",
        "--vm-memory",
        "banking=4096m",
    ]
    assert [a.sources for a in args] == [
        (),
        ((B, "logLevel"),),
        ((B, "pollInterval"),),
        ((B, "minPollInterval"),),
        ((B, "criticalHostPercent"),),
        ((B, "criticalGuestAvailable"),),
        ((B, "guestAvailableBias"),),
        ((B, "psiCeiling"),),
        (),
        (("nixosVms", 0, "name"),),
        (("nixosVms", 0, "name"), ("nixosVms", 0, "memory")),
        (("nixosVms", 1, "name"),),
        (("nixosVms", 1, "name"), ("nixosVms", 1, "memory")),
    ]
    assert args[0].explain() == "the memory balloon daemon"


def test_balloond_every_option_changed() -> None:
    config = structure(
        {
            "user": "alice",
            "nixosVms": [{"name": "a"}],
            B: {
                "logLevel": "debug",
                "pollInterval": "1s",
                "minPollInterval": "500ms",
                "criticalHostPercent": 10,
                "criticalGuestAvailable": "400m",
                "guestAvailableBias": "500m",
                "psiCeiling": 50,
                "extraArgs": ["--dry-run", "--note", "two words $x"],
            },
        }
    )
    args = balloond_argv(config, LAYOUT, Artifacts())
    assert flatten(args) == [
        "vmsilo-balloond",
        "--log-level",
        "debug",
        "--poll-interval",
        "1s",
        "--min-poll-interval",
        "500ms",
        "--critical-host-percent",
        "10",
        "--critical-guest-available",
        "400m",
        "--guest-available-bias",
        "500m",
        "--psi-ceiling",
        "50",
        "--crosvm",
        "crosvm",
        "--vm",
        "a=/run/vmsilo/a/crosvm.sock",
        "--vm-memory",
        "a=1024m",
        "--dry-run",
        "--note",
        "two words $x",
    ]
    assert [a.sources for a in args[-3:]] == [((B, "extraArgs", j),) for j in range(3)]


def test_balloond_without_vms_and_with_an_awkward_run_dir() -> None:
    empty = structure({"user": "alice"})
    assert "--vm" not in flatten(balloond_argv(empty, LAYOUT, ARTIFACTS))
    odd = Layout(run_dir="/run/a b,c \"d\" 'e' $f", state_dir="/s")
    config = structure({"user": "alice", "nixosVms": [{"name": "a"}]})
    assert flatten(balloond_argv(config, odd, ARTIFACTS))[-4:] == [
        "--vm",
        "a=/run/a b,c \"d\" 'e' $f/a/crosvm.sock",
        "--vm-memory",
        "a=1024m",
    ]


def test_tray() -> None:
    config = structure({"user": "alice", "vmsilo-tray": {"logLevel": "trace"}})
    args = tray_argv(config, ARTIFACTS, {})
    assert flatten(args) == ["/nix/store/ffff-tray/bin/vmsilo-tray", "--log-level", "trace"]
    assert args[1].sources == (("vmsilo-tray", "logLevel"),)
    default = tray_argv(structure({"user": "alice"}), Artifacts(), {})
    assert flatten(default) == ["vmsilo-tray", "--log-level", "info"]


def test_tray_one_vm_flag_per_vm_with_its_colour_and_cid() -> None:
    config = structure(
        {
            "user": "alice",
            "nixosVms": [
                {"name": "work", "color": "DarkRed"},
                {"name": "banking", "color": "rgb(0, 128, 255)"},
            ],
        }
    )
    args = tray_argv(config, ARTIFACTS, {"work": 7, "banking": 1234567})
    assert flatten(args)[3:] == [
        "--vm",
        "work=#8b0000,vsock:7:5001",
        "--vm",
        "banking=#0080ff,vsock:1234567:5001",
    ]
    assert [a.sources for a in args[2:]] == [
        (("nixosVms", i, "name"), ("nixosVms", i, "color")) for i in range(2)
    ]


def test_the_tray_reads_the_argv_the_plan_renders() -> None:
    config = structure({"user": "alice", "nixosVms": [{"name": "work", "color": "#abc"}]})
    words = flatten(tray_argv(config, ARTIFACTS, {"work": 42}))
    assert parse_vm(words[-1]) == ("work", (0xAA, 0xBB, 0xCC), VsockAddress(42, TRAY_VSOCK_PORT))
