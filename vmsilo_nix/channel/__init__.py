"""The host-guest command channel behind ``vm-run`` and ``vm-shell`` (docs/channel.md).

``protocol`` and ``transport`` are the wire both ends share; ``client`` is the host's end. The
guest's end is ``vmsilo_nix.guest.agent``.
"""

from __future__ import annotations

from vmsilo_nix.channel.client import run_command
from vmsilo_nix.channel.protocol import ChannelError, ProtocolError

__all__ = ["ChannelError", "ProtocolError", "run_command"]
