#!/usr/bin/env python3
"""A stand-in `nix-eval-jobs` that speaks its line format (conftest's `eval_jobs` fixture).

Records its argv as a JSON list in $EVAL_JOBS_ARGV, prints the lines of $EVAL_JOBS_LINES one by
one (as nix-eval-jobs does, in completion order), writes $EVAL_JOBS_STDERR to stderr and exits
with $EVAL_JOBS_STATUS (0 when unset).
"""

import json
import os
import sys

with open(os.environ["EVAL_JOBS_ARGV"], "w") as out:
    json.dump(sys.argv[1:], out)
with open(os.environ["EVAL_JOBS_LINES"]) as lines:
    for line in lines:
        sys.stdout.write(line)
        sys.stdout.flush()
sys.stderr.write(os.environ.get("EVAL_JOBS_STDERR", ""))
sys.exit(int(os.environ.get("EVAL_JOBS_STATUS", "0")))
