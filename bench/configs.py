"""Generated configurations of N VMs for benchmarks: every VM a realistic mix of options."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vmsilo_nix.config.options import nix_value


def vm(i: int) -> dict[str, Any]:
    octet2, octet3 = divmod(i, 250)
    return {
        "name": f"vm{i:04d}",
        "color": ["red", "#3498db", "rgb(10, 200, 30)", "orange"][i % 4],
        "memory": 1024 + 512 * (i % 4),
        "cpus": 1 + i % 4,
        "autoShutdown": {"enable": i % 3 == 0, "after": 120},
        "rootOverlay": {"type": "qcow2" if i % 2 else "tmpfs", "size": "20G"},
        "kernelParams": ["quiet", f"bench.index={i}"],  # vmsilo.* is the engine's own
        "sharedDirectories": {
            "docs": {"path": f"/srv/share/{i}/docs", "readonly": True},
            "scratch": {"path": f"/srv/share/{i}/scratch", "cache": "never"},
        },
        "network": {
            "nameservers": ["9.9.9.9"],
            "interfaces": {
                "wan": {
                    "tap": {"hostAddress": f"10.{octet2 + 1}.{octet3}.254/24"},
                    "addresses": [f"10.{octet2 + 1}.{octet3}.1/24"],
                    "routes": {"0.0.0.0/0": {"via": f"10.{octet2 + 1}.{octet3}.254"}},
                }
            },
        },
        "dependsOn": [f"vm{i - 1:04d}"] if i % 10 else [],
    }


def config(n: int) -> dict[str, Any]:
    return {
        "enable": True,
        "user": "alice",
        "hostNetworking": {"nat": {"enable": True, "interface": "eth0"}},
        "nixosVms": [vm(i) for i in range(n)],
    }


def write(directory: Path, n: int) -> tuple[Path, Path]:
    """config-N.json and config-N.nix, holding the same data."""
    data = config(n)
    json_path = directory / f"config-{n}.json"
    nix_path = directory / f"config-{n}.nix"
    json_path.write_text(json.dumps(data))
    nix_path.write_text(nix_value(data) + "\n")  # an attribute set literal, as users write
    return json_path, nix_path
