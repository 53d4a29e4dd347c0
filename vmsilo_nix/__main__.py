from vmsilo_nix.cli.app import run

run()
