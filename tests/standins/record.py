#!/usr/bin/env python3
"""A recording stand-in for programs that cannot run here (crosvm, virtiofsd, sound backend).

Installed under each program's name; it appends its argv as one JSON line to
$VMSILO_RECORD/<name>.jsonl, then behaves as the test asks through $VMSILO_BEHAVE_<NAME>:
  exit:N      exit with status N at once
  exit-when:WORD:N    exit with status N when WORD is in the argv, else with 0
  serve       (virtiofsd, vhost-device-sound) listen on the --socket-path/--socket given, and
              wait to be stopped
  serve-after:S   the same, after S seconds (a slow start)
  serve-slow-exit:S   serve, and take S seconds to exit after SIGTERM (a slow stop)
  sleep       wait to be stopped
Every process writes its pid to $VMSILO_RECORD/<name>.pids so tests can check it is gone.
"""

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

name = Path(sys.argv[0]).name
record = Path(os.environ["VMSILO_RECORD"])
with open(record / f"{name}.jsonl", "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\n")
with open(record / f"{name}.pids", "a") as f:
    f.write(f"{os.getpid()}\n")

behave = os.environ.get(f"VMSILO_BEHAVE_{name.upper().replace('-', '_')}", "exit:0")
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
if behave.startswith("exit-when:"):
    _, word, status = behave.split(":")
    sys.exit(int(status) if word in sys.argv[1:] else 0)
if behave.startswith("exit:"):
    sys.exit(int(behave[5:]))
if behave.startswith("serve-slow-exit:"):
    linger = float(behave.split(":", 1)[1])

    def slow_exit(*_: object) -> None:
        time.sleep(linger)
        sys.exit(0)

    signal.signal(signal.SIGTERM, slow_exit)
    behave = "serve"
if behave.startswith("serve-after:"):
    time.sleep(float(behave.split(":", 1)[1]))
    behave = "serve"
if behave == "serve":
    path = None
    for i, arg in enumerate(sys.argv[1:], start=1):
        if arg.startswith("--socket-path="):
            path = arg.split("=", 1)[1]
        elif arg in ("--socket", "--socket-path"):
            path = sys.argv[i + 1]
    assert path, "no socket in argv"
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen()
while True:
    time.sleep(1)
