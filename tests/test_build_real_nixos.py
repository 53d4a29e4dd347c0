"""`vmsilo build --dry-run` of the example desktop against a real nixpkgs, as a file with
`--nixpkgs` and as a flake's host: the derivations it would build are real NixOS guest systems,
and the artifact paths it would write are the ones the module itself gives the launchers.

Needs VMSILO_NIX (a Nix >= 2.18) and VMSILO_NIXPKGS (a nixpkgs tree); nothing is built.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import DRV, NIX, NIXPKGS, OFFLINE, ROOT, needs_real_nixos

pytestmark = needs_real_nixos
ARTIFACTS = ROOT / "tests/nix/file-host-artifacts.nix"

HOST_FLAKE = """\
{
  inputs.nixpkgs.url = "path:@NIXPKGS@";
  inputs.vmsilo.url = "path:@SRC@";
  inputs.vmsilo.inputs.nixpkgs.follows = "nixpkgs";
  outputs = { nixpkgs, vmsilo, ... }: {
    nixosConfigurations.desktop = nixpkgs.lib.nixosSystem {
      system = "x86_64-linux";
      modules = [
        vmsilo.nixosModules.default
        {
          programs.vmsilo = import "${vmsilo}/examples/desktop.nix";
          fileSystems."/" = { device = "/dev/disk/by-label/nixos"; fsType = "ext4"; };
          boot.loader.grub.enable = false;
          users.users.alice.isNormalUser = true;
          system.stateVersion = "26.05";
        }
      ];
    };
  };
}
"""


def needs_vm_named_guest_systems() -> None:
    if "guestSoftwareSets" not in (ROOT / "nix" / "module.nix").read_text():
        pytest.skip(
            "nix/module.nix does not name its guest systems by VM yet (guestSystems keyed by "
            "VM name, guestSoftwareSets): that is issue 10's module change"
        )


def skip_without_stage_one_fix(result: Any) -> None:
    if result.code != 0 and "postMountCommands" in result.err:
        pytest.skip(
            "the guest module still uses the scripted initrd, which real NixOS refuses: "
            "needs issue 10's stage-1 guest fix"
        )


def check_plan(plan: dict[str, Any]) -> None:
    """Every VM of the example planned, with real NixOS derivations."""
    vms = plan["vms"]
    example = json.loads((ROOT / "examples" / "desktop.json").read_text())
    assert set(vms) == {vm["name"] for vm in example["nixosVms"]}
    for name, vm in vms.items():
        assert vm["status"] == "planned", (name, vm["error"])
        assert set(vm["drvPaths"]) == {"kernel", "initrd", "rootImage", "toplevel"}
        assert all(DRV.match(d) for d in vm["drvPaths"].values()), vm["drvPaths"]
        assert "nixos-system" in vm["drvPaths"]["toplevel"]
    assert set(plan["drvPaths"]) == {d for vm in vms.values() for d in vm["drvPaths"].values()}


def test_dry_run_of_the_example_file_with_real_nixpkgs(
    run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--file --nixpkgs`: the example's VMs in a host of the real nixpkgs; the paths the
    artifacts file would hold are the module's own (guest.nix's) for each VM."""
    needs_vm_named_guest_systems()
    monkeypatch.setenv("PATH", f"{Path(NIX).parent}:{os.environ['PATH']}")
    example = str(ROOT / "examples" / "desktop.nix")
    args = ["build", "--dry-run", "--json", "--no-eval-jobs", "--file", example]
    result = run(*args, "--nixpkgs", NIXPKGS)
    skip_without_stage_one_fix(result)
    assert result.code == 0, result.err
    plan = result.json()
    check_plan(plan)
    host = json.dumps({"nixpkgs": NIXPKGS, "module": str(ROOT / "nix/module.nix"), "file": example})
    nix = [NIX, "--extra-experimental-features", "nix-command", *OFFLINE]
    r = subprocess.run(
        [*nix, "eval", "--json", "--impure", "--file", str(ARTIFACTS)],
        env={**os.environ, "VMSILO_FILE_HOST": host},
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    assert {name: vm["outPaths"] for name, vm in plan["vms"].items()} == json.loads(r.stdout)


def test_dry_run_of_the_example_flake_against_real_nixpkgs(
    tmp_path: Path, run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    needs_vm_named_guest_systems()
    src = tmp_path / "src"
    shutil.copytree(
        ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", "*_cache")
    )
    host = tmp_path / "host"
    host.mkdir()
    text = HOST_FLAKE.replace("@NIXPKGS@", NIXPKGS).replace("@SRC@", str(src))
    (host / "flake.nix").write_text(text)
    monkeypatch.setenv("PATH", f"{Path(NIX).parent}:{os.environ['PATH']}")
    flake = f"path:{host}#desktop"
    result = run("build", "--dry-run", "--json", "--no-eval-jobs", "--flake", flake)
    skip_without_stage_one_fix(result)
    assert result.code == 0, result.err
    check_plan(result.json())
