#!/usr/bin/env python3
"""A stand-in `crosvm` answering `balloon_stats` and `balloon` from a simulated guest.

Installed as `crosvm`; appends its argv as one JSON line to $VMSILO_RECORD/crosvm.jsonl. The
guest behind control socket S is the JSON file S.guest: {"memory", "used", "actual", "target",
"behave"}. Each balloon_stats call first lets the guest follow its target (unless it ignores
it), then answers like crosvm does. "behave" picks a fault:
  ok        a well-behaved guest
  ignores   its balloon never moves
  lies      reports more available memory than the VM has
  nulls     every stats field is null (a guest without the stats feature)
  garbage   the reply is not JSON
  enotconn  the balloon driver is not up yet (crosvm: {"Err": 107}, exit 1)
  hang      never answers
  vanish    the VM goes away during the call (its socket is removed, the reply never comes)
"""

import json
import os
import sys
import time
from pathlib import Path

record = Path(os.environ["VMSILO_RECORD"])
with open(record / "crosvm.jsonl", "a") as f:
    f.write(json.dumps(sys.argv[1:]) + "\n")

FIELDS = (
    "swap_in", "swap_out", "major_faults", "minor_faults", "free_memory", "total_memory",
    "available_memory", "disk_caches", "hugetlb_allocations", "hugetlb_failures",
    "shared_memory", "unevictable_memory",
)  # fmt: skip
command, socket = sys.argv[1], sys.argv[-1]
state_path = Path(socket + ".guest")
guest = json.loads(state_path.read_text())
behave = guest.get("behave", "ok")
if behave == "hang":
    time.sleep(1000)
if behave == "vanish":
    os.unlink(socket)
    sys.exit("[ERROR] failed to read response: Connection reset by peer (os error 104)")
if behave == "enotconn":
    print(json.dumps({"Err": 107}, indent=2))
    sys.exit(1)
if command == "balloon":
    guest["target"] = int(sys.argv[2])
elif command == "balloon_stats":
    if behave != "ignores":
        guest["actual"] = guest.get("target", guest["actual"])
    available = guest["memory"] - guest["actual"] - guest["used"]
    if behave == "lies":
        available = guest["memory"] * 8
    stats = dict.fromkeys(FIELDS)
    if behave != "nulls":
        stats.update(
            free_memory=available // 2,
            total_memory=guest["memory"] - guest["actual"],
            available_memory=available,
            disk_caches=available // 2,
        )
    if behave == "garbage":
        print('{"BalloonStats": {"stats": [1, 2', flush=True)
        sys.exit(0)
    print(
        json.dumps({"BalloonStats": {"stats": stats, "balloon_actual": guest["actual"]}}, indent=2)
    )
else:
    sys.exit(f"stand-in crosvm: unexpected command {command}")
tmp = state_path.with_suffix(".tmp")
tmp.write_text(json.dumps(guest))
tmp.replace(state_path)
