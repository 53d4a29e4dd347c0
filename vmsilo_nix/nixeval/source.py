"""Where a configuration comes from: a flake's NixOS host, a plain .nix file, or JSON.

Every source is read with at most one Nix evaluation, whatever the number of VMs. What comes
back is plain JSON data; structuring and checking it is the next stage's job
(``vmsilo_nix.pipeline.load`` runs both).
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import attrs

from vmsilo_nix.errors import SourceError
from vmsilo_nix.nixeval import nix

JSON = nix.JSON


def apply_expr() -> str:
    """The shipped function that turns programs.vmsilo into plain JSON data."""
    return nix.shipped_expr("apply.nix")


@attrs.frozen
class FlakeSource:
    """``REF#HOST``: ``REF#nixosConfigurations.HOST.config.programs.vmsilo``."""

    ref: str
    host: str

    @classmethod
    def parse(cls, text: str) -> FlakeSource:
        ref, sep, host = text.rpartition("#")
        if not sep or not ref or not host:
            raise SourceError(f"--flake expects REF#HOST (for example .#desktop), got {text!r}")
        return cls(ref, host)

    @property
    def installable(self) -> str:
        host = self.host if nix.is_plain_attr(self.host) else json.dumps(self.host)
        return f"{self.ref}#nixosConfigurations.{host}.config.programs.vmsilo"

    def describe(self) -> str:
        return f"flake {self.ref}#{self.host}"


@attrs.frozen
class NixFileSource:
    """A .nix file that evaluates to the attribute set assigned to ``programs.vmsilo``."""

    path: Path

    def describe(self) -> str:
        return str(self.path)


@attrs.frozen
class JsonSource:
    """A JSON document with the same data; ``None`` reads standard input."""

    path: Path | None

    def describe(self) -> str:
        return "standard input" if self.path is None else str(self.path)


Source = FlakeSource | NixFileSource | JsonSource


def parse_source(*, flake: str | None = None, file: str | None = None) -> Source:
    if (flake is None) == (file is None):
        raise SourceError("give exactly one of --flake REF#HOST or --file PATH")
    if flake is not None:
        return FlakeSource.parse(flake)
    assert file is not None
    if file == "-":
        return JsonSource(None)
    path = Path(file)
    if path.suffix == ".json":
        return JsonSource(path)
    if path.suffix == ".nix":
        return NixFileSource(path)
    raise SourceError(f"--file expects a .nix or .json file (or - for JSON on stdin), got {file!r}")


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def parse_json_text(text: str, origin: str) -> JSON:
    try:
        value: JSON = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise SourceError(
            f"{origin}: not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})"
        ) from None
    except (ValueError, RecursionError) as e:
        raise SourceError(f"{origin}: not valid JSON: {e}") from None
    return value


def load_raw(source: Source, opts: nix.NixOptions = nix.DEFAULT_OPTIONS) -> JSON:
    """The configuration as plain JSON data, not yet checked."""
    if isinstance(source, JsonSource):
        if source.path is None:
            return parse_json_text(sys.stdin.read(), "standard input")
        return parse_json_text(read_text(source.path), str(source.path))
    if isinstance(source, NixFileSource):
        read_text(source.path)  # a clear error for a missing file, before Nix's own
        return nix.eval_json_file(str(source.path.resolve()), apply=apply_expr(), opts=opts)
    return nix.eval_json_installable(source.installable, apply=apply_expr(), opts=opts)


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def read_text(path: Path) -> str:
    """A regular file's text, or a SourceError a user can act on.

    Anything else is refused before it is opened: reading a FIFO or a terminal would wait
    forever (and so would Nix), a device could be endless.
    """
    try:
        mode = path.stat().st_mode
        for test, kind in _KINDS:
            if test(mode):
                raise SourceError(f"{path}: is {kind}, not a regular file")
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SourceError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SourceError(f"{path}: cannot read: {e}") from None
