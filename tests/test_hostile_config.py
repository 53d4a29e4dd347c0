"""Odd but type-correct configuration values never become root code: `vmsilo check` refuses
every value that would reach a shell, a unit file, networkd, mount or another command line
unsafely, naming the option path, and the NixOS module refuses the values it hands to NixOS
options itself before a real NixOS renders them."""

from __future__ import annotations

import copy
import json
import random
import subprocess
from pathlib import Path
from typing import Any

import pytest

from vmsilo_nix.config import values
from vmsilo_nix.errors import ConfigError
from vmsilo_nix.pipeline import check

from .conftest import EXAMPLES, NIX, NIXPKGS, ROOT, needs_nix, needs_real_nixos

DESKTOP: dict[str, Any] = json.loads((EXAMPLES / "desktop.json").read_text())
REAL_EVAL = ROOT / "tests/nix/hardening/eval.nix"
NAME_VERDICTS = ROOT / "tests/nix/name-verdicts.nix"


def problems(change: dict[str, Any]) -> list[str]:
    """`check`'s messages for the example desktop with ``change`` laid over it."""
    raw = copy.deepcopy(DESKTOP)
    _merge(raw, change)
    try:
        check(raw)
    except ConfigError as err:
        return [str(p) for p in err.problems]
    return []


def _merge(into: dict[str, Any], change: dict[str, Any]) -> None:
    for key, value in change.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


def vm_change(index: int, change: dict[str, Any]) -> dict[str, Any]:
    vms = copy.deepcopy(DESKTOP["nixosVms"])
    _merge(vms[index], change)
    return {"nixosVms": vms}


# --- check ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"hostNetworking": {"nat": {"interface": "eth0;id>/tmp/x"}}},
            "programs.vmsilo.hostNetworking.nat.interface: invalid interface name",
        ),
        (
            {"hostNetworking": {"nat": {"interface": "$(id)"}}},
            "programs.vmsilo.hostNetworking.nat.interface: invalid interface name",
        ),
        (
            {"hostNetworking": {"nat": {"interface": "eth`id`"}}},
            "programs.vmsilo.hostNetworking.nat.interface: invalid interface name",
        ),
        (
            {"hostNetworking": {"nat": {"interface": "eth0'"}}},
            "programs.vmsilo.hostNetworking.nat.interface: invalid interface name",
        ),
        (
            {"user": "alice\nExecStartPre=+/bin/sh -c id"},
            "programs.vmsilo.user: the string contains the control character U+000A",
        ),
        ({"user": "root"}, "programs.vmsilo.user: the VMs must not run as root"),
        ({"user": "0"}, "programs.vmsilo.user: user name '0' is a number"),
        ({"user": "al ice"}, "programs.vmsilo.user: invalid user name"),
        ({"user": "-alice"}, "programs.vmsilo.user: invalid user name"),
        ({"user": "a" * 32}, "programs.vmsilo.user: user name"),
        ({"user": "  "}, "programs.vmsilo.user: must name the account"),
        ({"crosvm": {"logLevel": "debug\n"}}, "programs.vmsilo.crosvm.logLevel: the string"),
        # the same, without the control character rule: the pattern itself is anchored
        ({"crosvm": {"logLevel": "debug,"}}, "programs.vmsilo.crosvm.logLevel: expected a level"),
    ],
)
def test_check_refuses_values_that_would_become_code(change: dict[str, Any], expected: str) -> None:
    found = problems(change)
    assert len(found) == 1, found
    assert found[0].startswith(expected), found


def test_vm_values_that_would_become_code() -> None:
    work = 1  # nixosVms[1] is work, with a TAP and two shares
    assert DESKTOP["nixosVms"][work]["name"] == "work"
    interfaces = DESKTOP["nixosVms"][work]["network"]["interfaces"]
    ifname = next(iter(interfaces))
    tap = {"network": {"interfaces": {ifname: {"tap": {"name": "w;reboot"}}}}}
    assert problems(vm_change(work, tap)) == [
        f"programs.vmsilo.nixosVms[1] (work).network.interfaces.{ifname}.tap.name: "
        "invalid interface name 'w;reboot': must not contain ';' "
        "(only ASCII letters, digits, '.', '_' and '-')"
    ]
    params = {"kernelParams": ["--gdb"]}
    assert problems(vm_change(work, params)) == [
        "programs.vmsilo.nixosVms[1] (work).kernelParams[0]: kernel parameter '--gdb' starts "
        "with '-', which crosvm reads as a flag"
    ]
    share = next(iter(DESKTOP["nixosVms"][work]["sharedDirectories"]))
    shares = copy.deepcopy(DESKTOP["nixosVms"][work]["sharedDirectories"])
    shares["docs\n"] = shares.pop(share)
    found = problems(vm_change(work, {"sharedDirectories": shares}))
    assert found == [
        'programs.vmsilo.nixosVms[1] (work).sharedDirectories."docs\\n": the attribute name '
        "contains the control character U+000A; no option takes one"
    ]
    shares = copy.deepcopy(DESKTOP["nixosVms"][work]["sharedDirectories"])
    shares[share]["uidMap"] = ":0:1000:1:\n"
    found = problems(vm_change(work, {"sharedDirectories": shares}))
    assert len(found) == 1 and "control character U+000A" in found[0], found
    shares[share]["uidMap"] = " 0 1000 1 "  # anchored, and whitespace is no delimiter
    found = problems(vm_change(work, {"sharedDirectories": shares}))
    assert len(found) == 1 and "uidMap: expected the form" in found[0], found


@pytest.mark.parametrize("char", ["\n", "\r", "\t", "\x1b", "\x7f", "\x85", "\x9b"])
def test_control_characters_are_refused_in_any_string(char: str) -> None:
    for change in (
        {"hostNetworking": {"nat": {"interface": f"eth0{char}"}}},
        {"crosvm": {"extraArgs": [f"--syslog-tag=x{char}"]}},
        vm_change(0, {"color": f"red{char}"}),
        vm_change(0, {"sharedHome": f"/shared/x{char}y"}),
    ):
        found = problems(change)
        assert len(found) == 1, found
        assert f"control character U+{ord(char):04X}" in found[0]


# --- the NixOS module's own assertions ----------------------------------------------------------


def test_nix_name_rules_file_is_current() -> None:
    """nix/names.json is written from the engine's rules; regenerate it with
    `python -c 'import json; from vmsilo_nix.config.values import nix_name_rules as r;
    print(json.dumps(r(), indent=2, sort_keys=True))' > nix/names.json`."""
    text = json.dumps(values.nix_name_rules(), indent=2, sort_keys=True) + "\n"
    assert (ROOT / "nix/names.json").read_text() == text


CHECKS = {
    "interface": values.check_interface_name,
    "user": values.check_user_name,
    "vm": values.check_unit_name,
    "pci": values.normalise_bdf,
}
HOSTILE = [
    "",
    ".",
    "..",
    "...",
    "0",
    "123",
    "root",
    "rooted",
    "eth0",
    "eth0\n",
    "\neth0",
    "eth0;id",
    "$(id)",
    "a b",
    "a" * 15,
    "a" * 16,
    "a" * 31,
    "a" * 32,
    "a" * 33,
    "-x",
    ".x",
    "_x",
    "x-",
    "\u00e9",
    "01:00.0",
    "0000:01:00.7",
    "0000:01:00.8",
    "01:00.0\n",
    '01:00.0", RUN+="/bin/sh',
    "/sys/bus/pci/devices/0000:01:00.0",
]


def _samples() -> list[str]:
    rng = random.Random(12)
    alphabet = "aZ09._-;$ \n:/%\u00e9"
    return HOSTILE + [
        "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 34))) for _ in range(300)
    ]


def _python_accepts(kind: str, text: str) -> bool:
    try:
        CHECKS[kind](text)
    except ValueError:
        return False
    return True


@needs_nix
def test_the_module_checks_names_as_the_engine_does(nixpkgs_lib: Path) -> None:
    """Whatever the module's assertions let through, the engine accepts too (and the other way
    round, except for PCI device numbers above 1f, which the engine's build still refuses)."""
    samples = _samples()
    argv = ["nix-instantiate", "--eval", "--json", "--strict", str(NAME_VERDICTS)]
    argv += ["--argstr", "nixpkgsLib", str(nixpkgs_lib), "--argstr", "samples", json.dumps(samples)]
    result = subprocess.run(argv, capture_output=True, text=True, check=True)
    verdicts = json.loads(result.stdout)
    for kind in CHECKS:
        for text, nix_ok in zip(samples, verdicts[kind], strict=True):
            python_ok = _python_accepts(kind, text)
            if kind == "pci" and nix_ok and not python_ok:
                assert int(text.rsplit(":", 1)[1].split(".")[0], 16) > 0x1F, text
                continue
            assert nix_ok == python_ok, (kind, text)


# --- a real NixOS -----------------------------------------------------------------------------


def real_nixos(change: dict[str, Any]) -> dict[str, Any]:
    argv = [NIX, "--extra-experimental-features", "nix-command", "eval", "--json"]
    argv += ["--option", "substituters", "", "-f", str(REAL_EVAL)]
    argv += ["--argstr", "nixpkgs", NIXPKGS]
    argv += ["--argstr", "set", json.dumps(change), "facts"]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    facts: dict[str, Any] = json.loads(result.stdout)
    return facts


@needs_real_nixos
def test_real_nixos_refuses_a_user_and_nat_interface_that_would_run_as_root() -> None:
    user = "alice\nExecStartPre=+/bin/sh -c id"
    interface = "e;id>/tmp/v12"
    change = {"user": user, "hostNetworking": {"nat": {"interface": interface}}}
    facts = real_nixos(change)
    # What NixOS renders from these values is root code: a unit directive of its own, and a
    # command in the firewall script...
    assert "\nUser=alice\nExecStartPre=+/bin/sh -c id\n" in facts["workUnit"]
    assert f"-o {interface}" in facts["natScript"]
    # ...so the module's assertions, the engine's rules, refuse the system before it is built,
    # with the option paths
    assert facts["toplevel"] is False
    assert facts["failedAssertions"] == [
        f"programs.vmsilo.user: {json.dumps(user)} must be a user name NixOS accepts (ASCII "
        "letters, digits, '_', '.' and '-', at most 31), not a number and not root",
        f"programs.vmsilo.hostNetworking.nat.interface: {json.dumps(interface)} must be 1 to "
        "15 ASCII letters, digits, '.', '_' and '-' (not '.', '..' or all digits)",
    ]
    # and `vmsilo check`, which the package build runs too, says the same
    assert problems({"user": user}) == [
        "programs.vmsilo.user: the string contains the control character U+000A; no option "
        "takes one"
    ]
    assert problems({"hostNetworking": {"nat": {"interface": interface}}}) == [
        f"programs.vmsilo.hostNetworking.nat.interface: invalid interface name {interface!r}: "
        "must not contain '/', ';', '>' (only ASCII letters, digits, '.', '_' and '-')"
    ]


@needs_real_nixos
def test_real_nixos_refuses_root() -> None:
    facts = real_nixos({"user": "root"})
    assert "\nUser=root\n" in facts["workUnit"]
    assert facts["toplevel"] is False
    assert facts["failedAssertions"] == [
        'programs.vmsilo.user: "root" must be a user name NixOS accepts (ASCII letters, '
        "digits, '_', '.' and '-', at most 31), not a number and not root"
    ]
    assert problems({"user": "root"}) == [
        "programs.vmsilo.user: the VMs must not run as root; name an unprivileged account"
    ]


@needs_real_nixos
def test_real_nixos_refuses_a_pci_address_that_would_add_a_udev_rule() -> None:
    bdf = '03:00.0", RUN+="/bin/sh -c id'
    facts = real_nixos({"isolatedPciDevices": [bdf]})
    assert 'RUN+="/bin/sh -c id", ATTR{driver_override}' in facts["udevRules"]
    assert facts["toplevel"] is False
    assert facts["failedAssertions"] == [
        f"programs.vmsilo.isolatedPciDevices[0]: {json.dumps(bdf)} must be a PCI address like "
        '"01:00.0" or "0000:01:00.0"'
    ]
    assert problems({"isolatedPciDevices": [bdf]})[0].startswith(
        "programs.vmsilo.isolatedPciDevices[0]: invalid PCI address"
    )
