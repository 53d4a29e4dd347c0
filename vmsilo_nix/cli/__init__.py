"""The ``vmsilo`` command: ``app`` parses and dispatches, ``show`` draws plans as tables,
``channel`` joins the two ends of the command channel under one subcommand."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn


def run() -> NoReturn:
    """The ``vmsilo`` program (imported when run, so that importing a room of cli is light)."""
    from vmsilo_nix.cli.app import run as run_app  # noqa: PLC0415

    run_app()


def main(argv: Sequence[str] | None = None) -> int:
    from vmsilo_nix.cli.app import main as main_app  # noqa: PLC0415

    return main_app(argv)


__all__ = ["main", "run"]
