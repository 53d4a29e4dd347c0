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
    program_image: str | None = option(
        None, doc="The VM's program image: its guestPrograms' closure minus the root image's."
    )
    programs: str | None = option(
        None, doc="The profile of the VM's guestPrograms, inside its program image."
    )

    def boot_files(self) -> dict[str, str]:
        """The files a VM boots from, by their name in the artifacts JSON: kernel, initrd,
        rootImage, and programImage when it has one. A VM is built while they all exist
        (``vmsilo status`` and ``vm-status`` both ask this)."""
        files = {
            "kernel": self.kernel,
            "initrd": self.initrd,
            "rootImage": self.root_image,
            "programImage": self.program_image,
        }
        return {k: v for k, v in files.items() if v}


#: What every VM boots from (a program image only with guestPrograms).
BOOT_PARTS = ("kernel", "initrd", "rootImage")


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
        if not _in_store(path, whole=True)  # bin/NAME is found inside it
    ]
    for name, vm in artifacts.vms.items():
        for field in attrs.fields(VmArtifacts):
            path = getattr(vm, field.name)
            # an output itself (a squashfs image is one) or a file inside one (bzImage)
            if path is not None and not _in_store(path, whole=False):
                where = f"artifacts.vms.{name}.{camel(field.name)}"
                problems.append(Problem(where, _not_a_store_path(path, "a store path")))
    return problems


def _in_store(path: str, *, whole: bool) -> bool:
    """``STORE_DIR/<name>``, or (unless ``whole``) a path below it; absolute and normal."""
    if not path.startswith(STORE_DIR + "/") or posixpath.normpath(path) != path:
        return False
    return not whole or "/" not in path[len(STORE_DIR) + 1 :]


def _not_a_store_path(path: str, kind: str) -> str:
    return f"expected {kind} under {STORE_DIR}/ (as Nix builds them), got {path!r}"


def unknown_vms(
    artifacts: Artifacts, vm_names: Sequence[str], origin: str
) -> tuple[list[Problem], list[Problem]]:
    """Entries for VMs the configuration does not have, as (errors, warnings).

    A misspelling (close to a configured VM that has no entry) is an error: the VM it meant
    would stay unbuilt. Any other such entry is a warning, named with ``origin``: the file
    `vmsilo build` writes keeps the entries of VMs built earlier, so one left from a VM since
    removed, or from a larger configuration, is expected and harmless.
    """
    errors: list[Problem] = []
    warnings: list[Problem] = []
    listed = ", ".join(vm_names) or "none"
    missing = [n for n in vm_names if n not in artifacts.vms]
    for name in artifacts.vms:
        if name in vm_names:
            continue
        close = difflib.get_close_matches(name, missing, n=1)
        where = f"artifacts.vms.{name}"
        said = f"{origin} gives artifacts for VM {name!r}, which the configuration does not have"
        if close:
            errors.append(
                Problem(
                    where, f"{said}; did you mean {close[0]!r}, which has none? (VMs: {listed})"
                )
            )
        else:
            warnings.append(Problem(where, f"{said}; ignored (VMs: {listed})"))
    return errors, warnings


def _unknown_program(name: str) -> str:
    close = difflib.get_close_matches(name, PROGRAMS, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"vmsilo runs no program of that name; {hint}(known: {', '.join(PROGRAMS)})"
