import sys

from vmsilo_nix.cli.app import main

sys.exit(main())
