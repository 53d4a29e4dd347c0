"""The tray's packaging evaluated by a real nixpkgs (VMSILO_NIX, VMSILO_NIXPKGS)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

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


def test_the_overlay_provides_vmsilo_tray_and_the_engine_its_dependencies(
    real: dict[str, object],
) -> None:
    # its own package (like the balloon daemon's), linking the engine's two commands
    assert real["tray"] == "vmsilo-tray-0.1.0"
    assert real["mainProgram"] == "vmsilo-tray"
    assert real["trayLinksTheEngine"] is True
    assert real["moduleDefault"] == real["overlay"]
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
    assert "-librsvg-" in text  # rsvg-convert on the service's PATH
    assert real["wantedBy"] == ["default.target"]
    assert real["hasDbusSocket"] is True


def test_the_host_unit_runs_the_generated_tray_script(
    real: dict[str, object], tmp_path: Path
) -> None:
    text = real["hostUnit"]
    assert isinstance(text, str)
    lines = text.splitlines()
    (exec_start,) = [line for line in lines if line.startswith("ExecStart=")]
    assert exec_start.endswith("-vmsilo-tree/libexec/vmsilo/tray")
    assert "Restart=on-failure" in lines and "PartOf=graphical-session.target" in lines
    # systemd accepts the unit whole (with an ExecStart that exists here)
    unit = tmp_path / "vmsilo-tray.service"
    unit.write_text(
        "\n".join(
            "ExecStart=/bin/true" if line.startswith("ExecStart=") else line for line in lines
        )
        + "\n"
    )
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    done = subprocess.run(
        [analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0 and "vmsilo-tray" not in done.stderr, done.stderr
