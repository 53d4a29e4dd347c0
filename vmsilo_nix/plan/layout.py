"""Where a VM's run-time files live on the host. Tests point these at temporary directories."""

from __future__ import annotations

import attrs

from vmsilo_nix.config.schema import option
from vmsilo_nix.facts import RUN_DIR, STATE_DIR


@attrs.frozen(kw_only=True)
class Layout:
    run_dir: str = option(RUN_DIR, doc="Directory of per-VM run-time directories (sockets).")
    state_dir: str = option(STATE_DIR, doc="Directory of per-VM state (the qcow2 overlay).")

    def runtime(self, vm: str) -> str:
        return f"{self.run_dir}/{vm}"

    def control_socket(self, vm: str) -> str:
        return f"{self.runtime(vm)}/crosvm.sock"

    def virtiofs_socket(self, vm: str, tag: str) -> str:
        return f"{self.runtime(vm)}/virtiofs-{tag}.sock"

    def wayland_socket(self, vm: str) -> str:
        return f"{self.runtime(vm)}/wayland.sock"

    def sound_socket(self, vm: str) -> str:
        return f"{self.runtime(vm)}/sound.sock"

    def overlay(self, vm: str) -> str:
        return f"{self.state_dir}/{vm}/overlay.qcow2"
