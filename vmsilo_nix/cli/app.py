"""The ``vmsilo`` command line.

Exit status: 0 success; 1 the configuration is invalid; 2 usage error; 3 the configuration could
not be read or evaluated (Nix error, bad JSON, missing file); 4 a required program (nix) is
missing; 5 an output could not be written (or is a directory vmsilo did not write); 130
interrupted (SIGINT), 143 and 129 stopped by SIGTERM and SIGHUP. Whatever stops it, no child
process (nix) is left running.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import gc
import importlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, TextIO, cast

import attrs
import orjson

from vmsilo_nix import __version__, facts, process
from vmsilo_nix.errors import (
    ConfigError,
    NixError,
    Problem,
    ProgramNotFoundError,
    VmsiloError,
    WriteError,
)
from vmsilo_nix.files import write_atomically

# The engine (configuration, Nix, planners) is imported by the commands that use it, not here:
# vm-run and vm-shell start `vmsilo channel`, which needs none of it, for every command they
# run (the imports below this line cost most of the start-up of the others).
if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from vmsilo_nix import pipeline
    from vmsilo_nix.build import run as build_run
    from vmsilo_nix.build.planner import BuildPlan, VmTargets
    from vmsilo_nix.config.artifacts import Artifacts
    from vmsilo_nix.config.model import Config, Vm
    from vmsilo_nix.nixeval import nix
    from vmsilo_nix.plan import host as plan

EXIT_OK, EXIT_INVALID, EXIT_USAGE, EXIT_SOURCE, EXIT_MISSING, EXIT_WRITE = 0, 1, 2, 3, 4, 5
EXIT_INTERRUPTED = 130
EXIT_BUILD_FAILED = 1
DEFAULT_ARTIFACTS = "vmsilo-artifacts.json"


class UsageError(VmsiloError):
    """The command line names something that does not exist (exit status 2)."""


def _source_args(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("configuration source (one of)")
    ex = group.add_mutually_exclusive_group(required=True)
    ex.add_argument(
        "--flake",
        metavar="REF#HOST",
        help="a flake's NixOS host: REF#nixosConfigurations.HOST.config.programs.vmsilo",
    )
    ex.add_argument(
        "--file",
        metavar="PATH",
        help="a .nix file evaluating to the programs.vmsilo attribute set, or a .json file "
        "with the same data (- reads JSON from standard input)",
    )


def _artifacts_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--artifacts",
        metavar="FILE",
        help="JSON of store paths Nix built (program packages, kernels, initrds, root images); "
        "without it, programs run from PATH and boot artifacts are reported unbuilt",
    )


def _host_args(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("the host whose VMs are built (one of)")
    ex = group.add_mutually_exclusive_group(required=True)
    ex.add_argument(
        "--flake",
        metavar="REF#HOST",
        help="a flake's NixOS host importing vmsilo's module: what its "
        "programs.vmsilo.package names is built",
    )
    ex.add_argument(
        "--file",
        metavar="PATH.nix",
        help="a .nix file evaluating to the programs.vmsilo attribute set; its VMs' guest "
        "systems are evaluated with the nixpkgs of --nixpkgs",
    )


def _build_args(p: argparse.ArgumentParser) -> None:
    from vmsilo_nix.nixeval import nix_eval_jobs  # noqa: PLC0415 (the engine: see the imports)

    group = p.add_argument_group("building")
    group.add_argument(
        "--nixpkgs",
        metavar="PATH",
        help="with --file: the nixpkgs tree to build the guest systems from",
    )
    group.add_argument(
        "--artifacts-out",
        dest="artifacts_out",
        metavar="FILE",
        default=None,
        help=f"where to write the artifacts JSON (default: {DEFAULT_ARTIFACTS}); entries of "
        "VMs not built this time are kept",
    )
    roots = group.add_mutually_exclusive_group()
    roots.add_argument(
        "--out-link",
        metavar="DIR",
        default=None,
        help="the directory of GC roots (symlinks, as nix build --out-link makes) that keep "
        "what was built from nix-collect-garbage (default: the artifacts file's name with "
        ".gcroots for .json)",
    )
    roots.add_argument(
        "--no-out-link",
        action="store_true",
        help="register no GC roots: the next garbage collection may delete what was built",
    )
    group.add_argument(
        "--workers",
        type=int,
        metavar="N",
        default=None,
        help="nix-eval-jobs workers (default: up to 4)",
    )
    group.add_argument(
        "--max-memory-size",
        type=int,
        metavar="MIB",
        default=nix_eval_jobs.DEFAULT_MAX_MEMORY_MIB,
        help="restart a nix-eval-jobs worker above this much memory",
    )
    group.add_argument(
        "--eval-jobs",
        dest="eval_jobs",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="evaluate with nix-eval-jobs (default: when it is on PATH)",
    )


def _json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print JSON for scripts instead of text")


# Commands whose arguments (and code) live with what they run; they are imported only when
# named, so that check, plan and the rest start without them.
DELEGATED = {
    "wayland-context": "vmsilo_nix.wayland_context.cli",
    "channel": "vmsilo_nix.cli.channel",
    "guest-setup": "vmsilo_nix.guest.setup",
}


def _delegate(command: str) -> ModuleType:
    return importlib.import_module(DELEGATED[command])


def _global_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--debug",
        action="store_true",
        help="on Nix errors show the whole trace and command line",
    )
    p.add_argument(
        "--option",
        nargs=2,
        action="append",
        default=[],
        metavar=("NAME", "VALUE"),
        help="pass a Nix setting to every nix call (for example: --option substituters '')",
    )


def _check_command(p: argparse.ArgumentParser) -> None:
    _source_args(p)
    _json_arg(p)
    p.add_argument(
        "--strict", action="store_true", help="refuse warnings too (exit 1), not only errors"
    )
    p.add_argument(
        "--host-paths",
        action="store_true",
        help="also warn of shared directories this machine lacks (for the machine the VMs "
        "run on; the host module's switch check passes it)",
    )


def _eval_command(p: argparse.ArgumentParser) -> None:
    _source_args(p)


def _plan_command(p: argparse.ArgumentParser) -> None:
    p.add_argument("vms", nargs="*", metavar="VM", help="only these VMs (default: all)")
    _source_args(p)
    _artifacts_arg(p)
    _json_arg(p)


def _show_command(p: argparse.ArgumentParser) -> None:
    p.add_argument("vm", metavar="VM")
    _source_args(p)
    _artifacts_arg(p)
    _json_arg(p)


def _generate_command(p: argparse.ArgumentParser) -> None:
    _source_args(p)
    p.add_argument("--out", "-o", required=True, metavar="DIR", help="the tree's directory")
    _artifacts_arg(p)
    p.add_argument(
        "--build",
        action="store_true",
        help="first build every VM (as `vmsilo build`) and use what it built",
    )
    _build_args(p)
    _json_arg(p)


def _build_command(p: argparse.ArgumentParser) -> None:
    p.add_argument("vms", nargs="*", metavar="VM", help="only these VMs (default: all)")
    _host_args(p)
    _build_args(p)
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="evaluate and list what would be built; build nothing, write nothing",
    )
    _json_arg(p)


def _status_command(p: argparse.ArgumentParser) -> None:
    p.add_argument("vms", nargs="*", metavar="VM", help="only these VMs (default: all)")
    p.add_argument(
        "--flake",
        metavar="REF#HOST",
        help="also compare with this flake's configuration (finds stale VMs)",
    )
    p.add_argument(
        "--tree",
        metavar="DIR",
        help="the installed package tree (default: the one vm-status on PATH belongs to)",
    )
    _json_arg(p)


def _options_command(p: argparse.ArgumentParser) -> None:
    from vmsilo_nix.config import options as options_render  # noqa: PLC0415 (the engine: see the imports)

    p.add_argument("--format", choices=sorted(options_render.RENDERERS), default="nix")
    p.add_argument("--output", "-o", metavar="FILE", help="write to FILE (atomically)")


def _facts_command(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output", "-o", metavar="FILE", help="write to FILE (atomically)")


@attrs.frozen
class _Command:
    help: str
    description: str
    add: Callable[[argparse.ArgumentParser], None]  # the command's own arguments
    run: Callable[[argparse.Namespace, Console, Console], int]


def _delegated(command: str, help: str, description: str) -> _Command:
    """A command whose arguments and code live in its own room (``DELEGATED``)."""
    return _Command(
        help=help,
        description=description,
        add=lambda p: _delegate(command).add_arguments(p),
        run=lambda args, out, err: int(_delegate(command).run(args)),
    )


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line. Given ``argv`` that names a command, only that command's parser
    is made (argparse spends a fraction of a millisecond on each); the delegated commands get
    their arguments only when ``argv`` names them (any word counts, so a real use of one is
    never missed)."""
    parser = argparse.ArgumentParser(
        prog="vmsilo",
        description="Check, inspect and generate vmsilo VM configurations.",
        epilog="Exit status: 0 ok, 1 invalid configuration, 2 usage error, 3 configuration "
        "could not be read or evaluated, 4 nix not installed, 5 output could not be written, "
        "130 interrupted, 143 or 129 "
        "stopped by SIGTERM or SIGHUP.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _global_args(parser)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    named = None if argv is None else _command_of(argv)
    for name, command in COMMANDS.items():
        if named is not None and name != named:
            continue
        p = sub.add_parser(name, help=command.help, description=command.description)
        if name not in DELEGATED or argv is None or name in argv:
            command.add(p)
    return parser


class _Unsure(Exception):
    pass


class _CommandFinder(argparse.ArgumentParser):
    """The global options alone, to find which command ``argv`` runs; never prints or exits."""

    def error(self, message: str) -> NoReturn:
        raise _Unsure(message)


def _command_of(argv: Sequence[str]) -> str | None:
    """The command ``argv`` runs, read with the same global options as the real parser; None
    when it names none or an unknown one (then every command's parser is made, for the help
    listing and the "invalid choice" message)."""
    finder = _CommandFinder(add_help=False, exit_on_error=False)
    _global_args(finder)
    finder.add_argument("command", nargs="?")
    try:
        known, _ = finder.parse_known_args(list(argv))
    except (_Unsure, argparse.ArgumentError):
        return None
    command = known.command
    return command if isinstance(command, str) and command in COMMANDS else None


def _nix_options(args: argparse.Namespace) -> nix.NixOptions:
    from vmsilo_nix.nixeval import nix  # noqa: PLC0415 (the engine: see the imports)

    return nix.NixOptions(options=tuple(args.option), show_trace=args.debug)


@contextlib.contextmanager
def _progress(console: Console, text: str) -> Iterator[None]:
    """A spinner on stderr while Nix works; nothing when stderr is not a terminal."""
    if _isatty(sys.stderr) and console.is_terminal:
        with console.status(text):
            yield
    else:
        yield


def _load(
    args: argparse.Namespace, err: Console, artifacts: Artifacts | None = None
) -> pipeline.Checked:
    from vmsilo_nix import pipeline  # noqa: PLC0415 (the engine: see the imports)
    from vmsilo_nix.nixeval import source  # noqa: PLC0415

    src = source.parse_source(flake=args.flake, file=args.file)
    with _progress(err, f"Evaluating {src.describe()}..."):
        checked = pipeline.load_planned(src, _nix_options(args), artifacts)
    _keep(checked)
    _print_warnings(checked.warnings, err)
    return checked


def _print_warnings(warnings: Sequence[Problem], err: Console) -> None:
    for w in warnings:
        err.print(_styled(("warning", "bold yellow"), ": ", (w.path, "bold"), ": ", w.message))


def print_json(data: object, *, sort_keys: bool = False) -> None:
    """Indented for a terminal, compact for pipes and files; UTF-8 either way.

    orjson rather than the standard library: a 1000-VM plan is 13 MB of JSON, which orjson
    encodes about five times faster (docs/development.md). It refuses what JSON text can
    still carry (a lone surrogate from undecodable bytes, an integer beyond 64 bits); the
    standard encoder writes those as escapes."""
    option = (orjson.OPT_INDENT_2 if _isatty(sys.stdout) else 0) | (
        orjson.OPT_SORT_KEYS if sort_keys else 0
    )
    try:
        text = orjson.dumps(data, option=option) + b"\n"
    except orjson.JSONEncodeError:
        indent = 2 if option & orjson.OPT_INDENT_2 else None
        text = (json.dumps(data, indent=indent, sort_keys=sort_keys) + "\n").encode()
    try:
        _write_bytes(sys.stdout, text)
    except BrokenPipeError:
        raise
    except OSError as e:  # a full disk, a closed descriptor: the output is incomplete
        raise WriteError(f"cannot write standard output: {e.strerror or e}") from None
    _keep(data)


def _write_bytes(stream: TextIO, data: bytes) -> None:
    binary = getattr(stream, "buffer", None)
    if binary is None:  # a text-only stream (a caller's StringIO)
        stream.write(data.decode())
        return
    stream.flush()  # what was written as text goes first
    binary.write(data)


def _problems_json(problems: Sequence[Problem]) -> list[dict[str, str]]:
    return [{"path": p.path, "message": p.message} for p in problems]


def cmd_check(args: argparse.Namespace, out: Console, err: Console) -> int:
    try:
        checked = _load(args, err)
    except ConfigError as e:
        if args.json:
            print_json({"valid": False, "problems": _problems_json(e.problems), "warnings": []})
        _print_problems(e, err)
        return EXIT_INVALID
    config, warnings = checked.config, checked.warnings
    if args.host_paths:
        from vmsilo_nix import pipeline  # noqa: PLC0415 (the engine: see the imports)

        here = pipeline.host_path_warnings(config)
        _print_warnings(here, err)
        warnings = (*warnings, *here)
    refused = bool(warnings) and args.strict
    if args.json:
        print_json(
            {
                "valid": not refused,
                "problems": [],
                "warnings": _problems_json(warnings),
                "vms": [vm.name for vm in config.nixos_vms],
            }
        )
    elif refused:
        n = len(warnings)
        _error(err, f"{n} warning{'s' if n != 1 else ''}, and --strict refuses warnings")
    else:
        summary = _vm_summary(config.nixos_vms)
        note = f" ({len(warnings)} warning{'s' if len(warnings) != 1 else ''})" if warnings else ""
        out.print(_styled(("valid", "green"), ": " + summary + note))
    return EXIT_INVALID if refused else EXIT_OK


def _vm_summary(vms: Sequence[Vm], shown: int = 8) -> str:
    names = [vm.name for vm in vms]
    listed = ", ".join(names[:shown]) + (
        f", and {len(names) - shown} more" if len(names) > shown else ""
    )
    return f"{len(names)} VM{'s' if len(names) != 1 else ''}" + (f" ({listed})" if names else "")


def _error(err: Console, message: str) -> None:
    """One error line; user data is never read as rich markup."""
    err.print(_styled(("error", "bold red"), ": ", message))


def _print_problems(e: ConfigError, err: Console) -> None:
    n = len(e.problems)
    _error(err, f"the configuration has {n} problem{'s' if n != 1 else ''}:")
    for p in e.problems:
        err.print(_styled("  ", (p.path, "bold"), ": ", p.message))


def cmd_eval(args: argparse.Namespace, out: Console, err: Console) -> int:
    from vmsilo_nix.config.convert import unstructure  # noqa: PLC0415 (the engine: see the imports)

    config = _load(args, err).config
    print_json(unstructure(config), sort_keys=True)
    return EXIT_OK


def write_output(path: Path, text: str) -> None:
    """An output file the user named, written whole; a failure is the output's (exit 5)."""
    try:
        write_atomically(path, text)
    except OSError as e:
        raise WriteError(f"cannot write {path}: {e.strerror or e}") from None


def cmd_options(args: argparse.Namespace, out: Console, err: Console) -> int:
    from vmsilo_nix.config import options as options_render  # noqa: PLC0415 (the engine: see the imports)

    text = options_render.RENDERERS[args.format]()
    if args.output:
        write_output(Path(args.output), text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def cmd_facts(args: argparse.Namespace, out: Console, err: Console) -> int:
    text = json.dumps(facts.for_nix(), indent=2) + "\n"
    if args.output:
        write_output(Path(args.output), text)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _plan(args: argparse.Namespace, err: Console, wanted: Sequence[str]) -> plan.Plan:
    return _config_and_plan(args, err, wanted)[1]


def _config_and_plan(
    args: argparse.Namespace, err: Console, wanted: Sequence[str] = ()
) -> tuple[Config, plan.Plan, Artifacts]:
    from vmsilo_nix.config.artifacts import Artifacts, load_artifacts, unknown_vms  # noqa: PLC0415 (the engine: see the imports)
    from vmsilo_nix.nixeval import source  # noqa: PLC0415

    artifacts = Artifacts()
    if args.artifacts:
        artifacts = load_artifacts(
            source.parse_json_text(source.read_text(Path(args.artifacts)), args.artifacts)
        )
    checked = _load(args, err, artifacts)
    names = [vm.name for vm in checked.config.nixos_vms]
    if args.artifacts:
        misspelt, stale = unknown_vms(artifacts, names, args.artifacts)
        if misspelt:
            raise ConfigError(misspelt)
        _print_warnings(stale, err)
    for name in wanted:
        _check_vm_name(name, names)
    return checked.config, checked.plan, artifacts


def cmd_plan(args: argparse.Namespace, out: Console, err: Console) -> int:
    from vmsilo_nix.plan import host as plan  # noqa: PLC0415 (the engine: see the imports)

    p = _plan(args, err, args.vms)
    doc = plan.to_json(p, args.vms or None)
    if args.json:
        print_json(doc)
        return EXIT_OK
    from vmsilo_nix.cli import show as show_render  # noqa: PLC0415 (rich tables: not for --json)

    out.print(show_render.summary(doc))
    return EXIT_OK


def cmd_show(args: argparse.Namespace, out: Console, err: Console) -> int:
    from vmsilo_nix.config.paths import OptionPaths  # noqa: PLC0415 (the engine: see the imports)
    from vmsilo_nix.plan import host as plan  # noqa: PLC0415

    p = _plan(args, err, [args.vm])
    if args.json:
        print_json(plan.vm_json(p.vms[args.vm], OptionPaths(p.vm_names)))
        return EXIT_OK
    from vmsilo_nix.cli import show as show_render  # noqa: PLC0415 (rich tables: not for --json)

    for part in show_render.vm(p, args.vm):
        out.print(part)
    return EXIT_OK


def _build_host(args: argparse.Namespace) -> build_run.Host:
    """What `build` (and `generate --build`) builds: a flake's host, or a file's VMs."""
    from vmsilo_nix.build import run as build_run  # noqa: PLC0415 (only build needs it)
    from vmsilo_nix.nixeval import source  # noqa: PLC0415 (the engine: see the imports)

    if args.flake:
        if args.nixpkgs:
            raise UsageError("--nixpkgs goes with --file; a flake's host has its own nixpkgs")
        return source.FlakeSource.parse(args.flake)
    if not args.nixpkgs:
        raise UsageError("--file needs --nixpkgs PATH: the nixpkgs to build the guests from")
    if not args.file.endswith(".nix"):
        raise UsageError(f"building needs a .nix file (its guestConfig is Nix), got {args.file!r}")
    return build_run.FileHost(Path(args.file), Path(args.nixpkgs))


def _build_plan(args: argparse.Namespace, err: Console, wanted: Sequence[str]) -> BuildPlan:
    from vmsilo_nix.build import planner  # noqa: PLC0415
    from vmsilo_nix.build import run as build_run  # noqa: PLC0415 (only build needs it)

    src = _build_host(args)
    with _progress(err, f"Evaluating the guest systems of {src.describe()}..."):
        results = build_run.evaluate(
            src,
            opts=_nix_options(args),
            workers=args.workers,
            max_memory_mib=args.max_memory_size,
            use_eval_jobs=args.eval_jobs,
        )
    names = planner.vm_names(results)
    for name in wanted:
        _check_vm_name(name, names)
    return planner.plan_builds(results, wanted)


def _check_vm_name(name: str, names: Sequence[str]) -> None:
    if name not in names:
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise UsageError(f"no VM is named {name!r}{hint} (VMs: {', '.join(names) or 'none'})")


def _build(
    args: argparse.Namespace, err: Console, wanted: Sequence[str]
) -> tuple[build_run.BuildReport, dict[str, Any]]:
    """Evaluate, build, root and write the artifacts file (also after a partial failure)."""
    from vmsilo_nix.build import artifacts as build_artifacts  # noqa: PLC0415
    from vmsilo_nix.build import display as build_display  # noqa: PLC0415
    from vmsilo_nix.build import roots as build_roots  # noqa: PLC0415
    from vmsilo_nix.build import run as build_run  # noqa: PLC0415 (only build needs it)

    bplan = _build_plan(args, err, wanted)
    opts = _nix_options(args)
    with build_display.show(err, bplan) as on_event:
        report = build_run.build(bplan, opts=opts, on_event=on_event)
    target = Path(args.artifacts_out or DEFAULT_ARTIFACTS)
    doc = build_artifacts.updated(target, report.succeeded, report.packages)
    built = [r.unit for r in report.units.values() if r.status != "failed"]
    roots = None if args.no_out_link else _roots_dir(args)
    made = [] if roots is None else build_roots.register(roots, built, opts)
    write_output(target, build_artifacts.text(doc))
    if roots is not None:
        build_roots.prune(roots, build_artifacts.store_paths(doc), made)
    failed = [r for r in report.results.values() if r.status == "failed"]
    order = _vm_order(args, [r.targets for r in failed])
    for result in failed:
        _print_build_failure(result, order, err)
    for unit in report.units.values():
        if unit.status == "failed" and unit.unit.kind == "package":  # no VM to name
            name = unit.unit.id.removeprefix("package-")
            why = f"{', '.join(unit.failed)} failed to build" if unit.failed else unit.error
            _error(err, f"package {name} was not built: {why}; launchers run {name} from PATH")
    return report, doc


def _roots_dir(args: argparse.Namespace) -> Path:
    """``--out-link DIR``, or beside the artifacts file: ``vmsilo-artifacts.gcroots``."""
    if args.out_link:
        return Path(args.out_link)
    artifacts = Path(args.artifacts_out or DEFAULT_ARTIFACTS)
    return artifacts.with_name(artifacts.name.removesuffix(".json") + ".gcroots")


def _vm_order(args: argparse.Namespace, failed: Sequence[VmTargets]) -> list[str | None]:
    """The VMs' order, when some guest system did not evaluate (to name its options)."""
    from vmsilo_nix.build import run as build_run  # noqa: PLC0415 (only build needs it)

    if not any(t.failures for t in failed):
        return []
    return build_run.vm_order(_build_host(args), _nix_options(args))


def _print_build_failure(
    result: build_run.VmResult, order: Sequence[str | None], err: Console
) -> None:
    from vmsilo_nix.build import run as build_run  # noqa: PLC0415 (only build needs it)

    if result.targets.failures:
        option = build_run.failing_option(result.targets)
        where = build_run.guest_options(result.vm, order, option)
        _error(err, f"VM {result.vm} was not built: {where} does not evaluate: {result.error}")
        return
    if not result.failed:
        _error(err, f"VM {result.vm} was not built: {result.error}")
        return
    for drv, log in result.failed.items():
        _error(err, f"VM {result.vm} was not built: {drv} failed to build")
        if log:
            err.print(_styled("  its log ends with:\n" + "\n".join(f"    {line}" for line in log)))


def cmd_build(args: argparse.Namespace, out: Console, err: Console) -> int:
    if args.dry_run:
        return _dry_run(args, out, err)
    report, _ = _build(args, err, args.vms)
    target = args.artifacts_out or DEFAULT_ARTIFACTS
    if args.json:
        roots = None if args.no_out_link else str(_roots_dir(args))
        print_json({"artifacts": target, "gcRoots": roots, **report.to_json()})
        return EXIT_OK if report.ok else EXIT_BUILD_FAILED
    for name, r in report.results.items():
        toplevel = r.targets.targets.get("toplevel")
        system = toplevel.out_path if toplevel else ""
        sys.stdout.write(f"{name}\t{r.status}\t{r.seconds:.1f}s\t{system}\n")
    ok = sum(1 for r in report.results.values() if r.status != "failed")
    verdict = "" if report.ok else " (partial: some failed)"
    roots = "" if args.no_out_link else f"; GC roots in {_roots_dir(args)}"
    out.print(f"wrote {target}: {ok} of {len(report.results)} VMs built{verdict}{roots}")
    return EXIT_OK if report.ok else EXIT_BUILD_FAILED


def _dry_run(args: argparse.Namespace, out: Console, err: Console) -> int:
    """What would be built: each unit's derivations and the VMs using it, or why it does not
    evaluate."""
    from vmsilo_nix.build import display as build_display  # noqa: PLC0415
    from vmsilo_nix.build import run as build_run  # noqa: PLC0415 (only build needs it)

    bplan = _build_plan(args, err, args.vms)
    if args.json:
        print_json(build_run.plan_json(bplan))
    else:
        for unit in bplan.units.values():
            main = unit.targets.get("toplevel") or next(iter(unit.targets.values()), None)
            what = (
                main.drv_path
                if unit.ok and main is not None
                else f"does not evaluate: {build_run.eval_failure_message(unit)}"
            )
            vms = ",".join(unit.vms) or "-"
            sys.stdout.write(f"{unit.kind}\t{unit.id}\t{vms}\t{what}\n")
        out.print(
            f"would build {len(bplan.drv_paths)} derivations for {build_display.plan_line(bplan)}"
        )
    failed = [t for t in bplan.vms.values() if not t.ok]
    order = _vm_order(args, failed)
    for t in failed:
        where = build_run.guest_options(t.vm, order, build_run.failing_option(t))
        _error(err, f"VM {t.vm}: {where} does not evaluate: {build_run.eval_failure_message(t)}")
    return EXIT_BUILD_FAILED if failed else EXIT_OK


def cmd_status(args: argparse.Namespace, out: Console, err: Console) -> int:
    from rich.table import Table  # noqa: PLC0415

    from vmsilo_nix.build import planner  # noqa: PLC0415
    from vmsilo_nix.build import run as build_run  # noqa: PLC0415 (only build needs it)
    from vmsilo_nix.build import status as vm_status  # noqa: PLC0415
    from vmsilo_nix.nixeval import source  # noqa: PLC0415 (the engine: see the imports)

    tree = vm_status.find_tree(args.tree)
    names = list(vm_status.read_manifest(tree)["vms"])
    for name in args.vms:
        _check_vm_name(name, names)
    toplevels = None
    if args.flake:
        src = source.FlakeSource.parse(args.flake)
        with _progress(err, f"Evaluating the guest systems of {src.describe()}..."):
            bplan = planner.plan_builds(build_run.evaluate(src, opts=_nix_options(args)))
        toplevels = {n: t.targets["toplevel"].out_path for n, t in bplan.vms.items() if t.ok}
    report = vm_status.status(tree, args.vms, toplevels)
    if args.json:
        print_json({"vms": {s.vm: s.to_json() for s in report}})
        return EXIT_OK
    rows = [
        (
            s.vm,
            s.state,
            str(s.cid) if s.cid is not None else "",
            f"{s.memory} MiB" if s.memory is not None else "",
            ", ".join(s.units),
            s.detail,
        )
        for s in report
    ]
    if not out.is_terminal:  # one tab-separated line per VM, like vm-status
        for row in rows:
            sys.stdout.write("\t".join(row).rstrip("\t") + "\n")
        return EXIT_OK
    table = Table(box=None, pad_edge=False)
    for column in ("VM", "STATE", "CID", "MEMORY", "UNIT", ""):
        table.add_column(column, no_wrap=column != "")
    for row in rows:
        table.add_row(
            *row[:1],
            _styled((row[1], STATE_STYLES[row[1]])),
            *row[2:5],
            _styled((row[5], "dim")),
        )
    out.print(table)
    return EXIT_OK


STATE_STYLES = {
    "not built": "yellow",
    "built": "",
    "running current": "green",
    "running outdated": "yellow",
    "running stale": "yellow",
    "failed": "bold red",
}


def cmd_generate(args: argparse.Namespace, out: Console, err: Console) -> int:
    built_ok = True
    if args.build:
        report, _ = _build(args, err, ())
        built_ok = report.ok
        args.artifacts = args.artifacts_out or DEFAULT_ARTIFACTS
    config, p, artifacts = _config_and_plan(args, err)
    # Only generate renders; check and plan start without the renderers.
    from vmsilo_nix.render import generate  # noqa: PLC0415
    from vmsilo_nix.render.tree import write_tree  # noqa: PLC0415

    tree = generate.build_tree(config, p, artifacts)
    changed = write_tree(
        Path(args.out),
        tree,
        marker=facts.MANIFEST,
        on_wait=lambda: err.print(_styled(f"waiting for another run writing {args.out}...")),
    )
    if args.json:
        print_json({"out": args.out, "changed": changed, "entries": len(tree), "vms": list(p.vms)})
    elif changed:
        out.print(f"wrote {len(tree)} files for {len(p.vms)} VMs to {args.out}")
    else:
        out.print(f"{args.out} is up to date")
    unbuilt = [n for n, v in p.vms.items() if v.unbuilt]
    if unbuilt:
        err.print(
            _styled(f"note: not built yet, their launchers refuse to start: {', '.join(unbuilt)}")
        )
    return EXIT_OK if built_ok else EXIT_BUILD_FAILED


# Commands that build their data, print it and exit (the others serve for a VM's lifetime).
BATCH = frozenset(
    {"check", "eval", "plan", "show", "generate", "build", "status", "options", "facts"}
)

#: Every command, in the order `vmsilo --help` lists them.
COMMANDS: dict[str, _Command] = {
    "check": _Command(
        help="validate a configuration; every problem is reported",
        description="Validate a configuration. Exit 0 when valid, 1 with every problem listed.",
        add=_check_command,
        run=cmd_check,
    ),
    "eval": _Command(
        help="print the normalised configuration as JSON",
        description="Print the configuration with every default filled in, as the NixOS module "
        "system prints config.programs.vmsilo (without _internal, package and guestConfig).",
        add=_eval_command,
        run=cmd_eval,
    ),
    "plan": _Command(
        help="what running the VMs takes: crosvm, virtiofsd, TAPs, overlays, order",
        description="Plan every VM (or the named ones) from the configuration. Nothing is run.",
        add=_plan_command,
        run=cmd_plan,
    ),
    "show": _Command(
        help="one VM's plan for people, each flag with the option that produced it",
        description="Show one VM's plan: the crosvm command one flag a line with the option "
        "path beside it, each virtiofsd, networking, overlay and sound.",
        add=_show_command,
        run=cmd_show,
    ),
    "generate": _Command(
        help="write the package tree: launchers, vm-* commands, desktop files, completion",
        description="Write the package tree the NixOS module installs as programs.vmsilo.package. "
        "The tree is swapped in whole, so a failure leaves the previous one intact; an "
        "unchanged configuration writes nothing. An existing DIR is replaced only when it is "
        "empty or holds a vmsilo manifest; runs on the same DIR take turns.",
        add=_generate_command,
        run=cmd_generate,
    ),
    "build": _Command(
        help="build the VMs' guest systems, program images and host packages with nix build",
        description="Evaluate the build units of the VMs: the base guest system, each own guest "
        "system (guestConfig), each program image (guestPrograms set) and the host packages "
        "(with nix-eval-jobs when it is installed, else one nix eval); build each once with "
        "one nix build, register a GC root for every output (--out-link), and write the "
        "artifacts file `vmsilo generate --artifacts` reads. Remote builders, --max-jobs and "
        "substituters are Nix's own: pass them with --option (for example --option builders "
        "'ssh://big x86_64-linux').",
        add=_build_command,
        run=cmd_build,
    ),
    "status": _Command(
        help="which VMs are built, running, current, outdated or stale",
        description="For each VM of the installed package tree: not built, built, running "
        "current, running outdated (it runs an older configuration than the installed one), "
        "running stale (with --flake: the flake on disk gives a different system than the "
        "installed one), or failed (its unit failed; the last journal line is shown).",
        add=_status_command,
        run=cmd_status,
    ),
    "wayland-context": _delegated(
        "wayland-context",
        help="serve a VM's Wayland socket under its security context (run by proxy scripts)",
        description="Create a listening socket, register it with the compositor through "
        "wp_security_context_v1 with the VM's identity, and keep it until stopped.",
    ),
    "channel": _delegated(
        "channel",
        help="run commands in a VM (vm-run, vm-shell), or serve them inside a guest",
        description="The host-guest command channel over vsock: `run` and `shell` on the host, "
        "`agent` in the guest.",
    ),
    "guest-setup": _delegated(
        "guest-setup",
        help="inside a guest at boot: network files, hostname and shares from the VM identity",
        description="Read the VM's identity from the kernel command line, write its "
        "systemd-networkd files, set the hostname and mount its virtiofs shares.",
    ),
    "options": _Command(
        help="print the option schema (NixOS module, JSON Schema or Markdown)",
        description="Render the option schema from the Python model.",
        add=_options_command,
        run=cmd_options,
    ),
    "facts": _Command(
        help="print the engine facts the Nix modules read (nix/facts.json)",
        description="The version, engine name, paths, vsock port and kernel parameter names "
        "that the engine and the Nix modules must agree on, as JSON.",
        add=_facts_command,
        run=cmd_facts,
    ),
}


class _Exit:
    """How ``run`` ends the process: a batch command's data (a 1000-VM plan and its JSON are a
    million objects) is left to the process's exit rather than freed object by object, which
    is a twentieth of `plan --json`. Only ``run`` (the program) sets ``fast``; callers of
    ``main`` in their own process keep nothing."""

    fast = False
    batch = False
    kept: ClassVar[list[object]] = []


def _keep(data: object) -> None:
    if _Exit.fast:
        _Exit.kept.append(data)


def run() -> NoReturn:
    """The ``vmsilo`` program: ``main``, then exit; a batch command exits once its output is
    flushed, without tearing down the interpreter (no exit handlers are registered for them)."""
    _Exit.fast = True
    code = main()
    if not _Exit.batch:
        sys.exit(code)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # the reader left, as in _dispatch: not a failure
        pass
    except OSError as e:
        with contextlib.suppress(OSError):
            sys.stderr.write(f"error: cannot write standard output: {e.strerror or e}\n")
            sys.stderr.flush()
        code = EXIT_WRITE
    os._exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(words).parse_args(words)
    _Exit.batch = args.command in BATCH
    # channel and wayland-context handle (or forward) signals themselves.
    unwind = args.command not in ("channel", "wayland-context")
    with _batch_gc(args.command in BATCH), process.signals_unwind() if unwind else _nothing():
        return _dispatch(args)


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield


@contextlib.contextmanager
def _batch_gc(batch: bool) -> Iterator[None]:
    """A plan is a large acyclic tree freed by reference counting; the cyclic collector would
    only rescan it again and again as it grows (a third of `plan --json`'s time). Callers that
    run ``main`` in their own process get the collector back as it was."""
    was_enabled = gc.isenabled()
    if batch:
        gc.disable()
    try:
        yield
    finally:
        # `run` exits at once after a batch command: enabling the collector there would only
        # start one full collection over the whole plan on the way out.
        if was_enabled and not (batch and _Exit.fast):
            gc.enable()


#: Wide enough for any table: a file or pipe has no width, and cutting CIDs and store paths at
#: 80 columns would make the output wrong, not just narrow.
UNBOUNDED_WIDTH = 100_000


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except ValueError:  # closed
        return False


def _width(stream: TextIO) -> int | None:
    """None (rich asks the terminal) for a terminal, else no limit."""
    return None if _isatty(stream) else UNBOUNDED_WIDTH


def _styled(*parts: str | tuple[str, str]) -> Text:
    """rich Text (user data is never read as markup), rich imported only when printing."""
    from rich.text import Text  # noqa: PLC0415 (plan --json and check --json print no Text)

    return Text.assemble(*parts)


class _LazyConsole:
    """A rich Console made on first use: `plan --json` prints none, and importing and setting
    up rich is a tenth of its start-up."""

    def __init__(self, stream: TextIO, *, stderr: bool) -> None:
        self._stream, self._stderr = stream, stderr
        self._console: Console | None = None

    def _made(self) -> Console:
        if self._console is None:
            from rich.console import Console  # noqa: PLC0415

            # soft_wrap: messages stay one line each, whatever the terminal width, for grep.
            self._console = Console(
                stderr=self._stderr, soft_wrap=True, highlight=False, width=_width(self._stream)
            )
        return self._console

    def __getattr__(self, name: str) -> object:
        return getattr(self._made(), name)

    # Dunders skip __getattr__: rich's Live display enters its console (`vmsilo build`).
    def __enter__(self) -> Console:
        return self._made().__enter__()

    def __exit__(self, *exc: object) -> None:
        self._made().__exit__(*exc)

    def print(self, *objects: object) -> None:
        try:
            self._made().print(*objects)
        except BrokenPipeError:
            raise
        except OSError as e:  # a full disk: the output is incomplete
            where = "standard error" if self._stderr else "standard output"
            raise WriteError(f"cannot write {where}: {e.strerror or e}") from None


def _consoles() -> tuple[Console, Console]:
    return (
        cast("Console", _LazyConsole(sys.stdout, stderr=False)),
        cast("Console", _LazyConsole(sys.stderr, stderr=True)),
    )


def _dispatch(args: argparse.Namespace) -> int:
    out, err = _consoles()
    try:
        return COMMANDS[args.command].run(args, out, err)
    except ConfigError as e:
        _print_problems(e, err)
        return EXIT_INVALID
    except UsageError as e:
        _error(err, str(e))
        return EXIT_USAGE
    except ProgramNotFoundError as e:
        _error(err, str(e))
        return EXIT_MISSING
    except WriteError as e:
        _error(err, str(e))
        return EXIT_WRITE
    except NixError as e:
        _error(err, "Nix failed:")
        err.print(_styled(e.details() if args.debug else str(e)))
        if not args.debug:
            err.print("(run with --debug for the whole trace)")
        return EXIT_SOURCE
    except VmsiloError as e:
        _error(err, str(e))
        return EXIT_SOURCE
    except KeyboardInterrupt:
        err.print("interrupted")
        return EXIT_INTERRUPTED
    except process.Terminated as e:
        err.print(f"stopped by {e}")
        return 128 + e.signum
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
