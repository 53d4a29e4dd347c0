"""Everything a host needs to run its VMs, decided from the validated config alone (no I/O).

``plan(config, artifacts, layout)`` gathers the planners: crosvm, virtiofsd, networking,
overlay, sound, the daemons, vsock CIDs and the start order. ``to_json`` gives the shape
``vmsilo plan --json`` prints and keeps stable.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from vmsilo_nix.config.artifacts import Artifacts
from vmsilo_nix.config.model import Config
from vmsilo_nix.config.paths import OptionPaths
from vmsilo_nix.config.values import normalise_bdf, sysfs_path
from vmsilo_nix.plan import cid as cids
from vmsilo_nix.plan import crosvm, daemons, network, overlay, sound, virtiofs
from vmsilo_nix.plan.argv import Arg, flatten
from vmsilo_nix.plan.layout import Layout
from vmsilo_nix.plan.order import start_order
from vmsilo_nix.plan.wayland import WaylandPlan, plan_wayland


@attrs.frozen(kw_only=True)
class VmPlan:
    name: str
    index: int
    cid: int
    runtime_dir: str  # the VM's run-time directory: its sockets live here
    control_socket: str
    crosvm: tuple[Arg, ...]
    virtiofsd: tuple[virtiofs.VirtiofsPlan, ...]
    network: network.VmNetwork
    overlay: overlay.OverlayPlan
    sound: sound.SoundPlan | None
    wayland: WaylandPlan | None
    auto_start: bool
    unbuilt: tuple[str, ...]  # artifacts Nix has not supplied: kernel, initrd, rootImage, ...

    @property
    def needs(self) -> str:
        """What the VM's devices need of the VM user, and so when an autoStart VM can start:
        ``"graphical-session"`` (its Wayland socket comes from the user's graphical session),
        ``"session"`` (its sound backend is a client of the user's PipeWire, which runs in the
        user's systemd manager) or ``"boot"`` (nothing of the user's). The host module's
        ``sessionTarget`` is the same rule in Nix; tests compare the two."""
        if self.wayland is not None:
            return "graphical-session"
        if self.sound is not None:
            return "session"
        return "boot"


@attrs.frozen(kw_only=True)
class Plan:
    vms: Mapping[str, VmPlan]  # in configuration order
    start_order: tuple[str, ...]
    nat: network.NatPlan | None
    isolated_pci_devices: tuple[str, ...]  # normalised BDFs bound to vfio-pci at boot
    depends_on: Mapping[str, tuple[str, ...]]
    balloond: tuple[Arg, ...]
    tray: tuple[Arg, ...]

    @property
    def vm_names(self) -> list[str | None]:
        return list(self.vms)


def plan_vm(config: Config, index: int, cid: int, layout: Layout, artifacts: Artifacts) -> VmPlan:
    vm = config.nixos_vms[index]
    shares = virtiofs.plan_virtiofs(config, index, layout, artifacts)
    net = network.plan_vm_network(config, index, artifacts)
    disk = overlay.plan_overlay(config, index, layout, artifacts)
    snd = sound.plan_sound(config, index, layout, artifacts)
    way = plan_wayland(vm, index, layout)
    unbuilt: list[str] = []
    args = crosvm.crosvm_args(
        config,
        index,
        cid=cid,
        layout=layout,
        artifacts=artifacts,
        overlay=overlay.crosvm_args(disk),
        sound=sound.crosvm_args(snd),
        shares=virtiofs.crosvm_args(shares),
        network=net.crosvm,
        wayland=way,
        unbuilt=unbuilt,
    )
    return VmPlan(
        name=vm.name,
        index=index,
        cid=cid,
        runtime_dir=layout.runtime(vm.name),
        control_socket=layout.control_socket(vm.name),
        crosvm=tuple(args),
        virtiofsd=shares,
        network=net,
        overlay=disk,
        sound=snd,
        wayland=way,
        auto_start=vm.auto_start,
        unbuilt=tuple(sorted(set(unbuilt))),
    )


def plan(config: Config, artifacts: Artifacts | None = None, layout: Layout | None = None) -> Plan:
    """The plan of every VM; ``config`` must have passed validation."""
    artifacts = artifacts or Artifacts()
    layout = layout or Layout()
    assigned = cids.assign(vm.name for vm in config.nixos_vms)
    vms = {
        vm.name: plan_vm(config, i, assigned[vm.name], layout, artifacts)
        for i, vm in enumerate(config.nixos_vms)
    }
    return Plan(
        vms=vms,
        start_order=tuple(start_order(config)),
        nat=network.plan_nat(config, [v.network.taps for v in vms.values()]),
        isolated_pci_devices=tuple(normalise_bdf(b) for b in config.isolated_pci_devices),
        depends_on={vm.name: vm.depends_on for vm in config.nixos_vms},
        balloond=daemons.balloond_argv(config, layout, artifacts),
        tray=daemons.tray_argv(config, artifacts, assigned),
    )


# --- JSON ------------------------------------------------------------------------------------


def _args_json(args: Sequence[Arg], paths: OptionPaths) -> dict[str, Any]:
    # A plain loop, and words kept as the tuples they are (JSON writes them as arrays): a
    # 1000-VM plan has some 65,000 of these entries, and in Python 3.11 every comprehension
    # is a function call of its own.
    entries = []
    for a in args:
        sources = a.sources
        if not sources:
            options = []
        elif len(sources) == 1:
            options = [paths(sources[0])]
        else:
            options = [paths(s) for s in sources]
        entries.append({"words": a.words, "options": options, "note": a.note})
    return {"argv": flatten(args), "args": entries}


def vm_json(p: VmPlan, paths: OptionPaths) -> dict[str, Any]:
    """One VM's part of ``to_json``; ``paths`` renders option paths (``OptionPaths(p.vm_names)``
    of the whole plan)."""
    return {
        "crosvm": _args_json(p.crosvm, paths),
        "virtiofsd": [
            {
                "tag": s.tag,
                "socket": s.socket,
                "sharedDir": s.shared_dir,
                "readonly": s.readonly,
                **_args_json(s.argv, paths),
            }
            for s in p.virtiofsd
        ],
        "taps": [
            {
                "name": t.name,
                "mac": t.mac,
                "interface": t.interface,
                "user": t.user,
                "hostAddress": t.host_address,
                "bridge": t.bridge,
                "setup": t.setup_argv(p.network.ip),
                "teardown": t.teardown_argv(p.network.ip),
            }
            for t in p.network.taps
        ],
        "guestNetwork": dict(p.network.guest_files),
        "cid": p.cid,
        "controlSocket": p.control_socket,
        "overlay": {
            "type": p.overlay.type,
            "path": p.overlay.path,
            "size": p.overlay.size,
            "create": list(p.overlay.create_argv),
        },
        "sound": None
        if p.sound is None
        else {
            "socket": p.sound.socket,
            "capture": p.sound.capture,
            **_args_json(p.sound.argv, paths),
        },
        "wayland": None
        if p.wayland is None
        else {
            "socket": p.wayland.socket,
            "securityContext": {
                "sandboxEngine": p.wayland.sandbox_engine,
                "appId": p.wayland.app_id,
                "instanceId": p.wayland.instance_id,
            },
            "color": p.wayland.color,
        },
        "autoStart": p.auto_start,
        "needs": p.needs,
        "unbuilt": list(p.unbuilt),
    }


def needed_by(p: Plan, wanted: Sequence[str]) -> set[str]:
    """The wanted VMs and everything they depend on, transitively: what starting them starts."""
    seen: set[str] = set()
    todo = list(wanted)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += p.depends_on.get(name, ())
    return seen


def to_json(p: Plan, only: Sequence[str] | None = None) -> dict[str, Any]:
    paths = OptionPaths(p.vm_names)
    wanted = [n for n in p.vms if only is None or n in only]
    started = needed_by(p, wanted)
    nat = p.nat
    return {
        "vms": {n: vm_json(p.vms[n], paths) for n in wanted},
        "startOrder": [n for n in p.start_order if n in started],
        "nat": None
        if nat is None
        else {
            "externalInterface": nat.external_interface,
            "internalInterfaces": list(nat.internal_interfaces),
            "networks": list(nat.networks),
        },
        "isolatedPciDevices": [{"bdf": b, "sysfs": sysfs_path(b)} for b in p.isolated_pci_devices],
        "balloond": _args_json(p.balloond, paths),
        "tray": _args_json(p.tray, paths),
    }
