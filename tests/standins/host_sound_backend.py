#!/usr/bin/python3
"""vhost-device-sound on the real-systemd host when the real one is not built (set
VMSILO_VHOST_DEVICE_SOUND to use it): serves the --socket it is given, as the backend does,
and is a real PipeWire client of the session it finds: its child ``pw-mon`` stays connected
(as the backend does before the guest opens a stream; the container has no sink to play to),
so the client PipeWire sees carries whatever security context the backend was started in."""

import json
import signal
import socket
import subprocess
import sys

argv = sys.argv[1:]
with open("/srv/record/vhost-device-sound.jsonl", "a") as f:
    f.write(json.dumps(argv) + "\n")
server = socket.socket(socket.AF_UNIX)
server.bind(argv[argv.index("--socket") + 1])
server.listen()
player = subprocess.Popen(["pw-mon"], stdout=subprocess.DEVNULL)


def stop(*_: object) -> None:
    player.terminate()
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
sys.exit(player.wait())
