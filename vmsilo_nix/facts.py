"""Engine facts that several rooms, the shell templates and the Nix modules must agree on.

Each fact has its owner here; Python imports it, and the Nix modules read the same values from
``nix/facts.json``, which ``vmsilo facts`` writes from this module (a test fails on any drift).
"""

from __future__ import annotations

from typing import Final

VERSION: Final = "0.1.0"

#: The engine name every Wayland security context and PipeWire client of a VM carries; the
#: host's WirePlumber rule denies capture to clients of this engine.
ENGINE: Final = "org.vmsilo"

#: Per-VM run-time directories (sockets) live below this; gone at reboot, like the VMs.
RUN_DIR: Final = "/run/vmsilo"
#: Per-VM state (the qcow2 overlay): disk, not RAM, although recreated at each start.
STATE_DIR: Final = "/var/lib/vmsilo"

#: vmsilo-balloond's systemd RuntimeDirectory (below /run): its state file for ``--status``.
BALLOOND_RUNTIME_DIRECTORY: Final = "vmsilo-balloond"

#: The guest user's home, where the sharedHome share is mounted.
GUEST_HOME: Final = "/home/user"
#: The virtiofs tag of the sharedHome share.
HOME_TAG: Final = "home"
#: The host directory of ``sharedHome = true`` (the host module creates it, and its parent).
SHARED_ROOT: Final = "/shared"
DEFAULT_SHARED_HOME: Final = SHARED_ROOT + "/{vm}"
#: Where the guest mounts every other share: ``/mnt/<tag>``.
GUEST_SHARES_DIR: Final = "/mnt"

#: Where a package tree keeps its manifest: written by `vmsilo generate`, read by `vmsilo status`.
MANIFEST: Final = "share/vmsilo/manifest.json"

#: The vsock port the guest's command agent listens on: below 1024, so that only root in the
#: guest can bind it (an unprivileged process taking it first would get the host's commands).
AGENT_VSOCK_PORT: Final = 720
#: The vsock port the guest's tray side (vmsilo-tray-guest) listens on. It runs as the guest's
#: user, so the port is above 1024; whoever binds it in the guest speaks for that VM's tray,
#: which the host distrusts anyway (docs/tray.md).
TRAY_VSOCK_PORT: Final = 5001

#: Kernel parameters vmsilo sets on every guest; the guest reads its identity from them.
PARAM_NAME: Final = "vmsilo.name"
PARAM_OVERLAY: Final = "vmsilo.overlay"
PARAM_CONFIG: Final = "vmsilo.config"
PARAM_AUTOSHUTDOWN: Final = "vmsilo.autoshutdown"
#: Every kernel parameter whose name starts so is vmsilo's: users may not set one.
RESERVED_PARAM_PREFIX: Final = "vmsilo."
#: The store path of the VM's program profile; present only when crosvm attaches its program
#: image. A plain parameter, not part of ``vmsilo.config``: stage 1 reads it, without Python.
PARAM_PROGRAMS: Final = "vmsilo.programs"

#: The program image's virtio serial (crosvm ``--block id=``, at most 20 bytes): the guest
#: finds it as ``/dev/disk/by-id/virtio-<id>`` whatever its disk letter.
PROGRAMS_DISK_ID: Final = "vmsilo-programs"
#: Where stage 1 mounts the program image, as the store overlay's second lower layer.
PROGRAMS_MOUNT: Final = "/nix/.ro-programs"
#: The link guest-setup points at the VM's program profile; a profile of the guest system
#: (bin/ on PATH, share/ in XDG_DATA_DIRS), like /run/current-system/sw.
PROGRAMS_LINK: Final = "/run/vmsilo/programs"

#: The launcher's exit status when it is told to stop (SIGTERM, as `systemctl stop` sends): the
#: VM unit counts it as a clean stop (SuccessExitStatus), not as a failure.
LAUNCHER_STOPPED_STATUS: Final = 143

#: What stands in an argv for an artifact Nix has not built yet (``<unbuilt:kernel>``).
UNBUILT: Final = "<unbuilt:{}>"


def for_nix() -> dict[str, object]:
    """The facts the Nix modules read, as ``nix/facts.json`` holds them."""
    return {
        "version": VERSION,
        "engine": ENGINE,
        "runDir": RUN_DIR,
        "stateDir": STATE_DIR,
        "balloondRuntimeDirectory": BALLOOND_RUNTIME_DIRECTORY,
        "guestHome": GUEST_HOME,
        "sharedRoot": SHARED_ROOT,
        "defaultSharedHome": DEFAULT_SHARED_HOME,
        "launcherStoppedStatus": LAUNCHER_STOPPED_STATUS,
        "homeTag": HOME_TAG,
        "guestSharesDir": GUEST_SHARES_DIR,
        "agentVsockPort": AGENT_VSOCK_PORT,
        "trayVsockPort": TRAY_VSOCK_PORT,
        "programsDiskId": PROGRAMS_DISK_ID,
        "programsMount": PROGRAMS_MOUNT,
        "programsLink": PROGRAMS_LINK,
        "params": {
            "name": PARAM_NAME,
            "overlay": PARAM_OVERLAY,
            "config": PARAM_CONFIG,
            "autoshutdown": PARAM_AUTOSHUTDOWN,
            "programs": PARAM_PROGRAMS,
        },
    }
