"""Tests for vmsilo_nix.nix: whole argv lists, version handling, and real Nix on tiny fixtures."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import NO_CACHE_NIX, OFFLINE_NIX, ROOT, install_program, needs_nix
from vmsilo_nix import process
from vmsilo_nix.errors import NixError, NixNotFoundError, VmsiloError
from vmsilo_nix.nixeval import nix
from vmsilo_nix.nixeval.nix import (
    Drv,
    EvalFailure,
    FlakeRef,
    NixExpr,
    NixOptions,
    NixVersion,
)

FEATURES = ["--extra-experimental-features", "nix-command flakes"]
# `nix build` as the engine runs it (before the derivations): every result as JSON, nothing
# linked, all it can build, and the log for the progress display.
BUILD = ["build", "--json", "--no-link", "--keep-going", "--log-format", "internal-json"]

# Derivations that build in milliseconds with nothing but /bin/sh, and attributes that do not.
DRVS = ROOT / "tests" / "nix" / "drvs.nix"
DRV_PATHS = "s: builtins.mapAttrs (n: d: d.drvPath) { inherit (s) a b c multi; }"


# --- flags and argv builders ----------------------------------------------------------------


def test_options_are_rendered_once_in_order() -> None:
    opts = NixOptions(
        program="/opt/nix/bin/nix",
        options=[("substituters", ""), ("cores", "2")],
        show_trace=True,
    )
    assert opts.argv("eval", "--json") == [
        "/opt/nix/bin/nix",
        *FEATURES,
        "--option",
        "substituters",
        "",
        "--option",
        "cores",
        "2",
        "--show-trace",
        "eval",
        "--json",
    ]
    assert NixOptions(options={"a": "1"}) == NixOptions(options=[("a", "1")])


def test_eval_installable_argv() -> None:
    assert nix.eval_installable_argv("path:/src#x", apply="f: f") == [
        "nix",
        *FEATURES,
        "eval",
        "--json",
        "path:/src#x",
        "--apply",
        "f: f",
    ]


def test_eval_file_argv() -> None:
    assert nix.eval_file_argv("/etc/vms.nix") == [
        "nix",
        *FEATURES,
        "eval",
        "--json",
        "--file",
        "/etc/vms.nix",
    ]
    assert nix.eval_file_argv("/etc/vms.nix", "a.b", apply="x: x", opts=NO_CACHE_NIX) == [
        "nix",
        *FEATURES,
        "--option",
        "substituters",
        "",
        "eval",
        "--json",
        "--file",
        "/etc/vms.nix",
        "a.b",
        "--apply",
        "x: x",
    ]


def test_eval_expr_argv() -> None:
    assert nix.eval_expr_argv("1 + 1") == ["nix", *FEATURES, "eval", "--json", "--expr", "1 + 1"]
    assert nix.eval_expr_argv("x", apply="f", impure=True) == [
        "nix",
        *FEATURES,
        "eval",
        "--json",
        "--expr",
        "x",
        "--impure",
        "--apply",
        "f",
    ]


@pytest.mark.parametrize(
    ("version", "targets"),
    [
        (NixVersion((2, 8, 0)), ["/nix/store/a.drv", "/nix/store/b.drv"]),
        (NixVersion((2, 14, 1)), ["/nix/store/a.drv", "/nix/store/b.drv"]),
        (NixVersion((2, 15, 0)), ["/nix/store/a.drv^*", "/nix/store/b.drv^*"]),
        (NixVersion((2, 24, 10)), ["/nix/store/a.drv^*", "/nix/store/b.drv^*"]),
        (NixVersion((2, 91, 1), "lix"), ["/nix/store/a.drv^*", "/nix/store/b.drv^*"]),
    ],
)
def test_build_argv_spells_drvs_per_version(version: NixVersion, targets: list[str]) -> None:
    argv = nix.build_argv(["/nix/store/a.drv", "/nix/store/b.drv"], version)
    assert argv == [
        "nix",
        *FEATURES,
        *BUILD,
        *targets,
    ]


# --- versions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("nix (Nix) 2.8.0\n", NixVersion((2, 8, 0), "nix")),
        ("nix (Nix) 2.24.10", NixVersion((2, 24, 10), "nix")),
        ("nix (Lix, like Nix) 2.91.1\n", NixVersion((2, 91, 1), "lix")),
        ("nix (Nix) 2.19.0pre20231010_abcdef\n", NixVersion((2, 19, 0), "nix")),
        ("nix (Determinate Nix 3.6.2) 2.29.0", NixVersion((2, 29, 0), "nix")),
    ],
)
def test_parse_version(text: str, expected: NixVersion) -> None:
    assert nix.parse_version(text) == expected


@pytest.mark.parametrize("text", ["", "nix", "something else entirely"])
def test_parse_version_rejects_garbage(text: str) -> None:
    with pytest.raises(VmsiloError, match="nix --version"):
        nix.parse_version(text)


def test_modern_spelling_threshold() -> None:
    assert not NixVersion((2, 8, 0)).drv_needs_outputs_suffix
    assert NixVersion((2, 15, 0)).drv_needs_outputs_suffix
    assert NixVersion((2, 91, 1), "lix").drv_needs_outputs_suffix


# --- a fake nix, to see what we send and how we read odd answers ----------------------------

FAKE_NIX = """\
#!{python}
import json, os, sys
args = sys.argv[1:]
if args == ["--version"]:
    with open(os.environ["FAKE_NIX_LOG"], "a") as log:
        log.write("version\\n")
    print(os.environ["FAKE_NIX_VERSION"])
    sys.exit(0)
with open(os.environ["FAKE_NIX_ARGV"], "w") as out:
    json.dump(args, out)
sys.stdout.write(os.environ.get("FAKE_NIX_STDOUT", ""))
sys.stderr.write(os.environ.get("FAKE_NIX_STDERR", ""))
sys.exit(int(os.environ.get("FAKE_NIX_STATUS", "0")))
"""


@pytest.fixture
def fake_nix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ``nix`` first on PATH that records its argv; returns the directory of its records."""
    bin_dir = tmp_path / "bin"
    install_program(bin_dir, "nix", FAKE_NIX.format(python=sys.executable))
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("FAKE_NIX_LOG", str(tmp_path / "version.log"))
    monkeypatch.setenv("FAKE_NIX_ARGV", str(tmp_path / "argv.json"))
    monkeypatch.setenv("FAKE_NIX_VERSION", "nix (Nix) 2.24.10")
    return tmp_path


def test_version_is_asked_once_per_executable(
    fake_nix: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_NIX_VERSION", "nix (Lix, like Nix) 2.91.1")
    assert nix.nix_version() == NixVersion((2, 91, 1), "lix")
    assert nix.nix_version() == NixVersion((2, 91, 1), "lix")
    assert (fake_nix / "version.log").read_text() == "version\n"


@pytest.mark.parametrize(
    ("version", "suffix"),
    [("nix (Nix) 2.8.0", ""), ("nix (Nix) 2.24.10", "^*"), ("nix (Lix, like Nix) 2.91.1", "^*")],
)
def test_build_matches_results_by_drv_path(
    fake_nix: Path, monkeypatch: pytest.MonkeyPatch, version: str, suffix: str
) -> None:
    wanted = [f"/nix/store/{c * 32}-{c}.drv" for c in "abc"]
    # Answers in another order than asked, with a key newer Nix adds.
    answer = [
        {"drvPath": wanted[2], "outputs": {"out": "/nix/store/c-out"}, "startTime": 0},
        {"drvPath": wanted[0], "outputs": {"out": "/nix/store/a-out", "dev": "/nix/store/a-dev"}},
        {"drvPath": wanted[1], "outputs": {"out": "/nix/store/b-out"}},
    ]
    monkeypatch.setenv("FAKE_NIX_VERSION", version)
    monkeypatch.setenv("FAKE_NIX_STDOUT", json.dumps(answer))
    lines: list[str] = []
    monkeypatch.setenv("FAKE_NIX_STDERR", '@nix {"action":"msg","level":1,"msg":"hi"}\nplain\n')
    result = nix.build([*wanted, wanted[0]], lines.append)
    assert lines == ['@nix {"action":"msg","level":1,"msg":"hi"}', "plain"]
    assert result.built == {
        wanted[0]: {"out": "/nix/store/a-out", "dev": "/nix/store/a-dev"},
        wanted[1]: {"out": "/nix/store/b-out"},
        wanted[2]: {"out": "/nix/store/c-out"},
    }
    argv = json.loads((fake_nix / "argv.json").read_text())
    assert argv == [
        *FEATURES,
        *BUILD,
        *(p + suffix for p in wanted),
    ]


def test_build_missing_result_is_an_error(fake_nix: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "FAKE_NIX_STDOUT", json.dumps([{"drvPath": "/nix/store/x.drv", "outputs": {}}])
    )
    with pytest.raises(nix.NixOutputError, match=r"no result for /nix/store/y\.drv"):
        nix.build(["/nix/store/x.drv", "/nix/store/y.drv"], print)


def test_failed_build_is_an_outcome_with_nix_message(
    fake_nix: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    msg = {"action": "msg", "level": 0, "msg": "\x1b[31;1merror:\x1b[0m builder for 'x' failed"}
    monkeypatch.setenv("FAKE_NIX_STDERR", "@nix " + json.dumps(msg) + "\n")
    monkeypatch.setenv("FAKE_NIX_STATUS", "1")
    outcome = nix.build(["/nix/store/x.drv"], lambda _: None)
    assert outcome.built is None and outcome.error is not None
    assert str(outcome.error) == "error: builder for 'x' failed"


def test_build_of_nothing_runs_nothing(fake_nix: Path) -> None:
    assert nix.build([], print).built == {}
    assert not (fake_nix / "argv.json").exists()


def test_unparseable_output_of_a_successful_command(
    fake_nix: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_NIX_STDOUT", '{"half": ')
    monkeypatch.setenv("FAKE_NIX_STDERR", "warning: something\n")
    with pytest.raises(NixError, match="not JSON") as info:
        nix.eval_json_expr("1")
    assert isinstance(info.value, nix.NixOutputError)
    assert info.value.stderr == "warning: something\n"
    assert info.value.returncode == 0


@pytest.mark.parametrize(
    "output",
    [
        {"drvPath": "/nix/store/a.drv"},
        [{"outputs": {}}],
        [{"drvPath": "/nix/store/a.drv", "outputs": {"out": 3}}],
        ["/nix/store/a.drv"],
    ],
)
def test_parse_build_output_rejects_bad_shapes(output: nix.JSON) -> None:
    with pytest.raises(ValueError):
        nix.parse_build_output(output, ["/nix/store/a.drv"])


# --- missing nix ----------------------------------------------------------------------------


def test_missing_nix_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(NixNotFoundError, match="'nix' was not found"):
        nix.eval_json_expr("1")
    with pytest.raises(NixNotFoundError):
        nix.nix_version()
    with pytest.raises(NixNotFoundError):
        nix.build(["/nix/store/a.drv"], print)


def test_missing_nix_by_name() -> None:
    opts = NixOptions(program="vmsilo-test-no-such-nix")
    with pytest.raises(NixNotFoundError, match="'vmsilo-test-no-such-nix'"):
        nix.eval_json_file("/dev/null", opts=opts)


# --- real Nix -------------------------------------------------------------------------------


@pytest.mark.nix
@needs_nix
def test_eval_file_attr_and_apply(tmp_path: Path) -> None:
    path = tmp_path / "data.nix"
    path.write_text('{ x = { a = 1; b = [ "s" null true 1.5 ]; }; y = 2; }')
    assert nix.eval_json_file(str(path), opts=OFFLINE_NIX) == {
        "x": {"a": 1, "b": ["s", None, True, 1.5]},
        "y": 2,
    }
    assert nix.eval_json_file(str(path), "x.a", opts=OFFLINE_NIX) == 1
    assert nix.eval_json_file(str(path), apply="builtins.attrNames", opts=OFFLINE_NIX) == ["x", "y"]


@pytest.mark.nix
@needs_nix
def test_eval_file_calls_a_function_with_its_defaults(tmp_path: Path) -> None:
    path = tmp_path / "fn.nix"
    path.write_text("{ n ? 5 }: { v = n * 2; }")
    assert nix.eval_json_file(str(path), "v", opts=OFFLINE_NIX) == 10


@pytest.mark.nix
@needs_nix
def test_eval_expr_pure_and_impure() -> None:
    assert nix.eval_json_expr("1 + 1", apply="x: x * 10", opts=OFFLINE_NIX) == 20
    with pytest.raises(NixError, match="currentSystem"):
        nix.eval_json_expr("builtins.currentSystem", opts=OFFLINE_NIX)
    system = nix.eval_json_expr("builtins.currentSystem", impure=True, opts=OFFLINE_NIX)
    assert isinstance(system, str)
    assert system.endswith("-linux")


@pytest.mark.nix
@needs_nix
def test_eval_flake_without_git(tmp_path: Path) -> None:
    (tmp_path / "flake.nix").write_text(
        '{ outputs = { self }: { vmsilo = { vms = [ "a" "b" ]; colour = "red"; }; }; }'
    )
    ref = f"path:{tmp_path}#vmsilo"
    assert nix.eval_json_installable(ref, opts=OFFLINE_NIX) == {"vms": ["a", "b"], "colour": "red"}
    assert nix.eval_json_installable(ref, apply="v: v.colour", opts=OFFLINE_NIX) == "red"


@pytest.mark.nix
@needs_nix
def test_failing_eval_keeps_the_story_and_shows_the_last_error() -> None:
    argv = nix.eval_expr_argv('builtins.trace "tracing" (throw "boom")', opts=OFFLINE_NIX)
    with pytest.raises(NixError) as info:
        nix.run_json(argv)
    err = info.value
    assert str(err).startswith("error:")
    assert "boom" in str(err)
    assert "tracing" not in str(err)
    assert "trace: tracing" in err.stderr
    assert err.argv == tuple(argv)
    assert err.returncode == 1
    assert "exit status: 1" in err.details()


@pytest.mark.nix
@needs_nix
def test_half_printed_json_of_a_failed_eval_is_not_parsed() -> None:
    expr = '{ a = 1; b = [ (throw "boom") ]; }'
    # Nix really does print the start of the document before failing ...
    raw = process.run(nix.eval_expr_argv(expr, opts=OFFLINE_NIX))
    assert raw.returncode != 0
    assert raw.stdout.startswith('{"a":1')
    # ... and we report the failure instead of returning (or choking on) it.
    with pytest.raises(NixError, match="boom"):
        nix.eval_json_expr(expr, opts=OFFLINE_NIX)


@pytest.mark.nix
@needs_nix
def test_build_three_drvs_matched_by_drv_path() -> None:
    drvs = nix.eval_json_file(str(DRVS), apply=DRV_PATHS, opts=OFFLINE_NIX)
    assert isinstance(drvs, dict)
    wanted = {name: path for name, path in drvs.items() if isinstance(path, str)}
    outcome = nix.build(list(wanted.values()), lambda _: None, opts=OFFLINE_NIX)
    built = outcome.built
    assert built is not None
    assert set(built) == set(wanted.values())
    for name in "abc":
        outputs = built[wanted[name]]
        assert list(outputs) == ["out"]
        assert Path(outputs["out"]).read_text() == f"vmsilo-test-{name}\n"
    multi = built[wanted["multi"]]
    assert {k: Path(v).read_text() for k, v in multi.items()} == {"out": "out\n", "dev": "dev\n"}


@pytest.mark.nix
@needs_nix
def test_build_of_an_unknown_drv_fails() -> None:
    outcome = nix.build(
        ["/nix/store/00000000000000000000000000000000-vmsilo-nope.drv"], print, opts=OFFLINE_NIX
    )
    assert outcome.built is None and isinstance(outcome.error, NixError)


def _expected_shape(results: dict[nix.AttrPath, nix.DrvResult]) -> None:
    assert set(results) == {
        ("a",),
        ("b",),
        ("c",),
        ("multi",),
        ("bad",),
        ("checked",),
        ("nested", "deep"),
        ("with.dot",),
    }
    a = results[("a",)]
    assert isinstance(a, Drv)
    assert a.name == "vmsilo-test-a"
    assert a.drv_path.endswith("-vmsilo-test-a.drv")
    assert set(a.outputs) == {"out"}
    multi = results[("multi",)]
    assert isinstance(multi, Drv)
    assert set(multi.outputs) == {"out", "dev"}
    bad = results[("bad",)]
    assert isinstance(bad, EvalFailure)
    assert "bad attribute" in bad.error
    checked = results[("checked",)]
    assert isinstance(checked, EvalFailure)
    assert "assertion" in checked.error


@pytest.mark.nix
@needs_nix
def test_eval_drvs_of_an_expression_in_one_call() -> None:
    results = nix.eval_drvs(NixExpr(f"import {DRVS}", impure=True), opts=OFFLINE_NIX)
    _expected_shape(results)
    drvs = nix.eval_json_file(str(DRVS), apply=DRV_PATHS, opts=OFFLINE_NIX)
    assert isinstance(drvs, dict)
    for name, drv_path in drvs.items():
        result = results[(name,)]
        assert isinstance(result, Drv)
        assert result.drv_path == drv_path


@pytest.mark.nix
@needs_nix
def test_eval_drvs_of_what_a_function_selects() -> None:
    wrapper = ROOT / "tests" / "nix" / "drvs-wrapped.nix"
    selected = nix.eval_drvs(
        NixExpr(f"import {wrapper}", impure=True), select="w: w.inner", opts=OFFLINE_NIX
    )
    _expected_shape(selected)
    direct = nix.eval_drvs(NixExpr(f"import {DRVS}", impure=True), opts=OFFLINE_NIX)
    assert selected == direct


@pytest.mark.nix
@needs_nix
def test_eval_drvs_of_a_flake(tmp_path: Path) -> None:
    (tmp_path / "flake.nix").write_text(
        """{
          outputs = { self }: {
            vms.a = derivation {
              name = "vmsilo-flake-a"; builder = "/bin/sh"; args = [ "-c" "echo > $out" ];
              system = "x86_64-linux";
            };
            vms.broken = throw "flake attr broke";
          };
        }"""
    )
    results = nix.eval_drvs(FlakeRef(f"path:{tmp_path}#vms"), opts=OFFLINE_NIX)
    assert set(results) == {("a",), ("broken",)}
    assert isinstance(results[("a",)], Drv)
    broken = results[("broken",)]
    assert isinstance(broken, EvalFailure)
    assert "flake attr broke" in broken.error


@pytest.mark.nix
@needs_nix
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.text(
        alphabet=st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=30
    )
)
def test_nix_string_round_trips_through_nix(text: str) -> None:
    assert nix.eval_json_expr(nix.nix_string(text), opts=OFFLINE_NIX) == text


@pytest.mark.nix
@needs_nix
def test_nix_value_round_trips_through_nix() -> None:
    value: nix.JSON = {"a": [1, "x${y}", None, True, '\\"\r\n'], "b": {"c": 1.5}}
    assert nix.eval_json_expr(nix.nix_value(value), opts=OFFLINE_NIX) == value


@pytest.mark.parametrize(
    ("text", "names"),
    [("a", ["a"]), ('a."b.c".d', ["a", "b.c", "d"]), ('""', [""]), ('a."x\\"y"', ["a", 'x"y'])],
)
def test_split_attr_path(text: str, names: list[str]) -> None:
    assert nix.split_attr_path(text) == names
