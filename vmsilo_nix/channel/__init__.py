"""The host-guest command channel behind ``vm-run`` and ``vm-shell`` (docs/channel.md).

``vmsilo channel`` is built by :func:`add_arguments` and run by :func:`run`.
"""

from __future__ import annotations

from .client import add_arguments, run, run_command
from .protocol import ChannelError, ProtocolError

__all__ = ["ChannelError", "ProtocolError", "add_arguments", "run", "run_command"]
