"""The console scripts as the units run them: lifecycle, log levels, bad arguments."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.tray_buses import App, Panel, needs_dbus, start_bus, until
from vmsilo_nix.config.rules import _LEVELS
from vmsilo_nix.tray.cli import LOG_LEVELS, host_main, parse_vm

BIN = Path(sys.executable).parent
needs_scripts = pytest.mark.skipif(
    not (BIN / "vmsilo-tray").exists(), reason="the console scripts are not installed"
)


def test_log_levels_are_the_options_levels() -> None:
    assert tuple(LOG_LEVELS) == _LEVELS


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("work", "expected NAME=#RRGGBB,ADDRESS"),
        ("work=#ffffff", "expected NAME=#RRGGBB,ADDRESS"),
        ("work=red,vsock:3", "'red' is not a colour"),
        ("work=#fff,vsock:3", "'#fff' is not a colour"),
        ("work=#ffffff,tcp:1.2.3.4:5", "is not an address"),
        ("work=#ffffff,vsock:x", "is not an address"),
    ],
)
def test_bad_vm_flags_are_refused_with_a_message(
    text: str, error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError, match=error):
        parse_vm(text)
    with pytest.raises(SystemExit) as exit_:
        host_main(["--vm", text])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert error in err and "Traceback" not in err


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        host_main(["--help"])
    assert "NAME=#RRGGBB,ADDRESS" in capsys.readouterr().out


@pytest.fixture
def buses(tmp_path: Path) -> Iterator[tuple[str, str]]:
    with start_bus(tmp_path / "guest-bus") as g, start_bus(tmp_path / "host-bus") as h:
        yield g, h


def spawn(script: str, bus: str, *argv: str) -> subprocess.Popen[str]:
    env = {**os.environ, "DBUS_SESSION_BUS_ADDRESS": bus}
    return subprocess.Popen(
        [str(BIN / script), *argv],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=10)
    return proc.returncode, err


@needs_dbus
@needs_scripts
def test_the_vm_stopping_and_starting_again(buses: tuple[str, str], tmp_path: Path) -> None:
    guest_bus, host_bus = buses
    sock = tmp_path / "tray15-cli.sock"
    listen = ("--listen", f"unix:{sock}")
    guest = spawn("vmsilo-tray-guest", guest_bus, "--log-level", "debug", *listen)
    host = spawn(
        "vmsilo-tray", host_bus, "--log-level", "info", "--vm", f"work=#ff0000,unix:{sock}"
    )
    procs = [guest, host]

    async def main() -> None:
        nonlocal guest
        panel = await Panel.start(host_bus)
        app = await until(lambda: _registered(guest_bus), what="the guest watcher")
        (service,) = await until(panel.services, what="the icon")
        assert (await panel.props(service))["Title"] == "[work] Chat"

        guest.kill()  # the VM is gone: its icons go at once
        guest.wait()
        await until(lambda: not panel.services(), timeout=2, what="the icons to go")

        guest = spawn("vmsilo-tray-guest", guest_bus, *listen)
        procs.append(guest)
        app.bus.disconnect()
        await until(lambda: _registered(guest_bus), what="the new guest watcher")
        await until(panel.services, timeout=10, what="the reconnection")

    try:
        asyncio.run(asyncio.wait_for(main(), 40))
    finally:
        results = [stop(p) for p in procs]
    (code, host_err) = results[1]
    assert code == 0
    assert "work: connected to unix socket" in host_err
    assert "removed its 1 tray icons" in host_err
    assert "DEBUG" not in host_err  # info, as asked
    assert "DEBUG" in results[0][1]  # the first guest logged at debug
    assert "Traceback" not in host_err


async def _registered(bus: str) -> App | None:
    app = await App.start(bus)
    reply = await app.register()
    if reply is None or reply.error_name:
        app.bus.disconnect()
        return None
    return app


@needs_dbus
@needs_scripts
def test_warn_is_quiet_and_a_missing_bus_is_an_error(
    buses: tuple[str, str], tmp_path: Path
) -> None:
    host = spawn(
        "vmsilo-tray", buses[1], "--log-level", "warn", "--vm", f"a=#ff0000,unix:{tmp_path}/x"
    )
    with pytest.raises(subprocess.TimeoutExpired):
        host.wait(1)
    code, err = stop(host)
    assert (code, err) == (0, "")
    broken = spawn("vmsilo-tray", f"unix:path={tmp_path}/no-bus")
    _out, err = broken.communicate(timeout=10)
    code = broken.returncode
    assert code == 1 and "Traceback" not in err and err.strip()
