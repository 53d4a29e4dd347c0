"""Every cross-field rule, one test each: the bad case names the option, the good case passes."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmsilo_nix import ConfigError, load, parse_source, structure, validate
from vmsilo_nix.config import rules
from vmsilo_nix.config.rules import RULES
from vmsilo_nix.config.values import derive_mac
from vmsilo_nix.pipeline import check as check_raw
from vmsilo_nix.pipeline import findings

from .conftest import EXAMPLES, needs_nix

VM = "programs.vmsilo.nixosVms"


def check(raw: dict[str, Any]) -> list[str]:
    return [str(p) for p in findings(structure({"user": "alice", **raw}))]


def vms(*specs: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"nixosVms": list(specs), **top}


def tap(**extra: Any) -> dict[str, Any]:
    return {"interfaces": {"wan": {"tap": extra}}}


def assert_only(found: list[str], *expected: str) -> None:
    assert found == list(expected)


@needs_nix
def test_the_example_file_passes_every_rule() -> None:
    config = load(parse_source(file=str(EXAMPLES / "desktop.nix")))
    assert findings(config) == []


def test_vm_names_unique() -> None:
    assert_only(
        check(vms({"name": "a"}, {"name": "a"})),
        f"{VM}[1] (a).name: VM name 'a' is already used by nixosVms[0]",
    )


@pytest.mark.parametrize("name", ["", "has space", "a/b", "-lead", "dot.ted", "x" * 33, "é"])
def test_vm_names_safe_for_units_files_and_interfaces(name: str) -> None:
    found = check(vms({"name": name}))
    assert len(found) == 1 and found[0].startswith(f"{VM}[0]") and ".name: " in found[0]


def test_user_and_daemon_log_levels() -> None:
    found = [
        str(p) for p in findings(structure({"user": " ", "vmsilo-tray": {"logLevel": "loud"}}))
    ]
    assert found == [
        "programs.vmsilo.user: must name the account that runs the VMs",
        "programs.vmsilo.vmsilo-tray.logLevel: expected one of error, warn, info, debug, trace, "
        "got 'loud'",
    ]


def test_tap_required_for_type_tap() -> None:
    assert_only(
        check(vms({"name": "a", "network": {"interfaces": {"wan": {}}}})),
        f'{VM}[0] (a).network.interfaces.wan.tap: must be set when type is "tap"',
    )


def test_tap_default_name_fits_ifnamsiz() -> None:
    found = check(vms({"name": "averyverylongvm", "network": tap()}))
    assert found == [
        f"{VM}[0] (averyverylongvm).network.interfaces.wan.tap.name: interface name "
        "'averyverylongvm-0' is longer than 15 characters (default name 'averyverylongvm-0'; "
        "set it)"
    ]
    assert check(vms({"name": "averyverylongvm", "network": tap(name="avlv0")})) == []


def test_tap_names_unique_across_vms_including_defaults() -> None:
    found = check(vms({"name": "a", "network": tap()}, {"name": "b", "network": tap(name="a-0")}))
    assert found == [
        f"{VM}[1] (b).network.interfaces.wan.tap.name: TAP name 'a-0' is also used "
        f"by {VM}[0] (a).network.interfaces.wan.tap.name"
    ]


def test_tap_index_follows_interface_name_order() -> None:
    # interfaces are an attribute set: Nix orders them by name, so "a" is index 0
    found = check(
        vms(
            {
                "name": "v",
                "network": {"interfaces": {"z": {"tap": {"name": "v-0"}}, "a": {"tap": {}}}},
            }
        )
    )
    assert found == [
        f"{VM}[0] (v).network.interfaces.z.tap.name: TAP name 'v-0' is also used by "
        f"{VM}[0] (v).network.interfaces.a.tap.name"
    ]


def test_host_address_and_bridge_exclusive() -> None:
    assert_only(
        check(vms({"name": "a", "network": tap(hostAddress="10.0.0.1/24", bridge="br0")})),
        f"{VM}[0] (a).network.interfaces.wan.tap: hostAddress and bridge cannot both be set",
    )


def test_host_address_needs_prefix() -> None:
    found = check(vms({"name": "a", "network": tap(hostAddress="10.0.0.1")}))
    assert len(found) == 1 and "tap.hostAddress" in found[0]


@pytest.mark.parametrize(
    ("iface", "where"),
    [
        ({"addresses": ["fc00::1/64"]}, "addresses[0]"),
        ({"addresses": ["10.0.0.1"]}, "addresses[0]"),
        ({"v6Addresses": ["10.0.0.1/24"]}, "v6Addresses[0]"),
        ({"routes": {"::/0": {"via": "10.0.0.1"}}}, 'routes."::/0"'),
        ({"routes": {"0.0.0.0/0": {"via": "fc00::1"}}}, 'routes."0.0.0.0/0".via'),
        ({"routes": {"10.0.0.1/24": {"via": "10.0.0.254"}}}, 'routes."10.0.0.1/24"'),
        ({"v6Routes": {"::/0": {"via": "10.0.0.1"}}}, 'v6Routes."::/0".via'),
    ],
)
def test_addresses_and_routes_of_the_right_family(iface: dict[str, Any], where: str) -> None:
    found = check(vms({"name": "a", "network": {"interfaces": {"wan": {"tap": {}, **iface}}}}))
    assert len(found) == 1, found
    assert found[0].startswith(f"{VM}[0] (a).network.interfaces.wan.{where}: ")


def test_nameservers_are_addresses() -> None:
    assert check(vms({"name": "a", "network": {"nameservers": ["9.9.9.9", "2620:fe::fe"]}})) == []
    found = check(vms({"name": "a", "network": {"nameservers": ["dns.quad9.net"]}}))
    assert len(found) == 1 and found[0].startswith(f"{VM}[0] (a).network.nameservers[0]: ")


@pytest.mark.parametrize(
    ("mac", "fragment"),
    [
        ("52-54-00-12-34-56", "macAddress: "),
        ("52:54:00:12:34", "macAddress: "),
        ("01:00:5e:00:00:01", "is a multicast address"),
    ],
)
def test_mac_format_and_unicast(mac: str, fragment: str) -> None:
    found = check(
        vms({"name": "a", "network": {"interfaces": {"wan": {"tap": {}, "macAddress": mac}}}})
    )
    assert len(found) == 1 and fragment in found[0]


def test_mac_unique_explicit_and_derived() -> None:
    derived = derive_mac("a", "wan")
    found = check(
        vms(
            {"name": "a", "network": tap()},
            {
                "name": "b",
                "network": {"interfaces": {"lan": {"tap": {}, "macAddress": derived.upper()}}},
            },
        )
    )
    assert found == [
        f"{VM}[1] (b).network.interfaces.lan.macAddress: MAC {derived} is also used "
        f"by {VM}[0] (a).network.interfaces.wan.macAddress"
    ]


def test_nat_needs_an_interface() -> None:
    found = check({"hostNetworking": {"nat": {"enable": True}}})
    assert found == [
        "programs.vmsilo.hostNetworking.nat.interface: must be set when "
        "hostNetworking.nat.enable is true"
    ]
    assert check({"hostNetworking": {"nat": {"enable": True, "interface": "eth0"}}}) == []


@pytest.mark.parametrize(
    ("vm", "message"),
    [
        ({"cpus": 0}, "cpus: must be at least 1, got 0"),
        ({"memory": 0}, "memory: must be a positive number of MiB, got 0"),
        ({"memory": -5}, "memory: must be a positive number of MiB, got -5"),
        ({"autoShutdown": {"after": -1}}, "autoShutdown.after: must not be negative"),
        ({"rootOverlay": {"size": "ten gigs"}}, "rootOverlay.size: "),
    ],
)
def test_resources(vm: dict[str, Any], message: str) -> None:
    found = check(vms({"name": "a", **vm}))
    assert len(found) == 1 and message in found[0]


@pytest.mark.parametrize("size", ["10G", "256m", "1T", "512M", "1.5G"])
def test_sizes_parse(size: str) -> None:
    assert check(vms({"name": "a", "rootOverlay": {"size": size}})) == []


@pytest.mark.parametrize(
    ("balloond", "where"),
    [
        ({"pollInterval": "2"}, "pollInterval"),
        ({"minPollInterval": "fast"}, "minPollInterval"),
        ({"pollInterval": "100ms"}, "minPollInterval"),  # the 250ms default is now longer
        ({"criticalGuestAvailable": "lots"}, "criticalGuestAvailable"),
        ({"guestAvailableBias": "-1m"}, "guestAvailableBias"),
        ({"criticalHostPercent": 101}, "criticalHostPercent"),
        ({"psiCeiling": -1}, "psiCeiling"),
        ({"psiCeiling": 0}, "psiCeiling"),
    ],
)
def test_balloond_sizes_durations_percentages(balloond: dict[str, Any], where: str) -> None:
    found = check({"vmsilo-balloond": balloond})
    assert len(found) == 1 and found[0].startswith(f"programs.vmsilo.vmsilo-balloond.{where}: ")


@pytest.mark.parametrize("color", ["red", "RoyalBlue", "#fff", "#3498db", "rgb(255, 0, 0)"])
def test_colours_accepted(color: str) -> None:
    assert check(vms({"name": "a", "color": color})) == []


@pytest.mark.parametrize("color", ["reddish", "#12345", "rgb(256,0,0)", "hsl(0,0,0)", ""])
def test_colours_rejected(color: str) -> None:
    found = check(vms({"name": "a", "color": color}))
    assert len(found) == 1 and found[0].startswith(f"{VM}[0] (a).color: ")


def test_depends_on_exists_and_not_self() -> None:
    found = check(vms({"name": "a", "dependsOn": ["a", "ghost"]}))
    assert found == [
        f"{VM}[0] (a).dependsOn[0]: a VM cannot depend on itself",
        f"{VM}[0] (a).dependsOn[1]: no VM is named 'ghost'",
    ]


def test_depends_on_cycles_reported_once() -> None:
    found = check(
        vms(
            {"name": "a", "dependsOn": ["b"]},
            {"name": "b", "dependsOn": ["c"]},
            {"name": "c", "dependsOn": ["a"]},
            {"name": "d", "dependsOn": ["a"]},
        )
    )
    assert found == [f"{VM}[0] (a).dependsOn: dependency cycle: a -> b -> c -> a"]


def test_depends_on_diamond_is_not_a_cycle() -> None:
    assert (
        check(
            vms(
                {"name": "a", "dependsOn": ["b", "c"]},
                {"name": "b", "dependsOn": ["d"]},
                {"name": "c", "dependsOn": ["d"]},
                {"name": "d"},
            )
        )
        == []
    )


@pytest.mark.parametrize(
    ("vm", "where"),
    [
        ({"additionalDisks": [{"ro": True}]}, "additionalDisks[0].path: is required"),
        ({"additionalDisks": [{"path": None}]}, "additionalDisks[0].path: is required"),
        ({"rootDisk": {"ro": True}}, "rootDisk.path: is required"),
        (
            {"additionalDisks": [{"path": "/x", "a,b": 1}]},
            'additionalDisks[0]."a,b": crosvm --block',
        ),
        ({"additionalDisks": [{"path": "/x", "blocksize": 1}]}, "did you mean 'block-size'?"),
        ({"vhostUser": [{"type": "snd", "socket": "/s"}]}, "vhostUser[0].type: crosvm --vhost"),
        ({"gpu": {"context_types": "cross-domain"}}, "did you mean 'context-types'?"),
        ({"vhostUser": [{"type": "net"}]}, "vhostUser[0].socket: is required"),
        ({"gpu": {"width=1": 3}}, 'gpu."width=1": crosvm --gpu has no key'),
    ],
)
def test_disk_entries_need_path_and_crosvm_keys(vm: dict[str, Any], where: str) -> None:
    found = check(vms({"name": "a", **vm}))
    assert len(found) == 1, found
    assert found[0].startswith(f"{VM}[0] (a).{where}") or where in found[0], found


def test_pci_devices_must_be_isolated_with_bdf_normalised() -> None:
    ok = vms(
        {"name": "a", "pciDevices": [{"path": "01:00.0"}, {"path": "0000:02:00.1"}]},
        isolatedPciDevices=["0000:01:00.0", "02:00.1"],
    )
    assert check(ok) == []
    found = check(
        vms(
            {"name": "a", "pciDevices": [{"path": "03:00.0"}, {"path": "zz"}, {}]},
            isolatedPciDevices=["01:00.0", "0000:01:00.0", "nope"],
        )
    )
    assert found == [
        "programs.vmsilo.isolatedPciDevices[1]: 0000:01:00.0 is listed twice",
        found[1],
        f"{VM}[0] (a).pciDevices[0].path: 0000:03:00.0 must also be listed in "
        "programs.vmsilo.isolatedPciDevices, so that vfio-pci claims it at boot",
        found[3],
        f"{VM}[0] (a).pciDevices[2].path: is required (a non-empty string)",
    ]
    assert found[1].startswith("programs.vmsilo.isolatedPciDevices[2]: ")
    assert found[3].startswith(f"{VM}[0] (a).pciDevices[1].path: ")


def test_posix_acl_excludes_translate() -> None:
    share = {"path": "/d", "translateUid": "map:1000:1000:1", "translateGid": "host:0:0:1"}
    found = check(vms({"name": "a", "sharedDirectories": {"d": share}}))
    assert found == [
        f"{VM}[0] (a).sharedDirectories.d.translateUid: cannot be used with posixAcl = true "
        "(virtiofsd refuses both)",
        f"{VM}[0] (a).sharedDirectories.d.translateGid: cannot be used with posixAcl = true "
        "(virtiofsd refuses both)",
    ]
    assert check(vms({"name": "a", "sharedDirectories": {"d": {**share, "posixAcl": False}}})) == []


@pytest.mark.parametrize(
    ("share", "where"),
    [
        ({"path": "relative"}, "d.path: must be an absolute path"),
        ({"path": "/d", "uidMap": "1000:1000:1"}, "d.uidMap: expected the form"),
        ({"path": "/d", "posixAcl": False, "translateGid": "1:2:3"}, "d.translateGid: expected"),
        ({"path": "/d", "threadPoolSize": -1}, "d.threadPoolSize: must not be negative"),
    ],
)
def test_shared_directory_values(share: dict[str, Any], where: str) -> None:
    found = check(vms({"name": "a", "sharedDirectories": {"d": share}}))
    assert len(found) == 1 and found[0].startswith(f"{VM}[0] (a).sharedDirectories.{where}")


def test_share_tags_usable_and_not_clashing_with_home() -> None:
    found = check(
        vms(
            {
                "name": "a",
                "sharedDirectories": {
                    "home": {"path": "/h"},
                    "bad tag": {"path": "/b"},
                    "t" * 37: {"path": "/t"},
                },
            }
        )
    )
    assert (
        f"{VM}[0] (a).sharedDirectories.home: tag 'home' is taken by the sharedHome share; "
        "rename it or set sharedHome = false" in found
    )
    assert sum("tag must be 1 to 36 bytes" in f for f in found) == 2
    assert (
        check(
            vms({"name": "a", "sharedHome": False, "sharedDirectories": {"home": {"path": "/h"}}})
        )
        == []
    )


def test_shared_home_must_be_absolute() -> None:
    assert_only(
        check(vms({"name": "a", "sharedHome": "home/a"})),
        f"{VM}[0] (a).sharedHome: must be an absolute path, got 'home/a'",
    )


def test_kernel_params_printable_ascii() -> None:
    found = check(vms({"name": "a", "kernelParams": ["quiet", "-x", "é"]}))
    assert [f.split(": ")[0] for f in found] == [
        f"{VM}[0] (a).kernelParams[1]",
        f"{VM}[0] (a).kernelParams[2]",
    ]


def test_kernel_command_line_length() -> None:
    # crosvm's own, vmsilo's (init estimated at 133 bytes, name, overlay, the VM identity):
    # 285 bytes for a plain VM named "a"
    ok = ["x" * 99] * 17  # 1699 bytes: 1985 in all
    assert check(vms({"name": "a", "kernelParams": ok})) == []
    found = check(vms({"name": "a", "kernelParams": [*ok, "y" * 70]}))
    assert found == [
        f"{VM}[0] (a).kernelParams: make the kernel command line 2056 bytes long with the "
        "parameters crosvm and vmsilo add; crosvm allows 2047"
    ]


def test_kernel_command_line_counts_an_unbuilt_program_profile() -> None:
    """A VM with guestPrograms gets `vmsilo.programs=<profile>` once built; before that its
    length is estimated (80 bytes), so a command line that fits without it may not with it."""
    ok = ["x" * 99] * 17  # 1985 bytes in all, as above
    pkg = "/nix/store/00000000000000000000000000000000-hello"
    found = check(vms({"name": "a", "kernelParams": ok, "guestPrograms": [pkg]}))
    assert found == [
        f"{VM}[0] (a).kernelParams: make the kernel command line 2082 bytes long with the "
        "parameters crosvm and vmsilo add; crosvm allows 2047"
    ]


def test_vfio_keys_are_current_crosvm() -> None:
    """The seed's own example, iommu = "on", is gone from crosvm: caught here, not at boot."""
    found = check(
        vms(
            {"name": "a", "pciDevices": [{"path": "01:00.0", "iommu": "on"}]},
            isolatedPciDevices=["01:00.0"],
        )
    )
    assert len(found) == 1 and found[0].startswith(
        f"{VM}[0] (a).pciDevices[0].iommu: crosvm --vfio iommu= takes one of"
    )
    assert (
        check(
            vms(
                {"name": "a", "pciDevices": [{"path": "01:00.0", "iommu": "viommu"}]},
                isolatedPciDevices=["01:00.0"],
            )
        )
        == []
    )


@pytest.mark.parametrize(
    ("where", "args", "message"),
    [
        ("extraRunArgs", ["--mem", "4096"], "vmsilo already passes --mem (from memory)"),
        ("extraRunArgs", ["-c=4"], "vmsilo already passes --cpus"),
        ("extraRunArgs", ["--core-scheduling=false"], "vmsilo already passes --core-scheduling"),
        ("extraRunArgs", ["--gpu", "backend=2d"], "crosvm allows one GPU"),
        ("extraRunArgs", ["--vhost-user-fs", "/s:tag"], "crosvm no longer has --vhost-user-fs"),
        ("extraRunArgs", ["--no-balloon"], "vmsilo-balloond moves memory through the balloon"),
        ("extraArgs", ["--log-level", "debug"], "set that option instead"),
        ("extraArgs", ["--disable-sandbox"], "is not a global crosvm flag"),
        ("extraArgs", ["run"], "vmsilo adds `run` itself"),
    ],
)
def test_extra_args_respect_crosvm_grammar(where: str, args: list[str], message: str) -> None:
    found = check(vms({"name": "a", "crosvm": {where: args}}))
    assert len(found) == 1, found
    assert found[0].startswith(f"{VM}[0] (a).crosvm.{where}[0]: ") and message in found[0]
    # The global lists are checked once, not once per VM.
    found = check({"crosvm": {where: args}, "nixosVms": [{"name": "a"}, {"name": "b"}]})
    assert len(found) == 1 and found[0].startswith(f"programs.vmsilo.crosvm.{where}[0]: ")


def test_extra_args_that_crosvm_accepts() -> None:
    ok = {"extraArgs": ["--syslog-tag", "banking"], "extraRunArgs": ["--disable-sandbox"]}
    assert check(vms({"name": "a", "crosvm": ok})) == []
    assert (
        check(vms({"name": "a", "gpu": False, "crosvm": {"extraRunArgs": ["--gpu=backend=2d"]}}))
        == []
    )


def test_kernel_and_initramfs_absolute() -> None:
    found = check(vms({"name": "a", "kernel": "bzImage", "initramfs": "/boot/initrd"}))
    assert found == [f"{VM}[0] (a).kernel: must be an absolute path, got 'bzImage'"]


def test_validate_raises_with_every_problem() -> None:
    config = structure({"user": "a", "nixosVms": [{"name": "a", "cpus": 0, "memory": 0}]})
    with pytest.raises(ConfigError) as info:
        validate(config)
    assert len(info.value.problems) == 2


def test_every_rule_is_documented() -> None:
    for rule in RULES:
        assert rule.__doc__ and rule.__doc__.strip(), rule.__name__


def test_check_reports_type_errors_and_rule_violations_together() -> None:
    raw: dict[str, Any] = {
        "user": "a",
        "hostNetworking": {"nat": {"enable": True}},
        "nixosVms": [
            {
                "name": "w",
                "cpus": "4",
                "memory": 0,
                "network": {"interfaces": {"wan": {"tap": {"name": 7}}}},
            },
            {"name": "v", "dependsOn": ["ghost"]},
        ],
    }
    with pytest.raises(ConfigError) as info:
        check_raw(raw)
    assert [str(p) for p in info.value.problems] == [
        f'{VM}[0] (w).cpus: expected signed integer, got the string "4"',
        f"{VM}[0] (w).network.interfaces.wan.tap.name: expected null or string, got the integer 7",
        "programs.vmsilo.hostNetworking.nat.interface: must be set when hostNetworking.nat."
        "enable is true",
        f"{VM}[0] (w).memory: must be a positive number of MiB, got 0",
        f"{VM}[1] (v).dependsOn[0]: no VM is named 'ghost'",
    ]
    # the bad values are not reported a second time through their defaults
    assert raw["nixosVms"][0]["cpus"] == "4", "the caller's data is not modified"


def test_check_gives_up_on_rules_when_a_required_value_is_broken() -> None:
    with pytest.raises(ConfigError) as info:
        check_raw({"user": "a", "nixosVms": [{"name": 1, "cpus": 0}]})
    assert [str(p) for p in info.value.problems] == [
        f"{VM}[0].name: expected string, got the integer 1"
    ]


def test_core_scheduling_is_free_when_isolation_is_per_vm() -> None:
    extra = {"extraRunArgs": ["--core-scheduling=false"]}
    assert check(vms({"name": "a", "crosvm": extra}, schedulerIsolation="vm")) == []
    assert len(check(vms({"name": "a", "crosvm": extra}, schedulerIsolation="off"))) == 1


@pytest.mark.parametrize("level", ["info", "off", "info,devices=debug", "trace,vm_control=warn"])
def test_crosvm_log_levels_accepted(level: str) -> None:
    assert check({"crosvm": {"logLevel": level}}) == []


@pytest.mark.parametrize("level", ["loud", "", "info,", "devices=", "INFO"])
def test_crosvm_log_levels_rejected(level: str) -> None:
    assert len(check({"crosvm": {"logLevel": level}})) == 1
    found = check(vms({"name": "a", "crosvm": {"logLevel": level}}))
    assert len(found) == 1 and found[0].startswith(f"{VM}[0] (a).crosvm.logLevel: expected a level")


def test_mandatory_file_handles_are_refused() -> None:
    """virtiofsd runs as programs.vmsilo.user; the real one refuses "mandatory" unprivileged
    (tests/test_virtiofsd_real.py shows it)."""
    share = {"path": "/srv/s", "inodeFileHandles": "mandatory"}
    found = check(vms({"name": "a", "sharedDirectories": {"s": share}}))
    assert len(found) == 1
    assert found[0].startswith(f"{VM}[0] (a).sharedDirectories.s.inodeFileHandles: ")
    assert "CAP_DAC_READ_SEARCH" in found[0]
    share["inodeFileHandles"] = "prefer"
    assert check(vms({"name": "a", "sharedDirectories": {"s": share}})) == []


# --- resources two VMs cannot share ----------------------------------------------------------


def warnings_of(raw: dict[str, Any]) -> list[str]:
    return [str(p) for p in rules.warnings(structure({"user": "alice", **raw}))]


def test_a_written_disk_shared_between_vms_names_both() -> None:
    disk = {"path": "/var/lib/vms/data.img"}
    assert_only(
        check(vms({"name": "a", "additionalDisks": [disk]}, {"name": "b", "rootDisk": disk})),
        f"{VM}[1] (b).rootDisk.path: /var/lib/vms/data.img is also a disk of "
        f"{VM}[0] (a).additionalDisks[0]; this one writes it and that one writes it, so the "
        "image would be corrupted (make both ro = true, or use a copy)",
    )


def test_a_disk_read_by_one_vm_and_written_by_another_is_refused() -> None:
    ro = {"path": "/d/x.img", "ro": True}
    rw = {"path": "/d/./x.img"}  # the same file, spelled differently
    found = check(
        vms({"name": "a", "additionalDisks": [ro]}, {"name": "b", "additionalDisks": [rw]})
    )
    assert found == [
        f"{VM}[1] (b).additionalDisks[0].path: /d/x.img is also a disk of "
        f"{VM}[0] (a).additionalDisks[0]; this one writes it and that one reads it, so the "
        "image would be corrupted (make both ro = true, or use a copy)"
    ]


def test_a_writable_disk_twice_in_one_vm_is_refused_read_only_everywhere_is_fine() -> None:
    rw = {"path": "/d/x.img"}
    assert len(check(vms({"name": "a", "additionalDisks": [rw, rw]}))) == 1
    ro = {"path": "/d/x.img", "ro": True}
    assert check(vms({"name": "a", "additionalDisks": [ro]}, {"name": "b", "rootDisk": ro})) == []


def test_a_pci_device_given_twice_names_both() -> None:
    dev = {"path": "01:00.0"}
    found = check(
        vms(
            {"name": "a", "pciDevices": [dev]},
            {"name": "b", "pciDevices": [{"path": "0000:01:00.0"}]},
            isolatedPciDevices=["01:00.0"],
        )
    )
    assert_only(
        found,
        f"{VM}[1] (b).pciDevices[0].path: 0000:01:00.0 is already passed to "
        f"{VM}[0] (a).pciDevices[0].path; a device can be given to one VM only",
    )
    same_vm = check(vms({"name": "a", "pciDevices": [dev, dev]}, isolatedPciDevices=["01:00.0"]))
    assert len(same_vm) == 1 and "a device can be given to one VM only" in same_vm[0]


def test_host_tap_subnets_may_not_overlap() -> None:
    found = check(
        vms(
            {"name": "a", "network": tap(hostAddress="10.0.0.1/24")},
            {"name": "b", "network": tap(hostAddress="10.0.0.129/25")},
            {"name": "c", "network": tap(hostAddress="10.0.1.1/24")},
        )
    )
    assert_only(
        found,
        f"{VM}[1] (b).network.interfaces.wan.tap.hostAddress: the host side 10.0.0.129/25 is on "
        f"a subnet that overlaps 10.0.0.1/24 of {VM}[0] (a).network.interfaces.wan.tap.hostAddress",
    )


def test_a_guest_address_may_not_be_a_host_side() -> None:
    net = {
        "interfaces": {"wan": {"tap": {"hostAddress": "10.0.0.1/24"}, "addresses": ["10.0.0.1/24"]}}
    }
    assert_only(
        check(vms({"name": "a", "network": net})),
        f"{VM}[0] (a).network.interfaces.wan.addresses[0]: 10.0.0.1 is the host side of a TAP "
        f"({VM}[0] (a).network.interfaces.wan.tap.hostAddress); the guest needs an address of "
        "its own",
    )


def _wan(address: str, via: str) -> dict[str, Any]:
    tap_side = {"tap": {"hostAddress": "10.0.0.1/24"}, "addresses": [address]}
    return {"interfaces": {"wan": {**tap_side, "routes": {"0.0.0.0/0": {"via": via}}}}}


def test_guest_off_subnet_address_and_gateway_are_warnings() -> None:
    raw = vms({"name": "a", "network": _wan("10.0.5.2/24", "192.168.1.1")})
    assert check(raw) == []  # no error: it can be made to work
    assert warnings_of(raw) == [
        f"{VM}[0] (a).network.interfaces.wan.addresses[0]: 10.0.5.2/24 is outside the subnet "
        "10.0.0.0/24 of the TAP's host side (10.0.0.1/24); the guest cannot reach the host "
        "directly",
        f'{VM}[0] (a).network.interfaces.wan.routes."0.0.0.0/0".via: gateway 192.168.1.1 is on '
        "none of the interface's subnets (10.0.5.0/24)",
    ]
    assert warnings_of(vms({"name": "a", "network": _wan("10.0.0.2/24", "10.0.0.1")})) == []


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (
            ["balloond"],
            f"{VM}[0] (balloond).name: VM 'balloond' would take vmsilo-balloond.service, which "
            "the host daemon vmsilo-balloond already has",
        ),
        (
            ["tray"],
            f"{VM}[0] (tray).name: VM 'tray' would take vmsilo-tray.service, which the host "
            "daemon vmsilo-tray already has",
        ),
    ],
)
def test_vm_names_that_collide_with_the_daemons(names: list[str], message: str) -> None:
    found = check(vms(*({"name": n} for n in names)))
    assert found[0] == message
    assert all("the host daemon" in f for f in found)  # the unit and libexec/vmsilo/<name>


def test_a_vm_named_like_another_vms_tap_unit() -> None:
    found = check(vms({"name": "web", "network": tap()}, {"name": "web-taps"}))
    assert_only(
        found,
        f"{VM}[1] (web-taps).name: VM 'web-taps' would take vmsilo-web-taps.service, which "
        f"{VM}[0] (web).name already has",
    )
    assert check(vms({"name": "web"}, {"name": "web-taps"})) == []  # web has no TAPs


@pytest.mark.parametrize(
    "param", ["init=/bin/sh", "vmsilo.name=other", "quiet vmsilo.config=eyJ9", 'init="/a b"']
)
def test_kernel_params_vmsilo_sets_are_reserved(param: str) -> None:
    found = check(vms({"name": "a", "kernelParams": [param]}))
    assert len(found) == 1
    assert found[0].startswith(f"{VM}[0] (a).kernelParams[0]: ")
    assert "is set by vmsilo" in found[0]


@pytest.mark.parametrize("param", ["quiet", "initcall_debug", "vmsilox=1", 'x="init=1"'])
def test_kernel_params_that_only_look_reserved(param: str) -> None:
    assert check(vms({"name": "a", "kernelParams": [param]})) == []


@given(st.text(alphabet=st.sampled_from(" =.ab-_/init"), max_size=30))
def test_kernel_param_names_without_quotes_take_the_short_way(text: str) -> None:
    """Words without double quotes are split directly; the names are the quoting reader's."""
    assert rules._param_names(text) == rules._quoted_param_names(text)


@pytest.mark.parametrize(
    ("vm", "message"),
    [
        ({"cpus": 255}, "cpus: crosvm runs at most 254 vCPUs, got 255"),
        ({"memory": 2**44}, "memory: 17592186044416 MiB overflows crosvm's 64-bit memory size"),
    ],
)
def test_crosvm_resource_limits(vm: dict[str, Any], message: str) -> None:
    found = check(vms({"name": "a", **vm}))
    assert len(found) == 1 and message in found[0]
    assert check(vms({"name": "a", "cpus": 254, "memory": 2**44 - 1})) == []


def test_host_subnets_adjacent_are_fine_nested_ones_overlap() -> None:
    def taps(*addresses: str) -> dict[str, Any]:
        return vms(
            *({"name": f"v{i}", "network": tap(hostAddress=a)} for i, a in enumerate(addresses))
        )

    assert check(taps("10.0.0.1/25", "10.0.0.129/25", "fd00::1/64", "10.0.1.1/24")) == []
    found = check(taps("10.0.5.1/24", "10.0.0.1/16", "fd00::1/64", "fd00::2/120"))
    assert [f.split(":")[0] for f in found] == [
        f"{VM}[1] (v1).network.interfaces.wan.tap.hostAddress",
        f"{VM}[3] (v3).network.interfaces.wan.tap.hostAddress",
    ]
    assert "overlaps 10.0.5.1/24 of" in found[0] and "overlaps fd00::1/64 of" in found[1]
