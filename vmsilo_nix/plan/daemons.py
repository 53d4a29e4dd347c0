"""Command lines of the two host daemons: ``vmsilo-balloond`` and ``vmsilo-tray``.

vmsilo defines both command lines. Every flag is the kebab-case of its option and takes its
value as the next word (``--poll-interval 2s``). ``vmsilo-balloond`` learns the VMs from
repeated ``--vm NAME=CONTROL_SOCKET`` flags, in the order of ``nixosVms``: a VM name never
contains ``=``, so the daemon splits at the first one and the socket path may hold anything.
``--crosvm`` names the crosvm the VMs run (a system service's PATH has none). Each VM's
configured memory follows as ``--vm-memory NAME=SIZE`` (``4096m``): the daemon clamps
what a guest reports to it and never trusts the guest to say how big it is.
``extraArgs`` come last, word for word.

``vmsilo-tray`` learns the VMs from repeated ``--vm NAME=COLOUR,vsock:CID:PORT`` flags: the VM's
colour as ``#rrggbb`` (the frame its icons get) and where its guest side listens. The host side
reads nothing else, so the plan is the one place that knows which VMs there are.
"""

from __future__ import annotations

from collections.abc import Mapping

from vmsilo_nix.config.artifacts import Artifacts
from vmsilo_nix.config.model import Config
from vmsilo_nix.config.values import parse_color
from vmsilo_nix.facts import TRAY_VSOCK_PORT
from vmsilo_nix.plan.argv import Arg, OptionPath, arg
from vmsilo_nix.plan.layout import Layout


def balloond_argv(config: Config, layout: Layout, artifacts: Artifacts) -> tuple[Arg, ...]:
    b = config.vmsilo_balloond
    src: OptionPath = ("vmsilo-balloond",)
    out = [
        arg(artifacts.program("vmsilo-balloond"), note="the memory balloon daemon"),
        arg("--log-level", b.log_level, source=(*src, "logLevel")),
        arg("--poll-interval", b.poll_interval, source=(*src, "pollInterval")),
        arg("--min-poll-interval", b.min_poll_interval, source=(*src, "minPollInterval")),
        arg(
            "--critical-host-percent",
            str(b.critical_host_percent),
            source=(*src, "criticalHostPercent"),
        ),
        arg(
            "--critical-guest-available",
            b.critical_guest_available,
            source=(*src, "criticalGuestAvailable"),
        ),
        arg(
            "--guest-available-bias",
            b.guest_available_bias,
            source=(*src, "guestAvailableBias"),
        ),
        arg("--psi-ceiling", str(b.psi_ceiling), source=(*src, "psiCeiling")),
        # The same crosvm the VMs run: a system service's PATH has none.
        arg("--crosvm", artifacts.program("crosvm"), note="the crosvm that runs the VMs"),
    ]
    for i, vm in enumerate(config.nixos_vms):
        out += [
            arg(
                "--vm",
                f"{vm.name}={layout.control_socket(vm.name)}",
                source=("nixosVms", i, "name"),
                note="the VM's crosvm control socket",
            ),
            arg(
                "--vm-memory",
                f"{vm.name}={vm.memory}m",
                sources=(("nixosVms", i, "name"), ("nixosVms", i, "memory")),
                note="the VM's size, which bounds what its guest may report",
            ),
        ]
    out += [arg(a, source=(*src, "extraArgs", j)) for j, a in enumerate(b.extra_args)]
    return tuple(out)


def tray_argv(config: Config, artifacts: Artifacts, cids: Mapping[str, int]) -> tuple[Arg, ...]:
    out = [
        arg(artifacts.program("vmsilo-tray"), note="the tray icon forwarder"),
        arg("--log-level", config.vmsilo_tray.log_level, source=("vmsilo-tray", "logLevel")),
    ]
    for i, vm in enumerate(config.nixos_vms):
        r, g, b = parse_color(vm.color)
        out.append(
            arg(
                "--vm",
                f"{vm.name}=#{r:02x}{g:02x}{b:02x},vsock:{cids[vm.name]}:{TRAY_VSOCK_PORT}",
                sources=(("nixosVms", i, "name"), ("nixosVms", i, "color")),
                note="the VM's colour and its guest's tray port (CID from the name)",
            )
        )
    return tuple(out)
