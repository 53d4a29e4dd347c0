"""What Nix built or supplies for the plans: program packages and each VM's boot artifacts.

Inside the NixOS build, the module passes store paths for all of them. Outside it, whatever is
not supplied stays unknown: programs are then run by name from PATH, and a VM whose kernel,
initrd or root image is missing is reported as unbuilt, never given an invented path.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

import attrs
from cattrs.errors import ClassValidationError, IterableValidationError

from vmsilo_nix.config.convert import CONVERTER, Mismatch, located
from vmsilo_nix.config.schema import option
from vmsilo_nix.errors import ConfigError, Problem

# Programs the plans run, by the name of their executable.
PROGRAMS = (
    "crosvm",
    "virtiofsd",
    "qemu-img",
    "ip",
    "vhost-device-sound",
    "pw-container",
    "vmsilo-balloond",
    "vmsilo-tray",
    "vmsilo",
    "bash",
)


@attrs.frozen(kw_only=True)
class VmArtifacts:
    kernel: str | None = option(None, doc="Kernel image of the VM's guest system.")
    initrd: str | None = option(None, doc="Initrd of the VM's guest system.")
    root_image: str | None = option(None, doc="Read-only root filesystem image.")
    toplevel: str | None = option(None, doc="The guest system's toplevel (its init is here).")


@attrs.frozen(kw_only=True)
class Artifacts:
    packages: Mapping[str, str] = option(
        factory=dict, doc="Package (store path) of each program, by executable name."
    )
    vms: Mapping[str, VmArtifacts] = option(factory=dict, doc="Boot artifacts, by VM name.")

    def program(self, name: str) -> str:
        """The executable: inside its package when Nix gave one, else looked up on PATH."""
        package = self.packages.get(name)
        return f"{package}/bin/{name}" if package else name

    def vm(self, name: str) -> VmArtifacts:
        return self.vms.get(name, VmArtifacts())


def load_artifacts(raw: object) -> Artifacts:
    """Structure artifacts JSON (camelCase keys); errors name the path below ``artifacts``."""
    try:
        artifacts = CONVERTER.structure(raw, Artifacts)
    except (ClassValidationError, IterableValidationError, Mismatch) as exc:
        raise ConfigError(located(exc, root="artifacts")) from None
    # A misspelt program would otherwise be ignored silently and run from PATH instead.
    unknown = [
        Problem(f"artifacts.packages.{name}", _unknown_program(name))
        for name in artifacts.packages
        if name not in PROGRAMS
    ]
    if unknown:
        raise ConfigError(unknown)
    return artifacts


def _unknown_program(name: str) -> str:
    close = difflib.get_close_matches(name, PROGRAMS, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"vmsilo runs no program of that name; {hint}(known: {', '.join(PROGRAMS)})"
