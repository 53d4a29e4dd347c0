"""What Nix built or supplies for the plans: program packages and each VM's boot artifacts.

Inside the NixOS build, the module passes store paths for all of them. Outside it, whatever is
not supplied stays unknown: programs are then run by name from PATH, and a VM whose kernel,
initrd or root image is missing is reported as unbuilt, never given an invented path.
"""

from __future__ import annotations

import difflib
import posixpath
from collections.abc import Mapping, Sequence

import attrs
from cattrs.errors import ClassValidationError, IterableValidationError

from vmsilo_nix.config.convert import CONVERTER, STORE_DIR, Mismatch, located
from vmsilo_nix.config.schema import camel, option
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
    problems = unknown + _outside_the_store(artifacts)
    if problems:
        raise ConfigError(problems)
    return artifacts


def _outside_the_store(artifacts: Artifacts) -> list[Problem]:
    """Nix gives absolute store paths; anything else (a relative path, one that leaves the
    store through ``..``, a file on the host) would make launchers run what Nix never built."""
    problems = [
        Problem(f"artifacts.packages.{name}", _not_a_store_path(path, "a package"))
        for name, path in artifacts.packages.items()
        if not _is_store_path(path, inside=False)
    ]
    for name, vm in artifacts.vms.items():
        for field in attrs.fields(VmArtifacts):
            path = getattr(vm, field.name)
            # the toplevel is a store path itself; the others are files inside one
            whole = field.name == "toplevel"
            if path is not None and not _is_store_path(path, inside=not whole):
                kind = "a store path" if whole else "a file in the store"
                where = f"artifacts.vms.{name}.{camel(field.name)}"
                problems.append(Problem(where, _not_a_store_path(path, kind)))
    return problems


def _is_store_path(path: str, *, inside: bool) -> bool:
    """``STORE_DIR/<name>`` (``inside``: a path below it); absolute and normal, no ``..``."""
    if not path.startswith(STORE_DIR + "/") or posixpath.normpath(path) != path:
        return False
    depth = path[len(STORE_DIR) + 1 :].count("/")
    return depth >= 1 if inside else depth == 0


def _not_a_store_path(path: str, kind: str) -> str:
    return f"expected {kind} under {STORE_DIR}/ (as Nix builds them), got {path!r}"


def unknown_vms(artifacts: Artifacts, vm_names: Sequence[str], origin: str) -> list[Problem]:
    """A VM the artifacts name but the configuration does not have: a misspelt or stale entry
    would otherwise leave the VM it meant unbuilt, or build another VM's system into it."""
    problems = []
    for name in artifacts.vms:
        if name not in vm_names:
            close = difflib.get_close_matches(name, vm_names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(
                Problem(
                    f"artifacts.vms.{name}",
                    f"{origin} gives artifacts for VM {name!r}, which the configuration does "
                    f"not have{hint} (VMs: {', '.join(vm_names) or 'none'})",
                )
            )
    return problems


def _unknown_program(name: str) -> str:
    close = difflib.get_close_matches(name, PROGRAMS, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"vmsilo runs no program of that name; {hint}(known: {', '.join(PROGRAMS)})"
