#!/usr/bin/python3
"""`vmsilo` on the real-systemd host, for `vmsilo wayland-context` only: the container has no
compositor with Wayland security contexts. It records its argv in /srv/record/vmsilo.jsonl
and serves the --socket it is given, as the real one does once the compositor took it."""

import json
import signal
import socket
import sys
import time

argv = sys.argv[1:]
with open("/srv/record/vmsilo.jsonl", "a") as f:
    f.write(json.dumps(argv) + "\n")
assert argv[:1] == ["wayland-context"], argv
server = socket.socket(socket.AF_UNIX)
server.bind(argv[argv.index("--socket") + 1])
server.listen()
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
while True:
    time.sleep(1)
