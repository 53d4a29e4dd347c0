"""The tray's packaging evaluated by a real nixpkgs (VMSILO_NIX, VMSILO_NIXPKGS)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from .conftest import OFFLINE, ROOT

REAL = ROOT / "tests/nix/tray-real.nix"


@pytest.fixture
def real() -> dict[str, object]:
    nix, nixpkgs = os.environ.get("VMSILO_NIX"), os.environ.get("VMSILO_NIXPKGS")
    if not (nix and nixpkgs):
        pytest.skip("VMSILO_NIX and VMSILO_NIXPKGS are not set (a real Nix and nixpkgs)")
    result = subprocess.run(
        [
            nix,
            "--extra-experimental-features",
            "nix-command",
            "eval",
            "--impure",
            "--json",
            *OFFLINE,
            "-f",
            str(REAL),
        ],
        env={**os.environ, "VMSILO_ROOT": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def test_the_overlay_provides_vmsilo_tray_with_its_dependencies(real: dict[str, object]) -> None:
    assert real["tray"] == real["engine"]
    deps = real["dependencies"]
    assert isinstance(deps, list) and {"dbus-fast", "pillow"} <= set(deps)


def test_the_guest_starts_its_tray_side_in_the_users_session(real: dict[str, object]) -> None:
    text = real["unitText"]
    assert isinstance(text, str)
    assert (
        f"ExecStart={real['engine']}/bin/vmsilo-tray-guest --log-level debug --listen vsock::5001\n"
        in text
    )
    assert "Requires=dbus.socket" in text and "Restart=always" in text
    assert real["wantedBy"] == ["default.target"]
    assert real["hasDbusSocket"] is True
