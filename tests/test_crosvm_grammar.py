"""Tests for vmsilo_nix.crosvm_grammar: pinned facts about crosvm's command line."""

from __future__ import annotations

import pytest

from vmsilo_nix.config import crosvm_grammar as g

_RUN_SETS = (g.RUN_REPEATABLE, g.RUN_SWITCHES, g.RUN_SINGLE)
_ALL_RUN = g.RUN_REPEATABLE | g.RUN_SWITCHES | g.RUN_SINGLE

# --------------------------------------------------------------------------------------------
# Structure of the data.


def test_run_sets_are_disjoint() -> None:
    assert not g.RUN_REPEATABLE & g.RUN_SWITCHES
    assert not g.RUN_REPEATABLE & g.RUN_SINGLE
    assert not g.RUN_SWITCHES & g.RUN_SINGLE
    assert len(_ALL_RUN) == sum(len(s) for s in _RUN_SETS)


def test_global_sets_are_disjoint() -> None:
    assert not g.GLOBAL_SWITCHES & g.GLOBAL_SINGLE
    assert g.GLOBAL_FLAGS == g.GLOBAL_SWITCHES | g.GLOBAL_SINGLE


def test_all_names_are_long_flags() -> None:
    names = _ALL_RUN | g.GLOBAL_FLAGS | set(g.RUN_REMOVED) | set(g.RUN_OTHER_PLATFORMS)
    for name in names:
        assert name.startswith("--"), name
        assert "=" not in name and "_" not in name, name
        assert name == name.lower(), name


def test_removed_and_other_platform_flags_do_not_parse() -> None:
    assert not set(g.RUN_REMOVED) & _ALL_RUN
    assert not set(g.RUN_OTHER_PLATFORMS) & _ALL_RUN
    assert not set(g.RUN_REMOVED) & set(g.RUN_OTHER_PLATFORMS)


def test_deprecated_flags_still_parse() -> None:
    assert set(g.RUN_DEPRECATED) <= _ALL_RUN
    assert all(reason for reason in g.RUN_DEPRECATED.values())
    assert all(reason for reason in g.RUN_REMOVED.values())


def test_helper_sets_are_run_flags() -> None:
    assert g.VALUE_TAKING_BOOL <= g.RUN_SINGLE
    assert g.RUN_AT_MOST_ONCE <= g.RUN_REPEATABLE
    assert set(g.RUN_FEATURE_GATED) <= _ALL_RUN
    assert set(g.SHORT_ALIASES.values()) <= _ALL_RUN
    assert set(g.KEYS) <= _ALL_RUN
    assert set(g.FIRST_FIELD) <= set(g.KEYS)


def test_first_fields_are_keys() -> None:
    for flag, key in g.FIRST_FIELD.items():
        assert key in g.KEYS[flag], flag
    for (flag, key), first in g.NESTED_FIRST_FIELD.items():
        assert key in g.KEYS[flag]
        assert first in g.NESTED_KEYS[flag, key]


def test_aliases_and_deprecated_keys_are_keys() -> None:
    for flag, aliases in g.KEY_ALIASES.items():
        for alias, primary in aliases.items():
            assert alias in g.KEYS[flag] and primary in g.KEYS[flag]
    for flag, keys in g.DEPRECATED_KEYS.items():
        assert set(keys) <= g.KEYS[flag]
    for flag, keys in g.KEYS_ELSEWHERE.items():
        assert not set(keys) & g.KEYS[flag]
    for flag, key in g.KEY_VALUES:
        assert key in g.KEYS[flag]


# --------------------------------------------------------------------------------------------
# Pinned facts about crosvm at the commit read.


def test_core_scheduling_takes_a_value() -> None:
    assert "--core-scheduling" in g.VALUE_TAKING_BOOL
    assert g.classify("--core-scheduling") == "single"
    assert g.classify("--core-scheduling=false") == "single"


def test_per_vm_core_scheduling_is_a_switch() -> None:
    assert g.classify("--per-vm-core-scheduling") == "switch"


@pytest.mark.parametrize(
    "flag",
    [
        "--block",
        "--vhost-user",
        "--net",
        "--vfio",
        "--params",
        "--wayland-sock",
        "--serial",
        "--shared-dir",
        "--virtio-snd",
        "--pmem",
        "--input",
    ],
)
def test_repeatable(flag: str) -> None:
    assert g.classify(flag) == "repeatable"


@pytest.mark.parametrize(
    "flag", ["--cpus", "--mem", "--vsock", "--socket", "--initrd", "--name", "--swap"]
)
def test_single(flag: str) -> None:
    assert g.classify(flag) == "single"


def test_gpu_is_a_vec_but_only_one_is_accepted() -> None:
    # argh parses Vec<FixedGpuParameters>; Config conversion then rejects a second --gpu.
    assert g.classify("--gpu") == "repeatable"
    assert "--gpu" in g.RUN_AT_MOST_ONCE


@pytest.mark.parametrize("flag", ["--no-balloon", "--disable-sandbox", "--hugepages", "--no-smt"])
def test_switches(flag: str) -> None:
    assert g.classify(flag) == "switch"


def test_removed_flags() -> None:
    for flag in (
        "--vhost-user-fs",
        "--vhost-user-blk",
        "--strict-balloon",
        "--cfg",
        "--ac-adapter",
    ):
        assert flag in g.RUN_REMOVED
        assert g.classify(flag) == "unknown"
    assert "--balloon" not in _ALL_RUN


def test_deprecated_flags() -> None:
    for flag in ("--disk", "--root", "--cid", "--tap-name", "--host-ip", "--syslog-tag"):
        assert flag in g.RUN_DEPRECATED


def test_global_flags() -> None:
    expected = {"--log-level", "--syslog-tag", "--no-syslog", "--extended-status"}
    assert expected == g.GLOBAL_FLAGS
    assert g.classify("--no-syslog", "global") == "switch"
    assert g.classify("--log-level=debug", "global") == "single"
    assert g.classify("--cpus", "global") == "unknown"
    assert g.classify("--log-level") == "unknown"  # not a run flag


def test_short_aliases() -> None:
    assert dict(g.SHORT_ALIASES) == {
        "-b": "--block",
        "-c": "--cpus",
        "-d": "--disk",
        "-i": "--initrd",
        "-m": "--mem",
        "-p": "--params",
        "-r": "--root",
        "-s": "--socket",
    }
    assert g.classify("-p") == "repeatable"
    assert g.classify("-c") == "single"


def test_block_keys() -> None:
    keys = g.KEYS["--block"]
    assert {"block-size", "block_size", "direct", "o_direct", "ro", "path", "root"} <= keys
    assert g.FIRST_FIELD["--block"] == "path"
    assert "read-only" not in keys and "io_concurrency" not in keys


def test_net_has_no_first_field_and_kebab_keys() -> None:
    assert "--net" not in g.FIRST_FIELD
    keys = g.KEYS["--net"]
    assert {"tap-name", "tap-fd", "host-ip", "netmask", "mac"} <= keys
    assert {"vhost-net", "vq-pairs", "packed-queue", "pci-address", "mrg-rxbuf"} <= keys
    assert "mrg_rxbuf" not in keys


def test_other_key_sets() -> None:
    assert g.KEYS["--vhost-user"] == {"type", "socket", "max-queue-size", "pci-address"}
    assert g.FIRST_FIELD["--vhost-user"] == "type"
    assert g.KEYS["--vsock"] == {"cid", "device", "max-queue-sizes"}
    assert g.FIRST_FIELD["--vsock"] == "cid"
    assert g.KEYS["--vfio"] == {"path", "iommu", "guest-address", "dt-symbol"}
    assert g.KEYS["--mem"] == {"size"}
    assert g.FIRST_FIELD["--cpus"] == "num-cores"
    assert "freq-domains" in g.KEYS["--cpus"] and "freq_domains" not in g.KEYS["--cpus"]
    assert g.FIRST_FIELD["--gpu"] == "backend"
    assert "num_output_devices" in g.KEYS["--virtio-snd"]
    assert "fs" in g.KEY_VALUES["--vhost-user", "type"]
    assert "snd" not in g.KEY_VALUES["--vhost-user", "type"]


def test_gpu_display_keys() -> None:
    assert "displays" in g.KEYS["--gpu"]
    display = g.NESTED_KEYS["--gpu", "displays"]
    assert display == {"mode", "hidden", "refresh-rate", "dpi"}
    assert "horizontal-dpi" not in display


# --------------------------------------------------------------------------------------------
# Helpers.


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("--block=path=/x,ro", "--block"),
        ("-p=init=/bin/sh", "--params"),
        ("-m", "--mem"),
        ("--cpus", "--cpus"),
        ("--host_ip", "--host-ip"),
        ("--host_ip=1.2.3.4", "--host_ip"),
        ("-h", "--help"),
        ("-", None),
        ("", None),
        ("/boot/vmlinuz", None),
        ("path=/x,ro", None),
    ],
)
def test_canonical_flag(arg: str, expected: str | None) -> None:
    assert g.canonical_flag(arg) == expected


def test_classify_unknown() -> None:
    assert g.classify("--no-such-flag") == "unknown"
    assert g.classify("--host_ip=1.2.3.4") == "unknown"
    assert g.classify("--no-pmu") == "unknown"  # aarch64 only
    assert g.classify("vmlinuz") == "unknown"
    assert g.classify("--help") == "unknown"


def test_commit_recorded() -> None:
    assert len(g.CROSVM_COMMIT) == 40
    assert g.CROSVM_COMMIT_DATE == "2026-08-21"
