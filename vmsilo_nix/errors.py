"""The small error hierarchy every part of vmsilo_nix raises.

``VmsiloError`` is the one base: the CLI catches it and prints ``str(err)``; anything else
reaching the top is a bug. Callers that need to tell causes apart catch one of its few
subclasses: ``ConfigError`` (with every ``Problem``), ``SourceError``, ``NixError``,
``ProgramNotFoundError`` (``NixNotFoundError`` for Nix itself), ``WriteError``.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs


class VmsiloError(Exception):
    """Base of every error a user can cause; its message is meant for people."""


@attrs.frozen
class Problem:
    """One thing wrong with a configuration, located by the option path the user wrote."""

    path: str
    message: str
    # The option path as data (names and list indices below programs.vmsilo), for tools.
    segments: tuple[str | int, ...] = attrs.field(default=(), eq=False, repr=False)
    #: "error" (the configuration is refused) or "warning" (it works, but probably not as meant;
    #: ``vmsilo check --strict`` refuses it too).
    severity: str = "error"

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(VmsiloError):
    """The configuration is invalid; carries every problem found, not just the first."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class SourceError(VmsiloError):
    """The configuration source (flake, file, JSON) could not be read."""


class WriteError(VmsiloError):
    """An output (a generated tree, an ``-o`` file) could not be written, or was refused."""


class NixError(VmsiloError):
    """A Nix command failed. Keeps the whole story; ``str`` shows only the part users need."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        self.argv = tuple(argv)
        self.returncode = returncode
        self.stderr = stderr
        super().__init__(last_error_block(stderr) or f"nix exited with status {returncode}")

    def details(self) -> str:
        """Everything, for ``--debug``."""
        return (
            f"command: {' '.join(self.argv)}\nexit status: {self.returncode}\n"
            f"stderr:\n{self.stderr.rstrip()}"
        )


class ProgramNotFoundError(VmsiloError):
    """A program vmsilo runs is not on PATH; says which, and what provides it."""

    def __init__(self, program: str, provider: str | None = None) -> None:
        self.program = program
        hint = f"; it comes with {provider}" if provider else ""
        super().__init__(f"'{program}' was not found on PATH{hint}")


class NixNotFoundError(ProgramNotFoundError):
    """No ``nix`` executable on PATH: the one missing program that says how to install it."""

    def __init__(self, program: str = "nix") -> None:
        VmsiloError.__init__(
            self,
            f"'{program}' was not found on PATH; install Nix "
            "(Debian: apt-get install nix-bin; elsewhere: https://nixos.org/download)",
        )
        self.program = program


class ProgramTimeout(VmsiloError):
    """A program did not finish within the time its caller allowed; it has been stopped."""

    def __init__(self, argv: Sequence[str], timeout: float) -> None:
        self.argv = tuple(argv)
        self.timeout = timeout
        super().__init__(f"'{self.argv[0]}' did not finish within {timeout:g}s and was stopped")


def last_error_block(stderr: str) -> str:
    """The last ``error:`` block of Nix's stderr, without the trace that precedes it.

    Nix prints traces first and the actual error last; the last block is what a user acts on.
    """
    lines = stderr.rstrip().splitlines()
    start = None
    for i, line in enumerate(lines):
        if line.lstrip().startswith("error:"):
            start = i
    if start is None:
        return stderr.strip()
    return "\n".join(lines[start:]).strip()
