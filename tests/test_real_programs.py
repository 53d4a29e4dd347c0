"""Real NixOS, issue 16: one base guest system for every VM without guestConfig, a program
image per guestPrograms set, and no VM's packages in another VM's store.

The host is the example desktop with programs in banking, work and vault (vault also has a
guestConfig) and ten more VMs with ten different programs (tests/nix/real/programs.nix),
evaluated with a real nixpkgs through the harness of test_real_nixos. The number of NixOS
evaluations is read twice: from the module's passthru, and from Nix's own call counts
(NIX_SHOW_STATS with NIX_COUNT_CALLS: calls of nixos/lib/eval-config.nix, against a host
without vmsilo). Nothing is built; closures are taken over derivations, which hold every
store path a build could put into an image."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .conftest import NIX, NIXPKGS, OFFLINE, needs_real_nixos
from .test_real_nixos import REAL, nix

pytestmark = needs_real_nixos


def attr(attribute: str, host: str) -> Any:
    r = nix(
        "eval", "--json", "--argstr", "nixpkgs", NIXPKGS, "--argstr", "hosts",
        json.dumps([host]), "--file", str(REAL / "eval.nix"), attribute,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-4000:]
    return json.loads(r.stdout)[host]


def nixos_evaluations(host: str, tmp_path: Path) -> int:
    """Calls of eval-config.nix while Nix evaluates the host's toplevel derivation."""
    stats = tmp_path / f"stats-{host}.json"
    env = {**os.environ, "NIX_SHOW_STATS": "1", "NIX_COUNT_CALLS": "1"}
    env["NIX_SHOW_STATS_PATH"] = str(stats)
    r = subprocess.run(
        [
            NIX, *OFFLINE, "eval", "--json", "--argstr", "nixpkgs", NIXPKGS, "--argstr",
            "hosts", json.dumps([host]), "--file", str(REAL / "eval.nix"), "toplevels",
        ],
        capture_output=True, text=True, check=False, timeout=900, env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr[-4000:]
    calls = json.loads(stats.read_text())["functions"]
    [count] = [
        f["count"]
        for f in calls
        if (f.get("file") or "").endswith("nixos/lib/eval-config.nix") and f.get("line") == 11
    ]
    assert isinstance(count, int)
    return count


@pytest.fixture(scope="module")
def programs() -> Any:
    return attr("programs", "programs")


def test_one_base_system_for_every_vm_without_guest_config(programs: Any) -> None:
    systems = programs["systemSets"]
    assert len(systems) == 2  # the base, and vault's own (guestConfig)
    [base] = [vms for key, vms in systems.items() if key.startswith("base-")]
    assert sorted(base) == sorted(set(programs["vms"]) - {"vault"})
    assert systems["vm-vault"] == ["vault"]
    # one image per distinct set; banking and work share theirs; net and vault have none
    assert sorted(map(sorted, programs["imageSets"].values()))[0] == ["banking", "work"]
    assert len(programs["imageSets"]) == 11
    assert programs["vms"]["net"]["programImage"] is None
    assert programs["vms"]["vault"]["programImage"] is None
    roots = {vm["rootImage"] for name, vm in programs["vms"].items() if name != "vault"}
    assert len(roots) == 1


def test_nix_counts_one_evaluation_plus_one_per_guest_config(tmp_path: Path) -> None:
    # a NixOS evaluation calls eval-config.nix more than once (its documentation evaluates
    # the modules again): the host alone says how often
    per_system = nixos_evaluations("none", tmp_path)
    assert per_system > 0
    example = nixos_evaluations("example", tmp_path)
    assert (example % per_system, example // per_system - 1) == (0, 1)
    programs = nixos_evaluations("programs", tmp_path)
    # the base, and vault's own system (its guestConfig)
    assert (programs % per_system, programs // per_system - 1) == (0, 2)


def requisites(drvs: list[str]) -> set[str]:
    """Everything the derivations are built from: their closure as store paths."""
    r = nix("path-info", "--recursive", *drvs)
    assert r.returncode == 0, r.stderr[-4000:]
    return set(r.stdout.split())


def test_no_other_vms_packages_reach_a_guests_store(programs: Any) -> None:
    vms = programs["vms"]
    for name, vm in vms.items():
        disks = [vm["rootImage"]] + ([vm["programImage"]] if vm["programImage"] else [])
        store = requisites(disks)
        assert set(vm["packages"]) <= store, name
        foreign = {p for other, o in vms.items() for p in o["packages"] if p not in vm["packages"]}
        assert not foreign & store, (name, sorted(foreign & store))


def test_the_base_takes_the_image_under_its_store_and_into_the_session(programs: Any) -> None:
    [base] = [s for key, s in programs["session"].items() if key.startswith("base-")]
    # the image is the store overlay's second lower layer, below the writable one
    assert base["store"][0] == "lowerdir=/sysroot/nix/.ro-store:/sysroot/nix/.ro-programs"
    unit = base["programsUnit"]
    assert "Before=sysroot-nix-store.mount" in unit
    assert "DefaultDependencies=false" in unit
    # the profile link is a profile: bin/ on the user manager's PATH, share/ in PAM's
    # XDG_DATA_DIRS, before the system's own
    path = base["pathConf"].split('"')[1].split(":")
    assert path.index("/run/vmsilo/programs/bin") < path.index("/run/current-system/sw/bin")
    [data] = [line for line in base["pamEnvironment"].splitlines() if line.startswith("XDG_DATA")]
    dirs = data.split('"')[1].split(":")
    assert dirs.index("/run/vmsilo/programs/share") < dirs.index("/run/current-system/sw/share")
    # no VM's programs in the base itself; vault's own system has its figlet installed
    assert not {"hello", "figlet", "cowsay", "htop"} & set(base["systemPackages"])
    assert "figlet" in programs["session"]["vm-vault"]["systemPackages"]
