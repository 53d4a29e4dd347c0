"""Typed calls to the ``nix`` command (Nix >= 2.8, current Nix, Lix).

Each operation is an argv builder (pure, so tests can assert whole command lines) plus a small
function that runs it through ``process.run`` and checks the result. Flags live in one
``NixOptions`` value and are rendered in one place.
"""

from __future__ import annotations

import collections
import functools
import json
import os
import re
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import resources
from typing import Literal, TypeAlias

import attrs

from vmsilo_nix import process
from vmsilo_nix.errors import NixError, NixNotFoundError, ProgramNotFoundError, VmsiloError

JSON: TypeAlias = "dict[str, JSON] | list[JSON] | str | int | float | bool | None"
AttrPath: TypeAlias = tuple[str, ...]

#: Every call enables these; flake refs need ``flakes``, ``nix eval``/``build`` ``nix-command``.
EXPERIMENTAL_FEATURES = ("nix-command", "flakes")


def _option_pairs(
    value: Mapping[str, str] | Iterable[tuple[str, str]],
) -> tuple[tuple[str, str], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    return tuple((str(k), str(v)) for k, v in items)


@attrs.frozen
class NixOptions:
    """Flags every nix call gets: which executable, ``--option`` pairs (in order), tracing."""

    program: str = "nix"
    options: tuple[tuple[str, str], ...] = attrs.field(default=(), converter=_option_pairs)
    show_trace: bool = False

    def common_flags(self) -> list[str]:
        """The flags shared by every subcommand, rendered once."""
        flags = ["--extra-experimental-features", " ".join(EXPERIMENTAL_FEATURES)]
        for key, value in self.options:
            flags += ["--option", key, value]
        if self.show_trace:
            flags.append("--show-trace")
        return flags

    def argv(self, *args: str) -> list[str]:
        """``nix <common flags> <args>``."""
        return [self.program, *self.common_flags(), *args]


DEFAULT_OPTIONS = NixOptions()


class NixOutputError(NixError):
    """Nix exited successfully but printed something we cannot use."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str, message: str) -> None:
        super().__init__(argv, returncode, stderr)
        self.args = (message,)


# --- version --------------------------------------------------------------------------------


@attrs.frozen(order=True)
class NixVersion:
    """Which Nix we talk to; decides how build targets are spelled."""

    version: tuple[int, ...]
    implementation: Literal["nix", "lix"] = "nix"

    @property
    def drv_needs_outputs_suffix(self) -> bool:
        """Nix >= 2.15 and Lix build a bare ``.drv`` path as the file itself; ``^*`` = outputs.

        Older Nix (2.8 here) builds a bare ``.drv``'s outputs and does not understand ``^*``.
        """
        return self.implementation == "lix" or self.version >= (2, 15)


_VERSION_RE = re.compile(r"(\d+(?:\.\d+)*)")


def parse_version(text: str) -> NixVersion:
    """Parse ``nix --version``: ``nix (Nix) 2.8.0``, ``nix (Lix, like Nix) 2.91.1``, ...

    The version is the last word of the first line (suffixes like ``pre2024...`` dropped).
    """
    first = text.strip().splitlines()[0] if text.strip() else ""
    words = first.split()
    match = _VERSION_RE.match(words[-1]) if words else None
    if match is None:
        raise VmsiloError(f"cannot understand the output of 'nix --version': {first!r}")
    version = tuple(int(part) for part in match.group(1).split("."))
    implementation: Literal["nix", "lix"] = "lix" if "lix" in first.lower() else "nix"
    return NixVersion(version=version, implementation=implementation)


def nix_version(opts: NixOptions = DEFAULT_OPTIONS) -> NixVersion:
    """The version of ``opts.program``, asked once per resolved executable path."""
    path = shutil.which(opts.program)
    if path is None:
        raise NixNotFoundError(opts.program)
    return _version_of(path)


@functools.cache
def _version_of(path: str) -> NixVersion:
    argv = [path, "--version"]
    result = process.run(argv)
    if result.returncode != 0:
        raise NixError(argv, result.returncode, result.stderr)
    return parse_version(result.stdout)


# --- evaluation -----------------------------------------------------------------------------


def _eval_args(target: Sequence[str], apply: str | None, impure: bool) -> list[str]:
    args = ["eval", "--json", *target]
    if impure:
        args.append("--impure")
    if apply is not None:
        args += ["--apply", apply]
    return args


def eval_installable_argv(
    installable: str, *, apply: str | None = None, opts: NixOptions = DEFAULT_OPTIONS
) -> list[str]:
    """``nix eval --json INSTALLABLE [--apply EXPR]``; e.g. ``path:/src#nixosConfigurations``."""
    return opts.argv(*_eval_args([installable], apply, impure=False))


def eval_file_argv(
    path: str, attr: str = "", *, apply: str | None = None, opts: NixOptions = DEFAULT_OPTIONS
) -> list[str]:
    """``nix eval --json --file PATH [ATTR] [--apply EXPR]``; ATTR is a dotted attribute path."""
    target = ["--file", str(path), *([attr] if attr else [])]
    return opts.argv(*_eval_args(target, apply, impure=False))


def eval_expr_argv(
    expr: str,
    *,
    apply: str | None = None,
    impure: bool = False,
    opts: NixOptions = DEFAULT_OPTIONS,
) -> list[str]:
    """``nix eval --json --expr EXPR [--impure] [--apply F]`` (``--expr`` is pure by default)."""
    return opts.argv(*_eval_args(["--expr", expr], apply, impure))


def run_json(argv: Sequence[str]) -> JSON:
    """Run a nix command that prints one JSON document; the exit status is checked first.

    A failing ``nix eval --json`` may already have printed part of a document, so stdout of a
    failed command is never parsed.
    """
    return _parse_json(_run_checked(argv))


def _run_checked(argv: Sequence[str]) -> process.Completed:
    try:
        result = process.run(argv)
    except ProgramNotFoundError as err:
        raise NixNotFoundError(argv[0]) from err  # whatever its name, it was to be Nix
    if result.returncode != 0:
        raise NixError(argv, result.returncode, result.stderr)
    return result


def _parse_json(result: process.Completed) -> JSON:
    argv = result.argv
    try:
        value: JSON = json.loads(result.stdout)
    except json.JSONDecodeError as err:
        raise NixOutputError(
            argv,
            result.returncode,
            result.stderr,
            f"nix printed output that is not JSON ({err}): {result.stdout[:200]!r}",
        ) from err
    except RecursionError:
        raise NixOutputError(
            argv,
            result.returncode,
            result.stderr,
            "the configuration is nested too deeply to read (no option holds such a value)",
        ) from None
    return value


def eval_json_installable(
    installable: str, *, apply: str | None = None, opts: NixOptions = DEFAULT_OPTIONS
) -> JSON:
    """Evaluate a flake installable to JSON."""
    return run_json(eval_installable_argv(installable, apply=apply, opts=opts))


def eval_json_file(
    path: str, attr: str = "", *, apply: str | None = None, opts: NixOptions = DEFAULT_OPTIONS
) -> JSON:
    """Evaluate an attribute of a Nix file (a function is called with its defaults) to JSON."""
    return run_json(eval_file_argv(path, attr, apply=apply, opts=opts))


def eval_json_expr(
    expr: str,
    *,
    apply: str | None = None,
    impure: bool = False,
    opts: NixOptions = DEFAULT_OPTIONS,
) -> JSON:
    """Evaluate a Nix expression to JSON."""
    return run_json(eval_expr_argv(expr, apply=apply, impure=impure, opts=opts))


#: A Nix identifier: an attribute name that needs no quotes in an attribute path.
_PLAIN_ATTR = re.compile(r"[A-Za-z_][A-Za-z0-9_'-]*")


def is_plain_attr(name: str) -> bool:
    """Whether ``name`` can stand bare in a Nix attribute path (else it must be quoted)."""
    return _PLAIN_ATTR.fullmatch(name) is not None


def nix_string(text: str) -> str:
    """A Nix string literal for ``text``: how data (never code) enters an expression."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${")
    # The lexer turns a raw carriage return into a newline; its escape keeps it.
    escaped = escaped.replace("\r", "\\r")
    return f'"{escaped}"'


def split_attr_path(text: str) -> list[str]:
    """``a."b.c".d`` -> ``["a", "b.c", "d"]``: a Nix attribute path as the names in it."""
    names: list[str] = []
    current, quoted, escaped, started = "", False, False, False
    for ch in text:
        if escaped:
            current, escaped = current + ch, False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted, started = not quoted, True
        elif ch == "." and not quoted:
            names.append(current)
            current, started = "", False
        else:
            current, started = current + ch, True
    if quoted:
        raise VmsiloError(f"unbalanced quote in attribute path {text!r}")
    if current or started:
        names.append(current)
    return names


def nix_value(value: JSON) -> str:
    """A Nix expression producing ``value``, via ``builtins.fromJSON`` of a string literal."""
    return f"(builtins.fromJSON {nix_string(json.dumps(value))})"


# --- derivations of many attributes ---------------------------------------------------------


@attrs.frozen
class FlakeRef:
    """A flake output, e.g. ``path:/src#vmsilo.rootfs`` (evaluated in pure mode)."""

    ref: str


@attrs.frozen
class NixExpr:
    """A Nix expression; ``impure`` allows ``builtins.currentSystem``, absolute paths, ..."""

    expr: str
    impure: bool = False


Source: TypeAlias = FlakeRef | NixExpr


@attrs.frozen
class Drv:
    """A derivation found at ``attr_path``; output store paths may be None (CA derivations)."""

    attr_path: AttrPath
    name: str
    system: str
    drv_path: str
    outputs: Mapping[str, str | None]


@attrs.frozen
class EvalFailure:
    """Evaluating the attribute at ``attr_path`` failed; ``error`` is Nix's message."""

    attr_path: AttrPath
    error: str


DrvResult: TypeAlias = Drv | EvalFailure


def _eval_source(source: Source, apply: str, opts: NixOptions) -> JSON:
    match source:
        case FlakeRef(ref):
            return eval_json_installable(ref, apply=apply, opts=opts)
        case NixExpr(expr, impure):
            return eval_json_expr(expr, apply=apply, impure=impure, opts=opts)


def shipped_expr(name: str) -> str:
    """The text of a .nix file shipped in ``vmsilo_nix/nixeval/exprs/``.

    It is passed as text (``--apply``), never imported by path: a flake evaluation runs in pure
    mode, where Nix may not read files outside the store.
    """
    return resources.files("vmsilo_nix.nixeval").joinpath("exprs", name).read_text(encoding="utf-8")


def _then(select: str | None, f: str) -> str:
    """``f``, or ``x: f (select x)``: a function applied to the source's value first."""
    return f if select is None else f"(value: {f} (({select}) value))"


def drvs_apply(select: str | None = None) -> str:
    """The ``--apply`` function listing every derivation of a set (see ``exprs/drvs.nix``)."""
    return _then(select, f"({shipped_expr('drvs.nix')}).all")


def drv_at_apply(attr_path: AttrPath, select: str | None = None) -> str:
    """The ``--apply`` function giving the derivation at one attribute path."""
    return _then(select, f"(({shipped_expr('drvs.nix')}).at {nix_value(list(attr_path))})")


def eval_drvs(
    source: Source, *, select: str | None = None, opts: NixOptions = DEFAULT_OPTIONS
) -> dict[AttrPath, DrvResult]:
    """Derivations of every attribute of ``source``, keyed by attribute path, in ONE eval.

    ``select`` is a Nix function applied to the source's value first (shipped text). This is
    the fallback when nix-eval-jobs is missing and gives the same mapping. A ``throw`` or
    failed ``assert`` (how NixOS reports bad configurations) fails only its attribute; other
    errors fail the whole call with ``NixError``.
    """
    listing = _eval_source(source, drvs_apply(select), opts)
    if not isinstance(listing, list):
        raise VmsiloError(f"derivation listing is not a list: {listing!r:.200}")
    results: dict[AttrPath, DrvResult] = {}
    for entry in listing:
        result = drv_result_from_json(entry)
        if isinstance(result, EvalFailure):
            result = _explain_failure(source, result.attr_path, select, opts)
        results[result.attr_path] = result
    return results


def _explain_failure(
    source: Source, attr_path: AttrPath, select: str | None, opts: NixOptions
) -> DrvResult:
    try:
        return drv_result_from_json(_eval_source(source, drv_at_apply(attr_path, select), opts))
    except NixError as err:
        return EvalFailure(attr_path, str(err))


def drv_result_from_json(entry: JSON) -> DrvResult:
    """One derivation record, ``{"attrPath", "drvPath", "name", "system", "outputs"}`` or
    ``{"attrPath", "error"}``; extra keys are ignored. Raises ``ValueError`` on bad shapes.
    """
    if not isinstance(entry, dict):
        raise ValueError(f"expected a JSON object, got {type(entry).__name__}")
    path = entry.get("attrPath")
    if not isinstance(path, list) or not all(isinstance(p, str) for p in path):
        raise ValueError("'attrPath' is missing or not a list of strings")
    attr_path = tuple(p for p in path if isinstance(p, str))
    if "error" in entry:
        error = entry["error"]
        return EvalFailure(attr_path, error if isinstance(error, str) else "evaluation failed")
    fields = {}
    for key in ("drvPath", "name", "system"):
        value = entry.get(key)
        if not isinstance(value, str):
            raise ValueError(f"{key!r} is missing or not a string")
        fields[key] = value
    outputs = entry.get("outputs")
    if not isinstance(outputs, dict) or not all(
        isinstance(v, str) or v is None for v in outputs.values()
    ):
        raise ValueError("'outputs' is missing or not an object of store paths")
    return Drv(
        attr_path=attr_path,
        name=fields["name"],
        system=fields["system"],
        drv_path=fields["drvPath"],
        outputs={k: v for k, v in outputs.items() if isinstance(v, str) or v is None},
    )


# --- building -------------------------------------------------------------------------------


def build_argv(
    drv_paths: Sequence[str], version: NixVersion, *, opts: NixOptions = DEFAULT_OPTIONS
) -> list[str]:
    """``nix build --json --no-link --keep-going --log-format internal-json DRV...``.

    Each ``DRV`` is spelled to mean "its outputs". ``--keep-going`` builds everything that can
    be built when something fails; the machine-readable log goes to stderr, line by line.
    """
    suffix = "^*" if version.drv_needs_outputs_suffix else ""
    return opts.argv(
        "build",
        "--json",
        "--no-link",
        "--keep-going",
        "--log-format",
        "internal-json",
        *(f"{p}{suffix}" for p in drv_paths),
    )


OnLogLine = Callable[[str], None]


@attrs.frozen
class BuildOutcome:
    """How a build ended: ``built`` maps each drvPath to its outputs when every build
    succeeded; after a failure it is None (what did build is in the store), and ``error`` is
    Nix's message."""

    built: Mapping[str, Mapping[str, str]] | None
    error: NixError | None = None


def build(
    drv_paths: Iterable[str], on_log: OnLogLine, *, opts: NixOptions = DEFAULT_OPTIONS
) -> BuildOutcome:
    """Build derivations; every stderr line (Nix's internal-json log) goes to ``on_log``.

    Results come back in any order, so they are matched by ``drvPath``, never by position.
    A build failure is an outcome, not an exception: the other derivations were still built.
    Nix and every builder it started are stopped if we are interrupted.
    """
    wanted = list(dict.fromkeys(drv_paths))
    if not wanted:
        return BuildOutcome(built={})
    argv = build_argv(wanted, nix_version(opts), opts=opts)
    tail: collections.deque[str] = collections.deque(maxlen=200)
    with process.spawn_lines(argv, lines_from="stderr") as stream:
        for line in stream:
            tail.append(line)
            on_log(line)
    if stream.returncode != 0:
        return BuildOutcome(None, NixError(argv, stream.returncode or 1, _plain_log(tail)))
    try:
        return BuildOutcome(parse_build_output(json.loads(stream.stdout), wanted))
    except (ValueError, json.JSONDecodeError) as err:
        raise NixOutputError(
            argv, 0, stream.stderr, f"unexpected 'nix build --json' output: {err}"
        ) from err


_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def strip_ansi(text: str) -> str:
    return _ANSI_RE.sub("", text)


def _plain_log(lines: Iterable[str]) -> str:
    """Nix's human messages out of an internal-json log (what ``NixError`` shows)."""
    out = []
    for line in lines:
        if line.startswith("@nix "):
            try:
                entry = json.loads(line[5:])
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and entry.get("action") == "msg":
                out.append(strip_ansi(str(entry.get("msg", ""))))
        else:
            out.append(line)
    return "\n".join(out)


def nix_store(opts: NixOptions = DEFAULT_OPTIONS) -> str:
    """The ``nix-store`` of the ``nix`` in use: installed beside it (a legacy command every
    Nix and Lix still ships), else the one on PATH."""
    beside = os.path.join(os.path.dirname(opts.program), "nix-store")
    return beside if os.path.dirname(opts.program) and os.path.exists(beside) else "nix-store"


def requisites_argv(paths: Sequence[str], *, opts: NixOptions = DEFAULT_OPTIONS) -> list[str]:
    """``nix-store --query --requisites PATH...``: every derivation a derivation needs."""
    return [nix_store(opts), "--query", "--requisites", *paths]


def requisites(paths: Sequence[str], *, opts: NixOptions = DEFAULT_OPTIONS) -> set[str]:
    """The closure of ``paths`` (for ``.drv`` files: every derivation they need built)."""
    if not paths:
        return set()
    return set(_run_checked(requisites_argv(paths, opts=opts)).stdout.split())


def parse_build_output(output: JSON, wanted: Sequence[str]) -> dict[str, dict[str, str]]:
    """Match ``nix build --json`` records to the requested ``.drv`` paths."""
    if not isinstance(output, list):
        raise ValueError("expected a JSON list")
    built: dict[str, dict[str, str]] = {}
    for record in output:
        if not isinstance(record, dict):
            raise ValueError(f"expected an object, got {record!r:.100}")
        drv, outputs = record.get("drvPath"), record.get("outputs")
        if not isinstance(drv, str):
            raise ValueError(f"record without a drvPath string: {record!r:.200}")
        if not isinstance(outputs, dict) or not all(isinstance(v, str) for v in outputs.values()):
            raise ValueError(f"record for {drv} without output paths: {record!r:.200}")
        built[drv] = {k: v for k, v in outputs.items() if isinstance(v, str)}
    missing = [p for p in wanted if p not in built]
    if missing:
        raise ValueError(f"no result for {', '.join(missing)}")
    return {p: built[p] for p in wanted}
