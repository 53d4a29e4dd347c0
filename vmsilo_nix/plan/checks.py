"""Rules that need planned values: they run on the plan, once the configuration's own rules pass.

Checking the words vmsilo will really pass, rather than a list of them kept beside the planner,
means a flag the planner starts passing is covered without anyone remembering to list it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from vmsilo_nix.config import crosvm_grammar as grammar
from vmsilo_nix.config.model import Config, Vm
from vmsilo_nix.config.paths import Segment, format_path
from vmsilo_nix.config.values import KERNEL_CMDLINE_MAX
from vmsilo_nix.errors import Problem
from vmsilo_nix.plan.argv import Arg
from vmsilo_nix.plan.host import Plan, plan
from vmsilo_nix.plan.kernel import command_line_length

Finding = tuple[tuple[Segment, ...], str]
#: Flags crosvm takes at most once per run; a second one is refused ("duplicate values").
_ONCE = grammar.RUN_SINGLE | grammar.RUN_AT_MOST_ONCE | grammar.VALUE_TAKING_BOOL


def findings(config: Config, planned: Plan | None = None) -> list[Problem]:
    """Every problem the plan of ``config`` shows; ``config`` must have passed the rules."""
    planned = planned or plan(config)
    names = [vm.name for vm in config.nixos_vms]
    found: list[Finding] = []
    for i, vm in enumerate(config.nixos_vms):
        found += _command_line(vm, i, planned.vms[vm.name].crosvm)
        found += _repeated_flags(planned.vms[vm.name].crosvm)
    # A global extra argument is planned into every VM: report it once.
    unique = dict.fromkeys(found)
    return [Problem(format_path(path, names), message, path) for path, message in unique]


def warnings(config: Config, planned: Plan) -> list[Problem]:
    """What works, but not as the configuration seems to ask (``planned`` is its plan)."""
    names = [vm.name for vm in config.nixos_vms]
    found = [f for i, vm in enumerate(config.nixos_vms) for f in _session_start(vm, i, planned)]
    return [Problem(format_path(path, names), message, path, "warning") for path, message in found]


def _session_start(vm: Vm, i: int, planned: Plan) -> Iterator[Finding]:
    """An autoStart VM whose devices belong to the VM user's session cannot start at boot,
    before anyone logs in: it starts with that session instead."""
    needs = planned.vms[vm.name].needs
    if not vm.auto_start or needs == "boot":
        return
    if needs == "graphical-session":
        why = "its GPU takes the Wayland socket of the VM user's graphical session"
        when, off = "that session starts", "gpu = false and sound.playback = false"
    else:
        why = "its sound backend is a client of the VM user's PipeWire"
        when, off = "the user's session starts (login, or lingering)", "sound.playback = false"
    yield (
        ("nixosVms", i, "autoStart"),
        f"{why}, so it starts when {when}, not at boot; for a VM that starts at boot, set {off}",
    )


def _command_line(vm: Vm, i: int, argv: Sequence[Arg]) -> Iterator[Finding]:
    """The whole kernel command line crosvm builds (its own parameters, vmsilo's, then the
    user's kernelParams) fits crosvm's 2047 bytes."""
    used = command_line_length(vm, argv)
    if used > KERNEL_CMDLINE_MAX:
        yield (
            ("nixosVms", i, "kernelParams"),
            f"make the kernel command line {used} bytes long with the parameters crosvm and "
            f"vmsilo add; crosvm allows {KERNEL_CMDLINE_MAX}",
        )


def _is_extra(a: Arg) -> bool:
    return any(s and s[-2:-1] in (("extraArgs",), ("extraRunArgs",)) for s in a.sources)


def _repeated_flags(argv: tuple[Arg, ...]) -> Iterator[Finding]:
    """An extra crosvm argument does not repeat a flag that vmsilo passes once (`--cpus`,
    `--mem`, `--initrd`, `--vsock`, `--socket`, `--core-scheduling`, a second `--gpu`, ...)."""
    own: dict[str, Arg] = {}
    for a in argv:
        flag = grammar.canonical_flag(a.words[0]) if a.words else None
        if flag is None or flag not in _ONCE:
            continue
        if not _is_extra(a):
            own.setdefault(flag, a)
        elif flag in own:
            why = "crosvm allows one GPU" if flag == "--gpu" else "crosvm refuses it twice"
            yield a.sources[0], f"vmsilo already passes {flag} (from {_origin(own[flag])}); {why}"


def _origin(a: Arg) -> str:
    if a.sources:
        path = a.sources[0]
        rest = path[2:] if path[:1] == ("nixosVms",) else path
        return ".".join(str(s) for s in rest)
    return a.note or "vmsilo"
