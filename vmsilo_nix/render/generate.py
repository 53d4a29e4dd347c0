"""The package tree `vmsilo generate` writes and the NixOS module installs as
``programs.vmsilo.package``:

    bin/vm-run, vm-start, vm-stop, vm-shell, vm-status      user commands (userScripts)
    libexec/vmsilo/<vm>/launch                               launcher of each VM (vmScripts)
    libexec/vmsilo/<vm>/wayland-proxy                        Wayland proxy of each VM (proxyScripts)
    libexec/vmsilo/<vm>/taps-up, taps-down                   root's TAP set-up and removal
    libexec/vmsilo/balloond, libexec/vmsilo/tray             the host daemons
    share/applications/vmsilo-<vm>-<app>.desktop             host menu entries (desktopFilesPackage)
    share/bash-completion/completions/vm-run (+ links)       completion (bashCompletionScript)
    share/vmsilo/guest/<vm>/network/*                        the guest's systemd-networkd files
    share/vmsilo/manifest.json                               per-VM facts and fingerprints

Everything here is a function of the plan (and of the guest packages' desktop entries), so the
same configuration always gives byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vmsilo_nix.config.artifacts import Artifacts
from vmsilo_nix.config.model import Config
from vmsilo_nix.config.naming import DAEMONS, libexec_name, unit_name
from vmsilo_nix.facts import MANIFEST
from vmsilo_nix.plan.argv import flatten
from vmsilo_nix.plan.host import Plan, VmPlan
from vmsilo_nix.render import completion, desktop
from vmsilo_nix.render.commands import render_commands
from vmsilo_nix.render.launcher import render_daemon, render_launcher, render_proxy, render_taps
from vmsilo_nix.render.tree import EXECUTABLE, File, Link, Tree

COMPLETION = "share/bash-completion/completions/vm-run"


def launcher_path(vm: str) -> str:
    return f"{libexec_name(vm)}/launch"


def proxy_path(vm: str) -> str:
    return f"{libexec_name(vm)}/wayland-proxy"


def fingerprint(v: VmPlan) -> str:
    """A digest of everything whose change needs the VM restarted: what its launcher runs and
    what it hands the guest. Which option produced an argument does not count."""
    facts: dict[str, Any] = {
        "crosvm": flatten(v.crosvm),
        "virtiofsd": [flatten(s.argv) for s in v.virtiofsd],
        "taps": [t.setup_argv(v.network.ip) for t in v.network.taps],
        "guestNetwork": dict(v.network.guest_files),
        "overlay": list(v.overlay.create_argv),
        "sound": flatten(v.sound.argv) if v.sound else None,
        "wayland": None if v.wayland is None else [v.wayland.socket, v.wayland.instance_id],
    }
    canonical = json.dumps(facts, sort_keys=True, separators=(",", ":")).encode()
    return "sha256:" + hashlib.sha256(canonical).hexdigest()


def manifest(
    config: Config, p: Plan, fingerprints: Mapping[str, str], artifacts: Artifacts
) -> dict[str, Any]:
    """Per-VM facts for ``vmsilo status`` and tools: what runs, where, built from what."""
    memory = {vm.name: vm.memory for vm in config.nixos_vms}
    return {
        "version": 1,
        "startOrder": list(p.start_order),
        "vms": {
            name: {
                "fingerprint": fingerprints[name],
                "unit": unit_name(name),
                "cid": v.cid,
                "autoStart": v.auto_start,
                "dependsOn": list(p.depends_on[name]),
                "controlSocket": v.control_socket,
                "launcher": launcher_path(name),
                "waylandProxy": proxy_path(name) if v.wayland else None,
                "taps": [t.name for t in v.network.taps],
                "unbuilt": list(v.unbuilt),
                "memory": memory[name],
                "runtime": v.runtime_dir,
                "artifacts": {
                    "kernel": artifacts.vm(name).kernel,
                    "initrd": artifacts.vm(name).initrd,
                    "rootImage": artifacts.vm(name).root_image,
                    "toplevel": artifacts.vm(name).toplevel,
                    "programImage": artifacts.vm(name).program_image,
                },
            }
            for name, v in p.vms.items()
        },
    }


def _programs(package: str) -> list[str]:
    """Executable names a guest package puts in bin/ (for completion of vm-run)."""
    bindir = Path(package, "bin")
    try:
        return sorted(e.name for e in bindir.iterdir() if not e.name.startswith("."))
    except OSError:
        return []


def build_tree(config: Config, p: Plan, artifacts: Artifacts) -> Tree:
    tree: dict[str, File | Link] = {}
    prints = {name: fingerprint(v) for name, v in p.vms.items()}
    vmsilo = artifacts.program("vmsilo")
    for name, v in p.vms.items():
        tree[launcher_path(name)] = File(render_launcher(v, prints[name]).encode(), EXECUTABLE)
        proxy = render_proxy(v, vmsilo)
        if proxy is not None:
            tree[proxy_path(name)] = File(proxy.encode(), EXECUTABLE)
        for direction, up in (("up", True), ("down", False)):
            taps = render_taps(v, up)
            if taps is not None:
                tree[f"{libexec_name(name)}/taps-{direction}"] = File(taps.encode(), EXECUTABLE)
        for file, text in v.network.guest_files.items():
            tree[f"share/vmsilo/guest/{name}/network/{file}"] = File(text.encode())
    for daemon, argv in zip(DAEMONS, (p.balloond, p.tray), strict=True):
        script = render_daemon(f"vmsilo-{daemon}", argv)
        tree[libexec_name(daemon)] = File(script.encode(), EXECUTABLE)
    for name, text in render_commands(p, prints, artifacts).items():
        tree[f"bin/{name}"] = File(text.encode(), EXECUTABLE)

    vm_run = "vm-run"  # resolved on PATH: the package's bin/ is there once installed
    programs: dict[str, list[str]] = {}
    for vm in config.nixos_vms:
        programs[vm.name] = sorted({x for pkg in vm.guest_programs for x in _programs(pkg)})
        for pkg in vm.guest_programs:
            for file_name, entry in desktop.find_entries(pkg):
                icon = desktop.find_icon(pkg, entry.icon) if entry.icon else None
                host_name, text = desktop.render_host_entry(vm.name, file_name, entry, vm_run, icon)
                tree[f"share/applications/{host_name}"] = File(text.encode())

    tree[COMPLETION] = File(completion.render_bash_completion(list(p.vms), programs).encode())
    for name in completion.COMPLETED_COMMANDS:
        if name != "vm-run":
            tree[f"share/bash-completion/completions/{name}"] = Link("vm-run")
    text = json.dumps(manifest(config, p, prints, artifacts), indent=2, sort_keys=True) + "\n"
    tree[MANIFEST] = File(text.encode())
    return _pin_bash(tree, artifacts)


ENV_BASH = b"#!/usr/bin/env bash\n"


def _pin_bash(tree: dict[str, File | Link], artifacts: Artifacts) -> dict[str, File | Link]:
    """Scripts run bash from its store path when Nix supplies it: a systemd unit's PATH has
    no bash on NixOS, so `env bash` would not find one."""
    if "bash" not in artifacts.packages:
        return tree
    pinned = f"#!{artifacts.program('bash')}\n".encode()
    return {
        path: File(pinned + e.content[len(ENV_BASH) :], e.mode)
        if isinstance(e, File) and e.content.startswith(ENV_BASH)
        else e
        for path, e in tree.items()
    }
