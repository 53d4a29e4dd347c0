"""The sound backend per VM: vhost-device-sound, wrapped in a PipeWire security context when
the VM may not record."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from vmsilo_nix import structure
from vmsilo_nix.config.artifacts import Artifacts
from vmsilo_nix.plan.argv import flatten
from vmsilo_nix.plan.layout import Layout
from vmsilo_nix.plan.sound import (
    CONTEXT_ENGINE,
    SoundPlan,
    context_properties,
    crosvm_args,
    plan_sound,
)

from .conftest import minimal

LAYOUT = Layout(run_dir="/run/vmsilo", state_dir="/var/lib/vmsilo")
SOUND = "/nix/store/cccc-vhost-device-sound/bin/vhost-device-sound"
PW = "/nix/store/dddd-pipewire/bin/pw-container"
ARTIFACTS = Artifacts(
    packages={
        "vhost-device-sound": "/nix/store/cccc-vhost-device-sound",
        "pw-container": "/nix/store/dddd-pipewire",
    }
)
SRC = ("nixosVms", 0, "sound")
BOTH = ((*SRC, "playback"), (*SRC, "capture"))


def plan(layout: Layout = LAYOUT, artifacts: Artifacts = ARTIFACTS, **vm: Any) -> SoundPlan | None:
    return plan_sound(structure(minimal(**vm)), 0, layout, artifacts)


def test_default_is_playback_only_inside_a_security_context() -> None:
    p = plan()
    assert p is not None
    assert p.capture is False
    assert p.socket == "/run/vmsilo/a/sound.sock"
    assert p.sources == BOTH
    backend = [SOUND, "--socket", "/run/vmsilo/a/sound.sock", "--backend", "pipewire"]
    assert flatten(p.backend_argv) == backend
    assert flatten(p.argv) == [
        PW,
        "-P",
        '{"pipewire.access":"restricted","pipewire.sec.engine":"org.vmsilo",'
        '"pipewire.sec.app-id":"a"}',
        "--",
        f"exec {SOUND} --socket /run/vmsilo/a/sound.sock --backend pipewire",
    ]
    assert [a.sources for a in p.argv] == [((*SRC, "capture"),)] * 2 + [()] + [((*SRC, "capture"),)]
    assert flatten(crosvm_args(p)) == ["--vhost-user", "type=sound,socket=/run/vmsilo/a/sound.sock"]
    assert crosvm_args(p)[0].sources == BOTH


def test_context_properties_mark_the_vm() -> None:
    assert context_properties("banking") == {
        "pipewire.access": "restricted",
        "pipewire.sec.engine": CONTEXT_ENGINE,
        "pipewire.sec.app-id": "banking",
    }
    assert CONTEXT_ENGINE == "org.vmsilo"


def test_capture_runs_the_backend_directly() -> None:
    p = plan(sound={"capture": True})
    assert p is not None
    assert p.capture is True
    assert p.argv == p.backend_argv
    assert flatten(p.argv) == [
        SOUND,
        "--socket",
        "/run/vmsilo/a/sound.sock",
        "--backend",
        "pipewire",
    ]
    assert p.argv[2].sources == BOTH


def test_capture_implies_playback() -> None:
    p = plan(sound={"playback": False, "capture": True})
    assert p is not None
    assert p.capture is True
    assert flatten(crosvm_args(p)) == ["--vhost-user", "type=sound,socket=/run/vmsilo/a/sound.sock"]


def test_no_sound_at_all() -> None:
    assert plan(sound={"playback": False}) is None
    assert crosvm_args(None) == []


def test_programs_from_path_without_packages() -> None:
    p = plan(artifacts=Artifacts())
    assert p is not None
    assert flatten(p.argv)[0] == "pw-container"
    assert flatten(p.argv)[-1].startswith("exec vhost-device-sound --socket ")


def test_awkward_socket_path_survives_the_shell_of_pw_container(tmp_path: Path) -> None:
    """pw-container hands its command to system(), i.e. ``sh -c``: run the planned command
    string the same way with a recording stand-in and compare the argv it received."""
    odd = str(tmp_path / "run dir, \"q\" 'r' $HOME `echo x` ; *")
    pkg = tmp_path / "pkg"
    (pkg / "bin").mkdir(parents=True)
    record = tmp_path / "argv.json"
    stand_in = pkg / "bin" / "vhost-device-sound"
    stand_in.write_text(
        "#!/usr/bin/env python3\nimport json, sys\n"
        f"json.dump(sys.argv[1:], open({str(record)!r}, 'w'))\n"
    )
    stand_in.chmod(0o755)
    p = plan(
        layout=Layout(run_dir=odd, state_dir="/s"),
        artifacts=Artifacts(packages={"vhost-device-sound": str(pkg)}),
    )
    assert p is not None
    assert p.socket == f"{odd}/a/sound.sock"
    command = flatten(p.argv)[-1]
    subprocess.run(["/bin/sh", "-c", command], check=True, env={**os.environ, "HOME": "/nope"})
    assert json.loads(record.read_text()) == ["--socket", p.socket, "--backend", "pipewire"]
    # crosvm's key=value form quotes the comma inside the value.
    assert flatten(crosvm_args(p))[1] == 'type=sound,socket="' + p.socket.replace('"', '\\"') + '"'
