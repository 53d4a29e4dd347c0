"""python -m vmsilo_nix.balloond: the vmsilo-balloond command."""

from .cli import run

run()
