"""The host side of a VM's sound device.

crosvm has no PipeWire backend of its own, so each VM with sound gets one rust-vmm
``vhost-device-sound --socket PATH --backend pipewire`` process, a PipeWire client of the
desktop user's session, which crosvm attaches with ``--vhost-user type=sound,socket=PATH``.

The device may offer the guest an input stream either way; whether the guest can record is
decided on the host, where the guest cannot change it:

- ``capture = true``: the backend is an ordinary PipeWire client and may record like any
  desktop program.
- ``capture = false``: the backend is started through ``pw-container``, which creates a
  PipeWire security context (a new socket whose clients carry fixed properties) and runs the
  backend connected to it (``PIPEWIRE_REMOTE``). The context marks the client as a vmsilo VM
  (``pipewire.sec.engine = "org.vmsilo"``, ``pipewire.sec.app-id`` = the VM name) with
  restricted access (``pipewire.access = "restricted"``). PipeWire does not let a client change
  ``pipewire.*`` properties it already has. The session manager's access rule for
  ``org.vmsilo`` clients, installed by vmsilo's host module, gives them no permission on
  capture nodes (``Audio/Source``) and does not link their input streams, so what the guest
  records is silence. Every client of an ``org.vmsilo`` context is a backend without capture:
  backends with capture are never wrapped.

``pw-container`` (PipeWire's tool for its security-context extension) parses
``-P``/``--properties`` (a JSON object merged over its defaults) with getopt, then hands the
first remaining argument to ``system()``: the program is one shell command string, not an
argv. The plan therefore shell-quotes the backend's argv into one word (prefixed with ``exec``
so that the shell does not stay in between) and passes it after ``--``. ``pw-container`` waits
for that command and exits after it. It reads SIGTERM and SIGINT from a signalfd, so it blocks
them, and the command inherits that mask (seen with Debian 13's PipeWire 1.4): the backend
never sees SIGTERM, so the launcher stops that process group with SIGKILL (the backend holds
nothing to save).
"""

from __future__ import annotations

import shlex

import attrs
import orjson

from vmsilo_nix import facts
from vmsilo_nix.config.artifacts import Artifacts
from vmsilo_nix.config.model import Config
from vmsilo_nix.plan.argv import Arg, OptionPath, arg, kv_list
from vmsilo_nix.plan.layout import Layout

CONTEXT_ENGINE = facts.ENGINE  # pipewire.sec.engine of every backend without capture


@attrs.frozen
class SoundPlan:
    socket: str
    argv: tuple[Arg, ...]  # what the launcher runs (pw-container around the backend, or not)
    backend_argv: tuple[Arg, ...]  # vhost-device-sound itself
    capture: bool
    sources: tuple[OptionPath, ...]


def context_properties(vm_name: str) -> dict[str, str]:
    """The PipeWire security-context properties of a VM's backend without capture; the host's
    session-manager rule keys on ``pipewire.sec.engine``."""
    return {
        "pipewire.access": "restricted",
        "pipewire.sec.engine": CONTEXT_ENGINE,
        "pipewire.sec.app-id": vm_name,
    }


def plan_sound(
    config: Config, vm_index: int, layout: Layout, artifacts: Artifacts
) -> SoundPlan | None:
    """None when the VM has no sound; ``capture`` implies playback."""
    vm = config.nixos_vms[vm_index]
    src: OptionPath = ("nixosVms", vm_index, "sound")
    playback_src, capture_src = (*src, "playback"), (*src, "capture")
    if not vm.sound.playback and not vm.sound.capture:
        return None
    capture = vm.sound.capture
    socket = layout.sound_socket(vm.name)
    backend: tuple[Arg, ...] = (
        arg(artifacts.program("vhost-device-sound"), note="the sound backend of this VM"),
        arg("--socket", socket, note="vhost-user socket in the VM's run-time directory"),
        arg("--backend", "pipewire", sources=(playback_src, capture_src)),
    )
    if capture:
        argv = backend
    else:
        props = orjson.dumps(context_properties(vm.name)).decode()
        command = "exec " + shlex.join(w for a in backend for w in a.words)
        argv = (
            arg(
                artifacts.program("pw-container"),
                source=capture_src,
                note="PipeWire security context that denies capture",
            ),
            arg("-P", props, source=capture_src),
            arg("--", note="end of pw-container's options"),
            arg(command, source=capture_src, note="the backend, as one shell command"),
        )
    return SoundPlan(
        socket=socket,
        argv=argv,
        backend_argv=backend,
        capture=capture,
        sources=(playback_src, capture_src),
    )


def crosvm_args(plan: SoundPlan | None) -> list[Arg]:
    """``--vhost-user type=sound,socket=...``, or nothing without sound."""
    if plan is None:
        return []
    return [
        arg(
            "--vhost-user",
            kv_list([("type", "sound"), ("socket", plan.socket)]),
            sources=plan.sources,
            note="the sound device",
        )
    ]
