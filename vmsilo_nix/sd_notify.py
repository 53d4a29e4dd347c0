"""Telling systemd a Type=notify service is ready (the sd_notify protocol, without libsystemd)."""

from __future__ import annotations

import contextlib
import os
import socket


def notify_ready() -> None:
    """Send READY=1 to $NOTIFY_SOCKET; nothing when not run by systemd with Type=notify."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock, contextlib.suppress(OSError):
        sock.sendto(b"READY=1", address)
