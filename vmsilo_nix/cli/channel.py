"""``vmsilo channel``: the host's ``run`` and ``shell`` and the guest's ``agent``, in one command.

The two ends live in their own rooms (``channel.client`` on the host, ``guest.agent`` in the
guest); only the command line puts them side by side.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from vmsilo_nix.channel import client
from vmsilo_nix.channel.protocol import ChannelError
from vmsilo_nix.guest import agent


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``vmsilo channel`` and its subcommands ``run``, ``shell`` and ``agent``."""
    sub = client.add_arguments(parser)
    agent_p = sub.add_parser(
        "agent",
        help="serve commands inside a guest (run by the guest's systemd service)",
        description="Listen for the host's commands and run each as the unprivileged guest "
        "user; optionally power off when idle.",
    )
    agent.add_arguments(agent_p)


def run(args: argparse.Namespace) -> int:
    if args.channel_command == "agent":
        return agent.run_agent(args)
    return client.run(args)


def main(argv: Sequence[str] | None = None) -> int:
    """``vmsilo channel`` on its own (tests run the client and the agent through it)."""
    parser = argparse.ArgumentParser(prog="vmsilo channel")
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ChannelError as err:
        print(f"vmsilo channel: {err}", file=sys.stderr)
        return 1
