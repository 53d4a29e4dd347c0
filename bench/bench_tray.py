"""vmsilo-tray: icon-change forwarding latency, and host memory for 100 items from 10 VMs.

    python bench/bench_tray.py [--vms 10] [--items 10] [--changes 50]

Real dbus-daemons: one session bus per VM guest and one for the host, the guests joined to the
host over Unix sockets. The host side is the ``vmsilo-tray`` console script as a process of its
own, so its memory is its alone; the guest sides, the apps and the panel run in this process.

Latency: an app changes its icon (new pixmap, NewIcon); the time until the panel on the host's
bus sees the host item's NewIcon, median of ``--changes`` changes. Baseline, in the same run:
the same app's NewIcon reaching a listener on the guest's own bus (one bare D-Bus hop); the
ratio says what the forwarding costs. Targets: under 20 ms at the median; the host side within
50 MiB (VmHWM, its peak resident memory) with every item shown.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dbus_fast import Message, MessageType  # noqa: E402
from dbus_fast.aio import MessageBus  # noqa: E402

from tests.tray_buses import App, Panel, solid, start_bus, until  # noqa: E402
from vmsilo_nix.channel.transport import UnixAddress  # noqa: E402
from vmsilo_nix.tray import guest, protocol  # noqa: E402
from vmsilo_nix.tray.transport import serve  # noqa: E402

HOST = Path(sys.executable).parent / "vmsilo-tray"


def memory_kib(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0])
    return fields


class SignalClock:
    """When each NewIcon arrives on a bus, by sender."""

    def __init__(self, bus: MessageBus) -> None:
        self.waiting: dict[str, asyncio.Future[float]] = {}
        bus.add_message_handler(self._on)

    def _on(self, msg: Message) -> None:
        if msg.message_type is MessageType.SIGNAL and msg.member == "NewIcon" and msg.sender:
            fut = self.waiting.pop(msg.sender, None)
            if fut is not None and not fut.done():
                fut.set_result(time.perf_counter())

    def expect(self, sender: str) -> asyncio.Future[float]:
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting[sender] = fut
        return fut


async def listen_all(bus: MessageBus) -> None:
    await bus.call(
        Message(
            destination="org.freedesktop.DBus",
            path="/org/freedesktop/DBus",
            interface="org.freedesktop.DBus",
            member="AddMatch",
            signature="s",
            body=["type='signal',member='NewIcon'"],
        )
    )


async def bench(args: argparse.Namespace, tmp: Path, guest_buses: list[str], host_bus: str) -> None:
    socks = [tmp / f"tray15-bench-{i}.sock" for i in range(args.vms)]
    servers = []
    for bus_address, sock in zip(guest_buses, socks, strict=True):
        bus = await MessageBus(bus_address=bus_address).connect()
        server = guest.GuestServer(bus)
        await server.items.start()
        servers.append(await serve(UnixAddress(str(sock)), protocol.FROM_HOST, server.handle))
    panel = await Panel.start(host_bus)
    panel.items.limit = args.vms * args.items + 1
    await listen_all(panel.bus)
    host_clock = SignalClock(panel.bus)

    vm_flags = [f"--vm=vm{i}=#{i * 20:02x}4080,unix:{s}" for i, s in enumerate(socks)]
    env = {**os.environ, "DBUS_SESSION_BUS_ADDRESS": host_bus}
    proc = subprocess.Popen([str(HOST), "--log-level", "warn", *vm_flags], env=env)
    try:
        await asyncio.sleep(1.0)
        idle = memory_kib(proc.pid)
        apps: list[App] = []
        for bus_address in guest_buses:
            for _ in range(args.items):
                app = await App.start(bus_address)
                await app.register()
                apps.append(app)
        total = args.vms * args.items
        await until(lambda: len(panel.services()) == total, timeout=120, what="every item")
        await asyncio.sleep(0.5)
        shown = memory_kib(proc.pid)

        # Which host item shows the first app: its title is unique once renamed.
        app = apps[0]
        app.item.title_ = "bench"
        app.item.new_title()

        async def find() -> str | None:
            for service in panel.services():
                if (await panel.props(service))["Title"] == "[vm0] bench":
                    return service
            return None

        service = await until(find, timeout=10, what="the bench item")
        owner = await panel.call(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "GetNameOwner",
            "s",
            [service],
        )
        host_owner = owner[0]
        listener = await MessageBus(bus_address=guest_buses[0]).connect()
        await listen_all(listener)
        guest_clock = SignalClock(listener)

        forwarded, direct = [], []
        for i in range(args.changes):
            app.item.pixmaps = [[22, 22, solid(22, 22, (255, i % 256, 0, 0))]]
            at_host = host_clock.expect(host_owner)
            at_guest = guest_clock.expect(app.bus.unique_name or "")
            start = time.perf_counter()
            app.item.new_icon()
            direct.append(await asyncio.wait_for(at_guest, 5) - start)
            forwarded.append(await asyncio.wait_for(at_host, 5) - start)
            await asyncio.sleep(0.06)  # an app changing its icon 15 times a second
        after = memory_kib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)
        for s in servers:
            s.close()

    fwd, base = statistics.median(forwarded) * 1000, statistics.median(direct) * 1000
    print(f"icon change guest app -> host panel, median of {args.changes}: {fwd:.2f} ms")
    print(f"  baseline, one D-Bus hop on the guest bus:         {base:.2f} ms  (x{fwd / base:.1f})")
    print(f"  forwarding p90: {sorted(forwarded)[int(len(forwarded) * 0.9)] * 1000:.2f} ms")
    mib = 1024
    print(f"host side, {args.vms} VMs connected, no items: RSS {idle['VmRSS'] / mib:.1f} MiB")
    print(
        f"host side, {total} items from {args.vms} VMs: RSS {shown['VmRSS'] / mib:.1f} MiB, "
        f"peak {after['VmHWM'] / mib:.1f} MiB"
    )


@contextlib.contextmanager
def buses(tmp: Path, n: int) -> Iterator[tuple[list[str], str]]:
    with contextlib.ExitStack() as stack:
        guests = [stack.enter_context(start_bus(tmp / f"guest-{i}")) for i in range(n)]
        yield guests, stack.enter_context(start_bus(tmp / "host"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vms", type=int, default=10)
    parser.add_argument("--items", type=int, default=10, help="items per VM (at most 16)")
    parser.add_argument("--changes", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tray15-bench-") as name:
        tmp = Path(name)
        with buses(tmp, args.vms) as (guest_buses, host_bus):
            asyncio.run(bench(args, tmp, guest_buses, host_bus))


if __name__ == "__main__":
    main()
