"""The crosvm command line of one VM.

Layout: ``crosvm [global flags] run [run flags] KERNEL``. Flags that crosvm refuses to see twice
(``--cpus``, ``--mem``, ``--vsock``, ``--socket``, ...) are emitted once; repeatable ones
(``--block``, ``-p``, ``--net``, ``--vhost-user``, ``--vfio``) once per item. The parts that
belong to other planners (network, shares, overlay, sound) come in as ready ``Arg`` lists.
"""

from __future__ import annotations

from collections.abc import Sequence

from vmsilo_nix import facts
from vmsilo_nix.config.artifacts import Artifacts
from vmsilo_nix.config.model import Config, Freeform
from vmsilo_nix.config.values import normalise_bdf, sysfs_path
from vmsilo_nix.facts import UNBUILT
from vmsilo_nix.plan.argv import Arg, KvValue, OptionPath, arg, kv_list
from vmsilo_nix.plan.kernel import user_params, vmsilo_params
from vmsilo_nix.plan.layout import Layout
from vmsilo_nix.plan.wayland import WaylandPlan

# The default GPU serves Wayland forwarding only: cross-domain contexts carry the guest's
# Wayland traffic to the host socket given with --wayland-sock.
DEFAULT_GPU: tuple[tuple[str, KvValue], ...] = (("context-types", "cross-domain"),)
SCHEDULING = {
    "full": ("--core-scheduling=true",),
    "vm": ("--per-vm-core-scheduling",),
    "off": ("--core-scheduling=false",),
}


def _freeform(entry: Freeform, first: str) -> list[tuple[str, KvValue | None]]:
    """An attribute set of crosvm keys, ``first`` (e.g. path, type) leading, order kept."""
    head = [(first, entry[first])] if first in entry else []
    return head + [(k, v) for k, v in entry.items() if k != first]


def _or_unbuilt(value: str | None, what: str, unbuilt: list[str]) -> str:
    if value is None:
        unbuilt.append(what)
        return UNBUILT.format(what)
    return value


def crosvm_args(
    config: Config,
    index: int,
    *,
    cid: int,
    layout: Layout,
    artifacts: Artifacts,
    overlay: Sequence[Arg],
    sound: Sequence[Arg],
    shares: Sequence[Arg],
    network: Sequence[Arg],
    wayland: WaylandPlan | None,
    unbuilt: list[str],
) -> list[Arg]:
    """Every argument, in order, each with the options that decided it.

    ``unbuilt`` collects the artifacts Nix did not supply; their places hold a marked
    placeholder, never a guessed path.
    """
    vm = config.nixos_vms[index]
    src: OptionPath = ("nixosVms", index)
    built = artifacts.vm(vm.name)
    out = [arg(artifacts.program("crosvm"), note="crosvm")]

    level_src = (*src, "crosvm", "logLevel") if vm.crosvm.log_level else ("crosvm", "logLevel")
    out.append(arg("--log-level", vm.crosvm.log_level or config.crosvm.log_level, source=level_src))
    out += [
        arg(a, source=("crosvm", "extraArgs", j)) for j, a in enumerate(config.crosvm.extra_args)
    ]
    out += [
        arg(a, source=(*src, "crosvm", "extraArgs", j)) for j, a in enumerate(vm.crosvm.extra_args)
    ]
    out.append(arg("run", note="the run subcommand"))

    out.append(arg("--cpus", str(vm.cpus), source=(*src, "cpus")))
    out.append(arg("--mem", str(vm.memory), source=(*src, "memory")))

    if vm.root_disk is not None:
        out.append(
            arg("--block", kv_list(_freeform(vm.root_disk, "path")), source=(*src, "rootDisk"))
        )
    else:
        root = _or_unbuilt(built.root_image, "rootImage", unbuilt)
        out.append(
            arg(
                "--block",
                kv_list([("path", root), ("ro", vm.root_disk_readonly)]),
                source=(*src, "rootDiskReadonly"),
                note="the guest system's root image",
            )
        )
    out += overlay
    for j, disk in enumerate(vm.additional_disks):
        out.append(
            arg("--block", kv_list(_freeform(disk, "path")), source=(*src, "additionalDisks", j))
        )
    # Last, so that no other disk's letter depends on it; the guest finds it by its serial.
    if built.program_image is not None:
        out.append(
            arg(
                "--block",
                kv_list(
                    [("path", built.program_image), ("ro", True), ("id", facts.PROGRAMS_DISK_ID)]
                ),
                source=(*src, "guestPrograms"),
                note="the VM's program image",
            )
        )

    initrd_src = [(*src, "initramfs")] if vm.initramfs else []
    initrd = vm.initramfs or _or_unbuilt(built.initrd, "initrd", unbuilt)
    out.append(arg("--initrd", initrd, sources=initrd_src, note="the guest system's initrd"))
    if built.toplevel is None:
        unbuilt.append("toplevel")
    out += vmsilo_params(vm, index, built.toplevel, built.programs)
    out += user_params(vm, index)

    if vm.gpu is not False:
        gpu = DEFAULT_GPU if vm.gpu is True else tuple(vm.gpu.items())
        out.append(arg("--gpu", kv_list(gpu), source=(*src, "gpu")))
    if wayland is not None:
        out.append(arg("--wayland-sock", wayland.socket, sources=wayland.sources))
    out += sound
    out += shares
    for j, dev in enumerate(vm.vhost_user):
        out.append(
            arg("--vhost-user", kv_list(_freeform(dev, "type")), source=(*src, "vhostUser", j))
        )
    for j, dev in enumerate(vm.pci_devices):
        path = sysfs_path(normalise_bdf(str(dev["path"])))
        rest = kv_list((k, v) for k, v in dev.items() if k != "path")
        out.append(
            arg("--vfio", f"{path},{rest}" if rest else path, source=(*src, "pciDevices", j))
        )
    out += network

    out.append(arg("--vsock", str(cid), source=(*src, "name"), note="derived from the VM name"))
    out.append(
        arg(
            "--socket",
            layout.control_socket(vm.name),
            note="control socket for vm-stop and vmsilo-balloond",
        )
    )
    out.append(arg(*SCHEDULING[config.scheduler_isolation], source=("schedulerIsolation",)))
    out += [
        arg(a, source=("crosvm", "extraRunArgs", j))
        for j, a in enumerate(config.crosvm.extra_run_args)
    ]
    out += [
        arg(a, source=(*src, "crosvm", "extraRunArgs", j))
        for j, a in enumerate(vm.crosvm.extra_run_args)
    ]

    kernel_src = [(*src, "kernel")] if vm.kernel else []
    kernel = vm.kernel or _or_unbuilt(built.kernel, "kernel", unbuilt)
    out.append(arg(kernel, sources=kernel_src, note="the guest system's kernel"))
    return out
