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

from vmsilo_nix.build.planner import BuildPlan
from vmsilo_nix.build.progress import Event, Progress, drv_name

OnEvent = Callable[[Event | None, Progress], None]


def _vms(plan: BuildPlan, drv: str) -> str:
    """``" (banking, vault)"``: which VMs a derivation is for, if it is one of their parts."""
    vms = plan.needed_by(drv)
    if not vms:
        return ""
    shown = ", ".join(vms[:4]) + (f" and {len(vms) - 4} more" if len(vms) > 4 else "")
    return f" ({shown})"


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


def render(progress: Progress, plan: BuildPlan) -> RenderableType:
    """The live display: one summary line, then each running build with its last log line."""
    table = Table.grid(padding=(0, 1))
    table.add_column(no_wrap=True)
    table.add_column(no_wrap=True, overflow="ellipsis")
    for build in list(progress.running.values()):
        label = Text.assemble(
            (drv_name(build.drv), "bold"), _vms(plan, build.drv), _where(build.machine)
        )
        table.add_row(label, Text(build.last_line, style="dim"))
    for path in list(progress.substituting.values()):
        table.add_row(Text.assemble("fetching ", (drv_name(path), "bold")), Text(""))
    return Group(Spinner("dots", text=Text(summary(progress))), table)


def plain_line(event: Event, plan: BuildPlan) -> Text | None:
    match event.kind:
        case "build":
            return Text(
                f"building {drv_name(event.text)}{_vms(plan, event.text)}{_where(event.machine)}"
            )
        case "finished":
            return Text(f"finished {drv_name(event.text)}{_where(event.machine)}")
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
