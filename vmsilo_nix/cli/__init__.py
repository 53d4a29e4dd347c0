"""The ``vmsilo`` command: ``app`` parses and dispatches, ``show`` draws plans as tables,
``channel`` joins the two ends of the command channel under one subcommand."""

from __future__ import annotations

from vmsilo_nix.cli.app import main, run

__all__ = ["main", "run"]
