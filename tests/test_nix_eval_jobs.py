"""Tests for vmsilo_nix.nix_eval_jobs: argv, the line parser, a fake nix-eval-jobs, fallback."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from vmsilo_nix.errors import NixError, VmsiloError
from vmsilo_nix.nixeval import nix, nix_eval_jobs
from vmsilo_nix.nixeval.nix import (
    Drv,
    DrvResult,
    EvalFailure,
    FlakeRef,
    NixExpr,
    NixOptions,
)
from vmsilo_nix.nixeval.nix_eval_jobs import EvalJobsOutputError

from .conftest import NO_CACHE_NIX, OFFLINE_NIX, ROOT, EvalJobs, install_program, needs_nix
from .procs import gone

FEATURES = ["--option", "extra-experimental-features", "nix-command flakes"]

A_DRV = "/nix/store/4sxd2wn0pd1l7sp8fbfmkw5bbb9bcyp1-vm-a.drv"
A_OUT = "/nix/store/9jqpfpkhsxl2zyqwn1gxr0bpp6fd9dpj-vm-a"
DEEP_DRV = "/nix/store/w4vvmsj0ysk5nqxhxwb8nkkwc5cc1d9s-vm-deep.drv"

# Lines as nix-eval-jobs prints them, in completion order (newer versions add keys we ignore).
RECORDED = [
    json.dumps(
        {
            "attr": "nested.deep",
            "attrPath": ["nested", "deep"],
            "drvPath": DEEP_DRV,
            "name": "vm-deep",
            "outputs": {"out": "/nix/store/0a8bv3v0pxwhb6n37b0n1fd3clh3ij4a-vm-deep", "dev": None},
            "system": "x86_64-linux",
            "isCached": False,
            "neededBuilds": [],
        }
    ),
    json.dumps(
        {
            "attr": "broken",
            "attrPath": ["broken"],
            "error": "\x1b[31;1merror:\x1b[0m the VM 'broken' is misconfigured\n",
        }
    ),
    json.dumps(
        {
            "attr": "a",
            "attrPath": ["a"],
            "drvPath": A_DRV,
            "name": "vm-a",
            "outputs": {"out": A_OUT},
            "system": "x86_64-linux",
        }
    ),
]

EXPECTED: dict[nix.AttrPath, DrvResult] = {
    ("nested", "deep"): Drv(
        attr_path=("nested", "deep"),
        name="vm-deep",
        system="x86_64-linux",
        drv_path=DEEP_DRV,
        outputs={"out": "/nix/store/0a8bv3v0pxwhb6n37b0n1fd3clh3ij4a-vm-deep", "dev": None},
    ),
    ("broken",): EvalFailure(("broken",), "error: the VM 'broken' is misconfigured"),
    ("a",): Drv(("a",), "vm-a", "x86_64-linux", A_DRV, {"out": A_OUT}),
}


# --- the line parser ------------------------------------------------------------------------


def test_parse_recorded_lines() -> None:
    parsed = [nix_eval_jobs.parse_line(line, n) for n, line in enumerate(RECORDED, 1)]
    assert {r.attr_path: r for r in parsed} == EXPECTED


def test_parse_line_strips_colours_from_errors() -> None:
    assert nix_eval_jobs.parse_line(RECORDED[1]) == EvalFailure(
        ("broken",), "error: the VM 'broken' is misconfigured"
    )


def test_garbage_line_is_a_clear_error() -> None:
    with pytest.raises(EvalJobsOutputError, match=r"not JSON \(line 2\): 'warning: oops'"):
        nix_eval_jobs.parse_line("warning: oops", 2)


@pytest.mark.parametrize(
    ("line", "complaint"),
    [
        ('{"attr": "a"}', "attrPath"),
        ('{"attr": "a", "attrPath": "a", "error": "x"}', "attrPath"),
        ("[1, 2]", "JSON object"),
        ('{"attrPath": ["a"], "drvPath": 1, "name": "n", "system": "s", "outputs": {}}', "drvPath"),
        ('{"attrPath": ["a"], "drvPath": "/d", "name": "n", "system": "s"}', "outputs"),
        ('{"attrPath": ["a"], "drvPath": "/d", "name": "n", "system": "s", "outputs": [1]}', "out"),
    ],
)
def test_malformed_lines_are_clear_errors(line: str, complaint: str) -> None:
    with pytest.raises(EvalJobsOutputError, match=complaint) as info:
        nix_eval_jobs.parse_line(line, 7)
    assert "(line 7)" in str(info.value)
    assert isinstance(info.value, VmsiloError)


# --- argv -----------------------------------------------------------------------------------


def test_argv_for_a_flake() -> None:
    argv = nix_eval_jobs.evaluate_argv(
        FlakeRef("path:/src#vmsilo.rootfs"), workers=3, max_memory_mib=2048
    )
    assert argv == [
        "nix-eval-jobs",
        "--workers",
        "3",
        "--max-memory-size",
        "2048",
        *FEATURES,
        "--flake",
        "path:/src#vmsilo.rootfs",
    ]


def test_argv_with_every_flag() -> None:
    opts = NixOptions(options={"substituters": ""}, show_trace=True)
    argv = nix_eval_jobs.evaluate_argv(
        NixExpr("import /etc/vms.nix", True),
        workers=1,
        max_memory_mib=512,
        gc_roots_dir="/run/vmsilo/gcroots",
        opts=opts,
        program="/opt/bin/nix-eval-jobs",
    )
    assert argv == [
        "/opt/bin/nix-eval-jobs",
        "--workers",
        "1",
        "--max-memory-size",
        "512",
        "--gc-roots-dir",
        "/run/vmsilo/gcroots",
        *FEATURES,
        "--option",
        "substituters",
        "",
        "--show-trace",
        "--impure",
        "--expr",
        "import /etc/vms.nix",
    ]


def test_argv_for_expressions_and_for_what_a_function_selects() -> None:
    common = ["nix-eval-jobs", "--workers", "2", "--max-memory-size", "100", *FEATURES]
    pure = nix_eval_jobs.evaluate_argv(NixExpr("{ }"), workers=2, max_memory_mib=100)
    assert pure == [*common, "--expr", "{ }"]
    impure = nix_eval_jobs.evaluate_argv(NixExpr("{ }", True), workers=2, max_memory_mib=100)
    assert impure == [*common, "--impure", "--expr", "{ }"]
    # nix-eval-jobs applies no function: the expression does, a flake read with getFlake.
    selected = nix_eval_jobs.evaluate_argv(
        FlakeRef('path:/src#a."b.c"'), select="f", workers=2, max_memory_mib=100
    )
    flake = nix.shipped_expr("flake-select.nix")
    assert selected == [
        *common,
        "--impure",
        "--expr",
        f'(f) (({flake}) (builtins.fromJSON "\\"path:/src\\"") '
        '(builtins.fromJSON "[\\"a\\", \\"b.c\\"]"))',
    ]


# --- a fake nix-eval-jobs on PATH -----------------------------------------------------------

# Prints one line, then waits forever on a child of its own.
FAKE_HANGING = """\
#!/bin/bash
sleep 1000 &
echo "$$ $!" > "$FAKE_NEJ_PIDS"
printf '%s\\n' "$FAKE_NEJ_LINE"
wait
"""


@pytest.fixture
def fake_dir(eval_jobs: EvalJobs, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The stand-in nix-eval-jobs' directory (conftest), for the one that hangs too."""
    monkeypatch.setenv("FAKE_NEJ_PIDS", str(eval_jobs.dir / "pids"))
    return eval_jobs.dir


def test_available_follows_path(eval_jobs: EvalJobs, monkeypatch: pytest.MonkeyPatch) -> None:
    assert nix_eval_jobs.available()
    monkeypatch.setenv("PATH", str(eval_jobs.dir / "lines.jsonl"))
    assert not nix_eval_jobs.available()


def test_evaluate_with_a_fake_in_scrambled_order(eval_jobs: EvalJobs) -> None:
    eval_jobs.answer([RECORDED[2], RECORDED[0], RECORDED[1]])
    seen: list[nix.AttrPath] = []
    results = nix_eval_jobs.evaluate(
        FlakeRef("path:/src#vms"),
        workers=2,
        max_memory_mib=1024,
        opts=NO_CACHE_NIX,
        on_result=lambda r: seen.append(r.attr_path),
    )
    assert results == EXPECTED
    assert seen == [("a",), ("nested", "deep"), ("broken",)]
    assert eval_jobs.argv() == [
        "--workers",
        "2",
        "--max-memory-size",
        "1024",
        *FEATURES,
        "--option",
        "substituters",
        "",
        "--flake",
        "path:/src#vms",
    ]


def test_eval_drvs_uses_nix_eval_jobs_when_on_path(eval_jobs: EvalJobs) -> None:
    eval_jobs.answer(RECORDED)
    results = nix_eval_jobs.eval_drvs(FlakeRef("path:/src#vms"), workers=5)
    assert results == EXPECTED
    argv = eval_jobs.argv()
    assert argv[:4] == ["--workers", "5", "--max-memory-size", "4096"]


def test_failing_nix_eval_jobs_raises_nix_error(
    eval_jobs: EvalJobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    eval_jobs.answer(RECORDED[:1])
    monkeypatch.setenv("EVAL_JOBS_STDERR", "evaluating...\nerror: worker crashed\n")
    monkeypatch.setenv("EVAL_JOBS_STATUS", "1")
    with pytest.raises(NixError, match=r"^error: worker crashed$") as info:
        nix_eval_jobs.evaluate(FlakeRef("path:/src#vms"), workers=1)
    assert info.value.returncode == 1
    assert info.value.argv[0] == "nix-eval-jobs"
    assert "evaluating..." in info.value.stderr


def _hanging(fake_dir: Path, monkeypatch: pytest.MonkeyPatch, line: str) -> None:
    install_program(fake_dir / "bin", "nix-eval-jobs", FAKE_HANGING)
    monkeypatch.setenv("FAKE_NEJ_LINE", line)


def _pids(fake_dir: Path) -> list[int]:
    return [int(p) for p in (fake_dir / "pids").read_text().split()]


def test_consumer_failing_midway_leaves_no_process_behind(
    fake_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _hanging(fake_dir, monkeypatch, RECORDED[2])

    def explode(result: DrvResult) -> None:
        raise RuntimeError(f"cannot use {result.attr_path}")

    start = time.monotonic()
    with pytest.raises(RuntimeError, match="cannot use"):
        nix_eval_jobs.evaluate(FlakeRef("path:/src#vms"), workers=1, on_result=explode)
    assert time.monotonic() - start < 10
    fake, sleeper = _pids(fake_dir)
    assert gone(fake)
    assert gone(sleeper)


def test_ctrl_c_midway_leaves_no_process_behind(
    fake_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _hanging(fake_dir, monkeypatch, RECORDED[2])

    def interrupt(result: DrvResult) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        nix_eval_jobs.evaluate(FlakeRef("path:/src#vms"), workers=1, on_result=interrupt)
    fake, sleeper = _pids(fake_dir)
    assert gone(fake)
    assert gone(sleeper)


def test_garbage_line_midway_stops_the_child(
    fake_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _hanging(fake_dir, monkeypatch, "Segmentation fault")
    with pytest.raises(EvalJobsOutputError, match="not JSON"):
        nix_eval_jobs.evaluate(FlakeRef("path:/src#vms"), workers=1)
    fake, sleeper = _pids(fake_dir)
    assert gone(fake)
    assert gone(sleeper)


# --- the fallback gives the same mapping ----------------------------------------------------

DRVS = ROOT / "tests" / "nix" / "eval-jobs-drvs.nix"


def _as_line(result: DrvResult) -> str:
    """What nix-eval-jobs would print for ``result``."""
    base = {"attr": ".".join(result.attr_path), "attrPath": list(result.attr_path)}
    if isinstance(result, EvalFailure):
        return json.dumps({**base, "error": result.error})
    return json.dumps(
        {
            **base,
            "drvPath": result.drv_path,
            "name": result.name,
            "system": result.system,
            "outputs": dict(result.outputs),
        }
    )


@pytest.mark.nix
@needs_nix
def test_fallback_without_nix_eval_jobs_gives_the_same_mapping(
    eval_jobs: EvalJobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = NixExpr(f"import {DRVS}", impure=True)
    real_nix = shutil.which("nix")
    assert real_nix is not None

    # Only nix on PATH: plain nix, one evaluation.
    only_nix = eval_jobs.dir / "only-nix"
    only_nix.mkdir()
    (only_nix / "nix").symlink_to(real_nix)
    monkeypatch.setenv("PATH", str(only_nix))
    assert not nix_eval_jobs.available()
    fallback = nix_eval_jobs.eval_drvs(source, opts=OFFLINE_NIX)
    assert set(fallback) == {("a",), ("b",), ("broken",), ("nested", "deep")}
    broken = fallback[("broken",)]
    assert isinstance(broken, EvalFailure)
    assert "broken on purpose" in broken.error

    # nix-eval-jobs printing the same results in another order: the same mapping.
    monkeypatch.setenv("PATH", f"{eval_jobs.program.parent}:{only_nix}")
    eval_jobs.answer(_as_line(r) for r in reversed(fallback.values()))
    assert nix_eval_jobs.eval_drvs(source, opts=OFFLINE_NIX) == fallback
    argv = eval_jobs.argv()
    assert argv[-1] == f"import {DRVS}"


@needs_nix
def test_the_flake_selection_picks_the_attribute(tmp_path: Path) -> None:
    """What nix-eval-jobs gets for a function of a flake's attribute, evaluated by real Nix."""
    (tmp_path / "flake.nix").write_text('{ outputs = _: { a."b.c".d = 41; }; }')
    argv = nix_eval_jobs.evaluate_argv(
        FlakeRef(f'path:{tmp_path}#a."b.c".d'), select="x: x + 1", workers=1, max_memory_mib=1
    )
    assert argv[-3:-1] == ["--impure", "--expr"]
    assert nix.eval_json_expr(argv[-1], impure=True, opts=OFFLINE_NIX) == 42
