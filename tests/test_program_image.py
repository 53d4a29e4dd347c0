"""nix/program-image.nix built for real: a software set's image holds the closure of its
packages minus the base's closure, and nothing of another set.

The packages are /bin/sh derivations whose outputs name their dependencies, so Nix records
real references; the machine's Nix builds them and mksquashfs packs the image, which
``unsquashfs -l`` reads back."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from vmsilo_nix.nixeval import nix

from .conftest import ROOT, needs_nix
from .test_module import build_outputs

IMAGES = ROOT / "tests/nix/program-images.nix"
pytestmark = [
    needs_nix,
    pytest.mark.skipif(
        shutil.which("unsquashfs") is None, reason="squashfs-tools is not installed"
    ),
]


def contents(image: str) -> set[str]:
    """The store paths at the image's root."""
    listing = subprocess.run(
        ["unsquashfs", "-d", "", "-lc", image], capture_output=True, text=True, check=True
    ).stdout
    return {"/nix/store/" + line.split("/")[1] for line in listing.split() if "/" in line}


@pytest.fixture(scope="module")
def built() -> dict[str, str]:
    """Every attribute of program-images.nix, by name, as its built output path."""
    os.environ.setdefault("VMSILO_ROOT", str(ROOT))
    if not os.environ.get("VMSILO_NIXPKGS_LIB"):
        pytest.skip("VMSILO_NIXPKGS_LIB is not set (the nixpkgs lib directory)")
    raw = nix.eval_json_file(str(IMAGES))
    assert isinstance(raw, dict)
    drvs = {name: str(d["drvPath"]) for name, d in raw.items() if isinstance(d, dict)}
    outs = build_outputs(list(drvs.values()))
    return {name: outs[drv]["out"] for name, drv in drvs.items()}


def test_an_image_is_its_closure_minus_the_base(built: dict[str, str]) -> None:
    # firefox needs libfx and gtk, gtk needs libc; the base holds gtk and libc
    assert contents(built["web"]) == {built["webProfile"], built["firefox"], built["libfx"]}
    assert contents(built["vault"]) == {
        built["vaultProfile"],
        built["keepassxc"],
        built["keyring"],
    }


def test_no_other_sets_packages_reach_an_image(built: dict[str, str]) -> None:
    others = {"web": ("keepassxc", "keyring"), "vault": ("firefox", "libfx")}
    for image, foreign in others.items():
        assert not {built[name] for name in foreign} & contents(built[image]), image


def test_the_profile_is_the_packages_merged(built: dict[str, str]) -> None:
    profile = Path(built["webProfile"])
    assert (profile / "bin/firefox").resolve() == Path(built["firefox"], "bin/firefox")
    assert (profile / "share/applications/firefox.desktop").is_file()
