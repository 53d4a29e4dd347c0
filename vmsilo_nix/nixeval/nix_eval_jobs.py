"""Optional parallel evaluation with nix-eval-jobs, falling back to one plain ``nix eval``.

nix-eval-jobs prints one JSON line per derivation, in completion order:
``{"attr", "attrPath", "name", "system", "drvPath", "outputs"}`` or ``{"attr", "attrPath",
"error"}``. Results are keyed on ``attrPath`` (never on order). The child runs under
``process.spawn_lines``, so it and its workers die with us, Ctrl-C included.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable

from vmsilo_nix import process
from vmsilo_nix.errors import NixError, VmsiloError
from vmsilo_nix.nixeval import nix
from vmsilo_nix.nixeval.nix import (
    DEFAULT_OPTIONS,
    AttrPath,
    DrvResult,
    EvalFailure,
    FlakeRef,
    NixExpr,
    NixOptions,
    Source,
)

PROGRAM = "nix-eval-jobs"
#: nix-eval-jobs' own default; a worker above it is restarted, which keeps memory bounded.
DEFAULT_MAX_MEMORY_MIB = 4096

OnResult = Callable[[DrvResult], None]


class EvalJobsOutputError(VmsiloError):
    """nix-eval-jobs printed a line we cannot understand."""


def available(program: str = PROGRAM) -> bool:
    """Whether nix-eval-jobs is on PATH (otherwise callers use ``nix.eval_drvs``)."""
    return shutil.which(program) is not None


def default_workers() -> int:
    """A few workers: each can use ``max_memory_mib``, so not one per CPU on big machines."""
    return max(1, min(os.cpu_count() or 1, 4))


def _source_args(source: Source, select: str | None = None) -> list[str]:
    if select is not None:
        # nix-eval-jobs cannot apply a function to what it evaluates: the expression does.
        impure, expr = _source_expr(source)
        return [*(["--impure"] if impure else []), "--expr", f"({select}) ({expr})"]
    match source:
        case FlakeRef(ref):
            return ["--flake", ref]
        case NixExpr(expr, impure):
            return [*(["--impure"] if impure else []), "--expr", expr]


def _source_expr(source: Source) -> tuple[bool, str]:
    """``source``'s value as an expression, and whether it needs ``--impure``."""
    match source:
        case FlakeRef(ref):
            flake, _, attr = ref.partition("#")
            if flake.startswith((".", "/")):
                flake = os.path.abspath(flake)  # getFlake wants absolute paths
            path: nix.JSON = list(nix.split_attr_path(attr))
            select = nix.shipped_expr("flake-select.nix")
            return True, f"({select}) {nix.nix_value(flake)} {nix.nix_value(path)}"
        case NixExpr(expr, impure):
            return impure, expr


def evaluate_argv(
    source: Source,
    *,
    select: str | None = None,
    workers: int,
    max_memory_mib: int,
    gc_roots_dir: str | None = None,
    opts: NixOptions = DEFAULT_OPTIONS,
    program: str = PROGRAM,
) -> list[str]:
    """The nix-eval-jobs command line; workers and memory limit are always explicit."""
    argv = [program, "--workers", str(workers), "--max-memory-size", str(max_memory_mib)]
    if gc_roots_dir is not None:
        argv += ["--gc-roots-dir", gc_roots_dir]
    # ``--option`` is understood by every version; ``extra-`` appends to nix.conf's features.
    argv += ["--option", "extra-experimental-features", " ".join(nix.EXPERIMENTAL_FEATURES)]
    for key, value in opts.options:
        argv += ["--option", key, value]
    if opts.show_trace:
        argv.append("--show-trace")
    return argv + _source_args(source, select)


def parse_line(line: str, lineno: int = 0) -> DrvResult:
    """One stdout line of nix-eval-jobs; a bad line raises ``EvalJobsOutputError``."""
    where = f" (line {lineno})" if lineno else ""
    try:
        entry = json.loads(line)
    except json.JSONDecodeError:
        raise EvalJobsOutputError(
            f"nix-eval-jobs printed a line that is not JSON{where}: {line[:200]!r}"
        ) from None
    try:
        result = nix.drv_result_from_json(entry)
    except ValueError as err:
        raise EvalJobsOutputError(
            f"unexpected nix-eval-jobs output{where}: {err}: {line[:200]!r}"
        ) from None
    if isinstance(result, EvalFailure):
        return EvalFailure(result.attr_path, nix.strip_ansi(result.error).strip())
    return result


def evaluate(
    source: Source,
    *,
    select: str | None = None,
    workers: int | None = None,
    max_memory_mib: int = DEFAULT_MAX_MEMORY_MIB,
    gc_roots_dir: str | None = None,
    opts: NixOptions = DEFAULT_OPTIONS,
    program: str = PROGRAM,
    on_result: OnResult | None = None,
) -> dict[AttrPath, DrvResult]:
    """Run nix-eval-jobs on ``source``; ``on_result`` sees each result as it arrives.

    If anything raises meanwhile (a bad line, ``on_result``, Ctrl-C) nix-eval-jobs and its
    workers are stopped before the exception propagates. A non-zero exit is a ``NixError``.
    """
    argv = evaluate_argv(
        source,
        select=select,
        workers=workers if workers is not None else default_workers(),
        max_memory_mib=max_memory_mib,
        gc_roots_dir=gc_roots_dir,
        opts=opts,
        program=program,
    )
    results: dict[AttrPath, DrvResult] = {}
    with process.spawn_lines(argv) as stream:
        for lineno, line in enumerate(stream, 1):
            if not line.strip():
                continue
            result = parse_line(line, lineno)
            results[result.attr_path] = result
            if on_result is not None:
                on_result(result)
    if stream.returncode != 0:
        raise NixError(argv, stream.returncode or 0, stream.stderr)
    return results


def eval_drvs(
    source: Source,
    *,
    select: str | None = None,
    workers: int | None = None,
    max_memory_mib: int = DEFAULT_MAX_MEMORY_MIB,
    opts: NixOptions = DEFAULT_OPTIONS,
    on_result: OnResult | None = None,
    use_eval_jobs: bool | None = None,
) -> dict[AttrPath, DrvResult]:
    """Derivations of ``source`` by attribute path: nix-eval-jobs if on PATH, else plain nix.

    ``select`` is a Nix function applied to the source's value first. ``use_eval_jobs``
    forces the choice (None: decide by PATH). Both give the same mapping.
    """
    if use_eval_jobs is None:
        use_eval_jobs = available()
    if use_eval_jobs:
        return evaluate(
            source,
            select=select,
            workers=workers,
            max_memory_mib=max_memory_mib,
            opts=opts,
            on_result=on_result,
        )
    results = nix.eval_drvs(source, select=select, opts=opts)
    if on_result is not None:
        for result in results.values():
            on_result(result)
    return results
