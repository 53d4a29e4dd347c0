"""The guest kernel command line: what crosvm adds, what vmsilo adds, then the user's params.

crosvm joins every ``-p`` value with one space after its own ``panic=-1`` and ``console=ttyS0``
(from its default serial port) and allows 2047 bytes in all.
"""

from __future__ import annotations

from collections.abc import Sequence

from vmsilo_nix import facts
from vmsilo_nix.config.model import Vm
from vmsilo_nix.config.values import KERNEL_CMDLINE_MAX
from vmsilo_nix.plan import identity as guest_identity
from vmsilo_nix.plan.argv import Arg, arg

CROSVM_OWN = ("panic=-1", "console=ttyS0")
# A guest system's init is `/nix/store/<32 chars>-nixos-system-<host>-<version>/init`; before
# it is built its length is unknown, so validation assumes this much.
INIT_PATH_ESTIMATE = 128
# A program profile is `/nix/store/<32 chars>-vmsilo-programs-<12 chars>`; the checks do not
# know whether a VM with guestPrograms gets an image (a guestConfig VM does not), so they
# count one.
PROGRAMS_PATH_ESTIMATE = 80


def vmsilo_params(
    vm: Vm, index: int, toplevel: str | None, programs: str | None = None
) -> list[Arg]:
    """The parameters vmsilo gives every guest: its init and the identity it boots with, and
    the profile of its program image when it has one."""
    src = ("nixosVms", index)
    init = f"init={toplevel}/init" if toplevel else None
    params = [
        arg("-p", init, note="the guest system's init")
        if init
        else arg(
            "-p",
            "init=" + facts.UNBUILT.format("toplevel"),
            note="the guest system is not built yet",
        ),
        arg("-p", f"{facts.PARAM_NAME}={vm.name}", source=(*src, "name")),
        arg(
            "-p",
            f"{facts.PARAM_OVERLAY}={vm.root_overlay.type}",
            source=(*src, "rootOverlay", "type"),
        ),
        arg(
            "-p",
            guest_identity.param(vm, index),
            sources=[(*src, "network"), (*src, "sharedHome"), (*src, "sharedDirectories")],
            note="the VM's identity for a shared guest system",
        ),
    ]
    if programs is not None:
        params.append(
            arg(
                "-p",
                guest_identity.programs_param(programs),
                source=(*src, "guestPrograms"),
                note="the profile in the VM's program image",
            )
        )
    if vm.auto_shutdown.enable:
        params.append(
            arg(
                "-p",
                f"{facts.PARAM_AUTOSHUTDOWN}={vm.auto_shutdown.after}",
                sources=[(*src, "autoShutdown", "enable"), (*src, "autoShutdown", "after")],
            )
        )
    return params


def user_params(vm: Vm, index: int) -> list[Arg]:
    return [
        arg("-p", p, source=("nixosVms", index, "kernelParams", j))
        for j, p in enumerate(vm.kernel_params)
    ]


def command_line_length(vm: Vm, args: Sequence[Arg]) -> int:
    """Bytes of the whole command line crosvm will build from a VM's planned arguments, with
    the lengths of unbuilt paths estimated (their placeholders are shorter)."""
    params = [a.words[1] for a in args if len(a.words) == 2 and a.words[0] == "-p"]
    has_programs = False
    for j, word in enumerate(params):
        if word == _UNBUILT_INIT:
            params[j] = "init=" + "x" * INIT_PATH_ESTIMATE
        has_programs = has_programs or word.startswith(_PROGRAMS_PREFIX)
    if vm.guest_programs and not has_programs:
        params.append(guest_identity.programs_param("x" * PROGRAMS_PATH_ESTIMATE))
    return len(" ".join([*CROSVM_OWN, *params]).encode())


_UNBUILT_INIT = "init=" + facts.UNBUILT.format("toplevel")
_PROGRAMS_PREFIX = facts.PARAM_PROGRAMS + "="


__all__ = ["KERNEL_CMDLINE_MAX", "command_line_length", "user_params", "vmsilo_params"]
