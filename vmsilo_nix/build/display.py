"""Build progress for people: a live rich display on a terminal, plain lines when piped.

Both read the same ``Progress`` (folded from Nix's log by ``progress.py``); the live one
redraws it a few times a second, the plain one prints one line per event.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from vmsilo_nix.build.planner import KIND_WORDS, KINDS, BuildPlan, Kind
from vmsilo_nix.build.progress import Event, Progress, drv_name

OnEvent = Callable[[Event | None, Progress], None]


def _units(plan: BuildPlan, drv: str) -> str:
    """``" (program image of banking, work)"``: which units a derivation is part of."""
    units = plan.needed_by(drv)
    if not units:
        return ""
    return f" ({'; '.join(u.describe() for u in units)})"


def _where(machine: str) -> str:
    return f" on {machine}" if machine else ""


def summary(progress: Progress) -> str:
    """``built 3/10, 2 running, 1 failed; fetched 4/4``."""
    b, s = progress.builds, progress.substitutions
    parts = [f"built {b.done}/{b.expected}"]
    if b.running:
        parts.append(f"{b.running} running")
    if b.failed:
        parts.append(f"{b.failed} failed")
    text = ", ".join(parts)
    if s.expected:
        text += f"; fetched {s.done}/{s.expected}"
    if progress.remote:
        text += f"; remote builders: {', '.join(sorted(progress.remote))}"
    return text


def _plural(kind: Kind, n: int) -> str:
    words = KIND_WORDS[kind]
    return f"{n} {words}{'' if n == 1 else 's'}"


def plan_line(plan: BuildPlan) -> str:
    """``4 VMs: 1 base system, 2 program images, 2 host packages``: what this build makes."""
    kinds = ", ".join(_plural(k, n) for k in KINDS if (n := plan.count(k)))
    vms = len(plan.vms)
    return f"{vms} VM{'' if vms == 1 else 's'}: {kinds or 'nothing to build'}"


def unit_state(progress: Progress, plan: BuildPlan, unit_id: str) -> str:
    """``failed``, ``building``, ``built`` (each of its derivations built now) or ``waiting``
    (still to build, or already in the store)."""
    drvs = plan.units[unit_id].drv_paths
    running = {b.drv for b in progress.running.values()}
    if any(d in progress.failed for d in drvs):
        return "failed"
    if any(d in running for d in drvs):
        return "building"
    if drvs and all(d in progress.tails and d not in running for d in drvs):
        return "built"
    return "waiting"


#: Short words for the live display's line of unit states.
_SHORT: dict[Kind, tuple[str, str]] = {
    "base": ("base", "bases"),
    "guest-system": ("own system", "own systems"),
    "program-image": ("image", "images"),
    "package": ("package", "packages"),
}


def units_line(progress: Progress, plan: BuildPlan) -> str:
    """``base built · images 1 built, 1 building · packages 2 waiting``."""
    parts = []
    for kind in KINDS:
        states = [unit_state(progress, plan, i) for i, u in plan.units.items() if u.kind == kind]
        one, many = _SHORT[kind]
        if len(states) == 1:
            parts.append(f"{one} {states[0]}")
        elif states:
            counts = ", ".join(
                f"{n} {state}"
                for state in ("built", "building", "failed", "waiting")
                if (n := states.count(state))
            )
            parts.append(f"{many} {counts}")
    return " · ".join(parts)


def render(progress: Progress, plan: BuildPlan) -> RenderableType:
    """The live display: one summary line, the units' states, then each running build with its
    last log line."""
    table = Table.grid(padding=(0, 1))
    table.add_column(no_wrap=True)
    table.add_column(no_wrap=True, overflow="ellipsis")
    for build in list(progress.running.values()):
        label = Text.assemble(
            (drv_name(build.drv), "bold"), _units(plan, build.drv), _where(build.machine)
        )
        table.add_row(label, Text(build.last_line, style="dim"))
    for path in list(progress.substituting.values()):
        table.add_row(Text.assemble("fetching ", (drv_name(path), "bold")), Text(""))
    units = [Text(units_line(progress, plan), style="dim")] if plan.units else []
    return Group(Spinner("dots", text=Text(summary(progress))), *units, table)


def plain_line(event: Event, plan: BuildPlan) -> Text | None:
    match event.kind:
        case "build":
            return Text(
                f"building {drv_name(event.text)}{_units(plan, event.text)}{_where(event.machine)}"
            )
        case "finished":
            return Text(
                f"finished {drv_name(event.text)}{_units(plan, event.text)}{_where(event.machine)}"
            )
        case "substitute":
            return Text(f"fetching {drv_name(event.text)}")
        case "message":
            return Text(event.text)
    return None


@contextlib.contextmanager
def show(console: Console, plan: BuildPlan, *, live: bool | None = None) -> Iterator[OnEvent]:
    """Yields the callback the build calls for every log line it folded."""
    if live is None:
        live = console.is_terminal
    if not live:
        console.print(Text(f"building for {plan_line(plan)}"))

        def plain(event: Event | None, progress: Progress) -> None:
            if event is not None and (line := plain_line(event, plan)) is not None:
                console.print(line)

        yield plain
        return
    state: list[Progress] = [Progress()]

    def current() -> RenderableType:
        return render(state[0], plan)

    with Live(get_renderable=current, console=console, refresh_per_second=8, transient=True):

        def update(event: Event | None, progress: Progress) -> None:
            state[0] = progress
            if event is not None and event.kind == "message" and event.text:
                console.print(Text(event.text))

        yield update
