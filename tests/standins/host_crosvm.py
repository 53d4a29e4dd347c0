#!/usr/bin/python3
"""crosvm on the real-systemd host (tests/test_systemd_host.py), where no guest can boot.

Appends one JSON line to /srv/record/crosvm.jsonl: its argv, user, groups, environment, and
whether each socket path in its argv is a listening socket at that moment. ``run`` then stays
until SIGTERM, as a running VM does; every other command (powerbtn, stop) exits 0.
"""

import json
import os
import re
import signal
import sys
import time


def listening(path: str) -> bool:
    """Whether a process listens on the Unix socket ``path``, told by the kernel's table, not
    by connecting: a vhost-user backend serves its first client and exits when it leaves."""
    with open("/proc/net/unix") as table:
        next(table)
        for line in table:
            fields = line.split()
            # Flags 00010000: __SO_ACCEPTCON, a listening socket
            if len(fields) == 8 and fields[7] == path and fields[3] == "00010000":
                return True
    return False


argv = sys.argv[1:]
paths = sorted({m for word in argv for m in re.findall(r"/run/vmsilo/[^,=\s]+\.sock", word)})
entry = {
    "argv": argv,
    "uid": os.getuid(),
    "groups": sorted(os.getgroups()),
    "env": dict(os.environ),
    # the control socket is crosvm's own: only the others must be there before it starts
    "sockets": {p: listening(p) for p in paths if not p.endswith("/crosvm.sock")},
}
with open("/srv/record/crosvm.jsonl", "a") as f:
    f.write(json.dumps(entry) + "\n")
if "run" in argv:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(1)
