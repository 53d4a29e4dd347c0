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


def check_plan(plan: dict[str, Any], vms: set[str]) -> dict[str, list[dict[str, Any]]]:
    """Every VM planned, on real NixOS derivations; the units by kind."""
    assert set(plan["vms"]) == vms
    kinds: dict[str, list[dict[str, Any]]] = {}
    for unit in plan["units"]:
        assert unit["status"] == "planned", (unit["id"], unit["error"])
        assert all(DRV.match(d) for d in unit["drvPaths"].values()), unit["drvPaths"]
        kinds.setdefault(unit["kind"], []).append(unit)
    [base] = kinds["base"]
    assert set(base["drvPaths"]) == {"kernel", "initrd", "rootImage", "toplevel"}
    assert "nixos-system" in base["drvPaths"]["toplevel"]
    assert {u["id"].removeprefix("package-") for u in kinds["package"]} >= {"crosvm", "vmsilo"}
    for name, vm in plan["vms"].items():
        assert vm["status"] == "planned", (name, vm["error"])
        mine = [u for u in plan["units"] if name in u["vms"]]
        assert vm["units"] == [u["id"] for u in mine]
        assert vm["drvPaths"] == {p: d for u in mine for p, d in u["drvPaths"].items()}
    assert set(plan["drvPaths"]) == {d for u in plan["units"] for d in u["drvPaths"].values()}
    return kinds


def example_vms() -> set[str]:
    example = json.loads((ROOT / "examples" / "desktop.json").read_text())
    return {vm["name"] for vm in example["nixosVms"]}


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
    kinds = check_plan(plan, example_vms())
    assert [sorted(u["vms"]) for u in kinds["base"]] == [sorted(example_vms())]
    assert "program-image" not in kinds  # the example's VMs have no guestPrograms
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
    # What the artifacts file would hold is what the module gives the launchers.
    module = json.loads(r.stdout)
    assert {name: vm["outPaths"] for name, vm in plan["vms"].items()} == module["vms"]
    packages = {
        u["id"].removeprefix("package-"): u["outPaths"]["package"] for u in kinds["package"]
    }
    assert packages == module["packages"]


def host_flake(tmp: Path, programs: str = "") -> str:
    """A flake of the example desktop's host (its ``programs.vmsilo`` replaced by ``programs``,
    a line of Nix, when given) on a copy of this checkout and the real nixpkgs."""
    src = tmp / "src"
    shutil.copytree(
        ROOT, src, ignore=shutil.ignore_patterns(".git", ".venv", "__pycache__", "*_cache")
    )
    host = tmp / "host"
    host.mkdir()
    text = HOST_FLAKE.replace("@NIXPKGS@", NIXPKGS).replace("@SRC@", str(src))
    if programs:
        text = text.replace('programs.vmsilo = import "${vmsilo}/examples/desktop.nix";', programs)
    (host / "flake.nix").write_text(text)
    return f"path:{host}#desktop"


def test_dry_run_of_the_example_flake_against_real_nixpkgs(
    tmp_path: Path, run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    needs_vm_named_guest_systems()
    monkeypatch.setenv("PATH", f"{Path(NIX).parent}:{os.environ['PATH']}")
    flake = host_flake(tmp_path)
    result = run("build", "--dry-run", "--json", "--no-eval-jobs", "--flake", flake)
    skip_without_stage_one_fix(result)
    assert result.code == 0, result.err
    check_plan(result.json(), example_vms())


def test_dry_run_of_a_host_with_program_sets_shows_one_base_and_its_images(
    tmp_path: Path, run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example with programs and ten more VMs in ten sets (tests/nix/real/programs.nix):
    one base unit, vault's own system (guestConfig), one image per set, with the derivations
    the module evaluates (guest-sets.nix), read back through tests/nix/real/eval.nix."""
    monkeypatch.setenv("PATH", f"{Path(NIX).parent}:{os.environ['PATH']}")
    flake = host_flake(tmp_path, 'imports = [ "${vmsilo}/tests/nix/real/programs.nix" ];')
    result = run("build", "--dry-run", "--json", "--no-eval-jobs", "--flake", flake)
    assert result.code == 0, result.err
    plan = result.json()
    facts = real_programs()
    kinds = check_plan(plan, set(facts["vms"]))
    [base] = kinds["base"]
    [own] = kinds["guest-system"]
    assert (own["id"], own["vms"]) == ("vm-vault", ["vault"])
    assert sorted(base["vms"]) == sorted(set(facts["vms"]) - {"vault"})
    assert len(kinds["program-image"]) == len(facts["imageSets"]) == 11
    for unit in kinds["program-image"]:
        assert unit["vms"] == facts["imageSets"][unit["id"].removeprefix("programs-")]
    for name, vm in facts["vms"].items():
        assert plan["vms"][name]["drvPaths"]["rootImage"] == vm["rootImage"]
        assert plan["vms"][name]["drvPaths"].get("programImage") == vm["programImage"]


def real_programs() -> Any:
    """tests/nix/real/eval.nix's ``programs`` of the programs host: the module's own sets."""
    real = ROOT / "tests" / "nix" / "real" / "eval.nix"
    argv = [NIX, "--extra-experimental-features", "nix-command", *OFFLINE, "eval", "--json"]
    argv += ["--argstr", "nixpkgs", NIXPKGS, "--argstr", "hosts", '["programs"]']
    r = subprocess.run(
        [*argv, "--file", str(real), "programs"],
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert r.returncode == 0, r.stderr[-4000:]
    return json.loads(r.stdout)["programs"]
