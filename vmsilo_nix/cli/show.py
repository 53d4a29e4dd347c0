"""The plan for people: rich tables for `vmsilo show` and `vmsilo plan`."""

from __future__ import annotations

import shlex
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from vmsilo_nix.config.schema import ROOT
from vmsilo_nix.plan.argv import Arg
from vmsilo_nix.plan.host import Plan, VmPlan


def _args_table(title: str, args: Sequence[Arg], names: Sequence[str | None]) -> Table:
    table = Table(title=title, title_justify="left", show_header=True, box=None, pad_edge=False)
    table.add_column("argument", overflow="fold")
    table.add_column(f"from (options under {ROOT})", style="dim", overflow="fold")
    for a in args:
        table.add_row(Text(shlex.join(a.words)), Text(a.explain(names, root="")))
    return table


def vm(p: Plan, name: str) -> Iterator[RenderableType]:
    v = p.vms[name]
    names = p.vm_names
    yield _heading(v)
    yield _args_table("crosvm", v.crosvm, names)
    for share in v.virtiofsd:
        yield _args_table(f"virtiofsd: share {share.tag!r} ({share.shared_dir})", share.argv, names)
    if v.sound is not None:
        what = "playback and capture" if v.sound.capture else "playback only, capture denied"
        yield _args_table(f"sound backend ({what})", v.sound.argv, names)
    yield from _network(v)
    yield _overlay(v)
    yield _wayland(v)
    yield Text(starts(v))


#: When an autoStart VM starts, by what its devices need (VmPlan.needs).
_STARTS = {
    "boot": "starts at boot",
    "session": "starts when the VM user's session starts (its sound needs the user's PipeWire)",
    "graphical-session": (
        "starts when the VM user's graphical session starts (its GPU needs the session's "
        "Wayland socket)"
    ),
}


def starts(v: VmPlan) -> str:
    return _STARTS[v.needs] if v.auto_start else "starts on first use"


def _heading(v: VmPlan) -> Text:
    text = Text.assemble(
        (f"VM {v.name}", "bold"), f"  vsock CID {v.cid}, control socket ", v.control_socket
    )
    if v.unbuilt:
        text.append(f"\nnot built yet: {', '.join(v.unbuilt)}", style="yellow")
        text.append(" (pass --artifacts, or build through the NixOS module)")
    return text


def _network(v: VmPlan) -> Iterator[RenderableType]:
    if not v.network.taps:
        yield Text("networking: none")
        return
    table = Table(title="networking (host side)", title_justify="left", box=None, pad_edge=False)
    for col in ("TAP", "guest interface", "MAC", "host address", "bridge", "owner"):
        table.add_column(col)
    for t in v.network.taps:
        table.add_row(t.name, t.interface, t.mac, t.host_address or "-", t.bridge or "-", t.user)
    yield table
    yield Text("set-up: " + "; ".join(shlex.join(c) for c in v.network.setup_argv()))
    for file, body in v.network.guest_files.items():
        yield Text.assemble((f"guest {file}:", "bold"), "\n", body.rstrip())


def _wayland(v: VmPlan) -> Text:
    w = v.wayland
    if w is None:
        return Text("wayland: none (no cross-domain GPU context)")
    return Text(
        f"wayland: {w.socket}, security context engine={w.sandbox_engine} app_id={w.app_id} "
        f"instance_id={w.instance_id!r} (border {w.color})"
    )


def _overlay(v: VmPlan) -> Text:
    o = v.overlay
    if o.type == "tmpfs":
        return Text("overlay: tmpfs in guest RAM (writes vanish at power-off)")
    return Text(
        f"overlay: qcow2 {o.path} ({o.size}), created afresh each start: "
        + shlex.join(o.create_argv)
    )


def summary(doc: Mapping[str, Any]) -> Table:
    """The table of ``vmsilo plan``, made from the document ``vmsilo plan --json`` prints, so
    the two always agree (the same VMs, the same start order)."""
    order = doc["startOrder"]
    table = Table(
        title=f"start order: {', '.join(order) or '(no VMs)'}",
        title_justify="left",
        box=None,
        pad_edge=False,
    )
    for col in ("VM", "CID", "cpus", "memory", "TAPs", "shares", "overlay", "sound", "unbuilt"):
        table.add_column(col)
    for name, v in doc["vms"].items():
        flags = {a["words"][0]: a["words"][1:] for a in v["crosvm"]["args"] if a["words"]}
        snd = v["sound"]
        table.add_row(
            name,
            str(v["cid"]),
            " ".join(flags.get("--cpus", ())),
            " ".join(flags.get("--mem", ())) + " MiB",
            ", ".join(t["name"] for t in v["taps"]) or "-",
            ", ".join(s["tag"] for s in v["virtiofsd"]) or "-",
            v["overlay"]["type"],
            "-" if snd is None else ("capture" if snd["capture"] else "playback"),
            ", ".join(v["unbuilt"]) or "-",
        )
    return table
