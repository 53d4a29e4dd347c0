"""The `vmsilo` command as users run it: real Nix on the shipped examples, every source kind."""

from __future__ import annotations

import io
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from vmsilo_nix.cli import app as cli
from vmsilo_nix.cli.app import print_json
from vmsilo_nix.config import options as options_render
from vmsilo_nix.nixeval import nix

from .conftest import EXAMPLES, OFFLINE, ROOT, minimal, needs_nix

DESKTOP_NIX = str(EXAMPLES / "desktop.nix")
DESKTOP_JSON = str(EXAMPLES / "desktop.json")
NAMES = ["banking", "work", "vault", "net"]


@needs_nix
def test_check_every_source_kind(run: Any, example_flake: str) -> None:
    for args in (
        ["--file", DESKTOP_NIX],
        ["--file", DESKTOP_JSON],
        ["--flake", f"{example_flake}#desktop"],
    ):
        result = run("check", *args)
        assert result.code == 0, result.err
        assert result.out.strip() == "valid: 4 VMs (banking, work, vault, net)"
        result = run("check", "--json", *args)
        assert result.json() == {"valid": True, "problems": [], "warnings": [], "vms": NAMES}


@needs_nix
def test_eval_is_the_same_from_every_source(run: Any, example_flake: str) -> None:
    outputs = [
        run("eval", *args)
        for args in (
            ["--file", DESKTOP_NIX],
            ["--file", DESKTOP_JSON],
            ["--flake", f"{example_flake}#desktop"],
        )
    ]
    assert [r.code for r in outputs] == [0, 0, 0]
    assert outputs[0].out == outputs[1].out == outputs[2].out
    data = outputs[0].json()
    assert [vm["name"] for vm in data["nixosVms"]] == NAMES
    # every default is filled in, names as Nix spells them
    banking = data["nixosVms"][0]
    assert banking["sound"] == {"capture": False, "playback": False}
    assert banking["rootOverlay"] == {"size": "10G", "type": "qcow2"}
    assert data["vmsilo-balloond"]["pollInterval"] == "1s"
    assert "_internal" not in data and "package" not in data
    # keys are sorted, as `nix eval --json` sorts them
    assert list(data) == sorted(data)


@needs_nix
def test_example_json_is_the_nix_file(run: Any) -> None:
    """examples/desktop.json is the same data as examples/desktop.nix (no drift)."""
    assert nix.eval_json_file(DESKTOP_NIX) == json.loads(Path(DESKTOP_JSON).read_text())


def test_json_from_stdin(run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        "sys.stdin", io.StringIO(json.dumps({"user": "a", "nixosVms": [{"name": "x", "cpus": 0}]}))
    )
    result = run("check", "--file", "-")
    assert result.code == 1
    assert "programs.vmsilo.nixosVms[0] (x).cpus: must be at least 1, got 0" in result.err


def test_invalid_config_lists_every_problem(run: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps(
            {
                "user": "a",
                "hostNetworking": {"nat": {"enable": True}},
                "nixosVms": [{"name": "work", "cpu": 2, "memory": 0}],
            }
        )
    )
    result = run("check", "--file", str(bad))
    assert result.code == 1
    assert result.out == ""
    lines = result.err.splitlines()
    assert lines[0] == "error: the configuration has 3 problems:"
    assert (
        "programs.vmsilo.nixosVms[0] (work).cpu: unknown option; did you mean 'cpus'?" in result.err
    )
    result = run("check", "--json", "--file", str(bad))
    assert result.code == 1
    doc = result.json()
    assert doc["valid"] is False
    assert {
        "path": "programs.vmsilo.nixosVms[0] (work).cpu",
        "message": "unknown option; did you mean 'cpus'?",
    } in doc["problems"]


def test_type_errors_stop_before_rules(run: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"user": "a", "nixosVms": [{"name": "x", "autoStart": "no"}]}')
    result = run("eval", "--file", str(bad))
    assert result.code == 1 and result.out == ""
    assert 'autoStart: expected boolean, got the string "no"' in result.err


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["check", "--file", "/nonexistent/x.nix"], 3, "/nonexistent/x.nix: no such file"),
        (["check", "--file", "config.yaml"], 3, "--file expects a .nix or .json file"),
        (["check", "--flake", "no-host-here"], 3, "--flake expects REF#HOST"),
    ],
)
def test_source_errors(run: Any, args: list[str], code: int, message: str) -> None:
    result = run(*args)
    assert result.code == code
    assert message in result.err
    assert "Traceback" not in result.err


def test_bad_json_names_the_position(run: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"user": "a",\n  "nixosVms": [}')
    result = run("check", "--file", str(bad))
    assert result.code == 3
    assert f"{bad}: not valid JSON: Expecting value (line 2, column 16)" in result.err
    bad.write_text('{"user": NaN}')
    assert "NaN is not valid JSON" in run("check", "--file", str(bad)).err


@needs_nix
def test_nix_error_shows_the_last_error_block(run: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad.nix"
    bad.write_text('{ user = "a"; nixosVms = [ { name = throw "no name for you"; } ]; }\n')
    result = run("check", "--file", str(bad))
    assert result.code == 3
    assert "error: no name for you" in result.err
    assert "--debug" in result.err
    debug = run("--debug", "check", "--file", str(bad))
    assert debug.code == 3
    assert "command: nix " in debug.err and "--show-trace" in debug.err


@needs_nix
def test_nix_functions_are_named_not_crashed_on(run: Any, tmp_path: Path) -> None:
    f = tmp_path / "f.nix"
    f.write_text(
        '{ user = "a"; nixosVms = [ { name = "x"; memory = m: m; '
        "guestConfig = { pkgs, ... }: { }; } ]; }\n"
    )
    result = run("check", "--file", str(f))
    assert result.code == 1
    assert (
        "programs.vmsilo.nixosVms[0] (x).memory: expected signed integer, got a Nix "
        "function" in result.err
    )


@needs_nix
def test_flake_host_missing(run: Any, example_flake: str) -> None:
    result = run("check", "--flake", f"{example_flake}#laptop")
    assert result.code == 3
    assert "laptop" in result.err


def test_missing_nix_gives_an_install_hint(
    run: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    result = run("check", "--file", DESKTOP_NIX)
    assert result.code == 4
    assert result.err.strip().startswith("error: 'nix' was not found on PATH; install Nix")
    assert len(result.err.strip().splitlines()) == 1


def test_usage_errors_exit_2(run: Any) -> None:
    with pytest.raises(SystemExit) as info:
        run("check")
    assert info.value.code == 2
    with pytest.raises(SystemExit) as info:
        run("check", "--file", "a.nix", "--flake", ".#x")
    assert info.value.code == 2


def test_options_command_writes_atomically(run: Any, tmp_path: Path) -> None:
    for fmt in ("nix", "json", "markdown"):
        out = tmp_path / "sub" / f"options.{fmt}"
        result = run("options", "--format", fmt, "-o", str(out))
        assert result.code == 0
        assert out.read_text() == options_render.RENDERERS[fmt]()
        assert oct(out.stat().st_mode & 0o777) == "0o644"
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == [
        "options.json",
        "options.markdown",
        "options.nix",
    ]  # no temporary files left
    assert json.loads(run("options", "--format", "json").out)["title"] == "programs.vmsilo"


@needs_nix
def test_console_script_end_to_end() -> None:
    """The installed entry point, as a separate process, the way users and scripts run it."""
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "vmsilo_nix", *OFFLINE, "eval", "--file", DESKTOP_NIX],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["user"] == "alice"
    proc = subprocess.run(
        [sys.executable, "-m", "vmsilo_nix", "--help"], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0 and "Exit status" in proc.stdout


@needs_nix
@pytest.mark.parametrize("vms", [1, 40])
def test_one_nix_process_whatever_the_number_of_vms(
    run: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vms: int
) -> None:
    """A `nix` on PATH that logs each call and hands it to the real one."""
    real = shutil.which("nix")
    assert real is not None
    log = tmp_path / "calls"
    wrapper = tmp_path / "bin" / "nix"
    wrapper.parent.mkdir()
    wrapper.write_text(
        "#!/bin/sh\n"
        f"{{ printf call; for a; do case $a in eval|build|--file) printf ' %s' $a;; esac; done; "
        f"echo; }} >> {log}\n"
        f'exec {real} "$@"\n'
    )
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}:{os.environ['PATH']}")
    config = tmp_path / "many.nix"
    config.write_text(
        '{ user = "a"; nixosVms = [ '
        + " ".join(f'{{ name = "vm{i}"; network.interfaces.wan.tap = {{ }}; }}' for i in range(vms))
        + " ]; }\n"
    )
    for command in (["check"], ["eval"], ["plan", "--json"], ["show", "vm0"]):
        log.unlink(missing_ok=True)
        result = run(*command, "--file", str(config))
        assert result.code == 0, result.err
        calls = log.read_text().splitlines()
        assert calls == ["call eval --file"]


ARTIFACTS_FILE = str(ROOT / "tests" / "golden" / "desktop-artifacts.json")


@needs_nix
def test_plan_json_is_the_same_from_every_source(run: Any, example_flake: str) -> None:
    outs = [
        run("plan", "--json", "--artifacts", ARTIFACTS_FILE, *args)
        for args in (
            ["--file", DESKTOP_NIX],
            ["--file", DESKTOP_JSON],
            ["--flake", f"{example_flake}#desktop"],
        )
    ]
    assert [r.code for r in outs] == [0, 0, 0], [r.err for r in outs]
    assert outs[0].out == outs[1].out == outs[2].out
    golden = json.loads((ROOT / "tests" / "golden" / "desktop-plan.json").read_text())
    assert outs[0].json() == golden


def test_plan_of_some_vms(run: Any) -> None:
    result = run("plan", "--json", "vault", "banking", "--file", DESKTOP_JSON)
    assert result.code == 0
    doc = result.json()
    assert list(doc["vms"]) == ["banking", "vault"] and doc["startOrder"] == ["banking", "vault"]
    assert doc["vms"]["vault"]["unbuilt"] == ["initrd", "kernel", "rootImage", "toplevel"]


@needs_nix
def test_show_from_the_flake(run: Any, example_flake: str) -> None:
    shown = run("show", "banking", "--flake", f"{example_flake}#desktop")
    assert shown.code == 0, shown.err
    assert "VM banking" in shown.out and "banking-0" in shown.out


@needs_nix
def test_plan_and_show_for_people(run: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    table = run("plan", "--file", DESKTOP_JSON)
    assert table.code == 0
    assert "start order: banking, vault, net, work" in table.out
    shown = run("show", "work", "--file", DESKTOP_JSON, "--artifacts", ARTIFACTS_FILE)
    assert (
        shown.out == run("show", "work", "--file", DESKTOP_NIX, "--artifacts", ARTIFACTS_FILE).out
    )
    assert shown.code == 0
    lines = shown.out.splitlines()
    assert any(
        line.startswith("--mem 8192") and "nixosVms[1] (work).memory" in line for line in lines
    )
    assert any(line.startswith("--shared-dir=/srv/reference") for line in lines)
    assert any("work-0" in line and "br-work" in line and "alice" in line for line in lines)
    assert "not built yet" not in shown.out
    unbuilt = run("show", "vault", "--file", DESKTOP_JSON)
    assert "not built yet: initrd, kernel, rootImage, toplevel" in unbuilt.out
    as_json = run("show", "net", "--json", "--file", DESKTOP_JSON)
    assert as_json.json()["crosvm"]["argv"][-1] == "<unbuilt:kernel>"


def test_unknown_vm_is_a_usage_error(run: Any) -> None:
    result = run("show", "bankng", "--file", DESKTOP_JSON)
    assert result.code == 2
    assert "no VM is named 'bankng'; did you mean 'banking'?" in result.err


def test_bad_artifacts_file(run: Any, tmp_path: Path) -> None:
    bad = tmp_path / "a.json"
    bad.write_text('{"vms": {"work": {"kernal": "/k"}}}')
    result = run("plan", "--file", DESKTOP_JSON, "--artifacts", str(bad))
    assert result.code == 1
    assert "artifacts.vms.work.kernal: unknown option; did you mean 'kernel'?" in result.err
    result = run("plan", "--file", DESKTOP_JSON, "--artifacts", str(tmp_path / "none.json"))
    assert result.code == 3 and "none.json: no such file" in result.err


def test_misspelt_program_in_artifacts(run: Any, tmp_path: Path) -> None:
    bad = tmp_path / "a.json"
    bad.write_text('{"packages": {"crossvm": "/nix/store/x-crosvm"}}')
    result = run("plan", "--file", DESKTOP_JSON, "--artifacts", str(bad))
    assert result.code == 1
    assert (
        "artifacts.packages.crossvm: vmsilo runs no program of that name; did you mean "
        "'crosvm'?" in result.err
    )


def _off_subnet_gateway(tmp_path: Path) -> str:
    wan = {
        "tap": {"hostAddress": "10.0.0.1/24"},
        "addresses": ["10.0.0.2/24"],
        "routes": {"0.0.0.0/0": {"via": "10.9.9.9"}},
    }
    path = tmp_path / "warned.json"
    path.write_text(json.dumps(minimal(network={"interfaces": {"wan": wan}})))
    return str(path)


GATEWAY_WARNING = (
    'programs.vmsilo.nixosVms[0] (a).network.interfaces.wan.routes."0.0.0.0/0".via: '
    "gateway 10.9.9.9 is on none of the interface's subnets (10.0.0.0/24)"
)


def test_check_prints_warnings_and_passes(run: Any, tmp_path: Path) -> None:
    r = run("check", "--file", _off_subnet_gateway(tmp_path))
    assert r.code == 0
    assert r.out == "valid: 1 VM (a) (1 warning)\n"
    assert r.err == f"warning: {GATEWAY_WARNING}\n"


def test_check_json_carries_warnings(run: Any, tmp_path: Path) -> None:
    r = run("check", "--json", "--file", _off_subnet_gateway(tmp_path))
    assert r.code == 0
    path, _, message = GATEWAY_WARNING.partition(": ")
    assert r.json() == {
        "valid": True,
        "problems": [],
        "warnings": [{"path": path, "message": message}],
        "vms": ["a"],
    }


def test_check_strict_refuses_warnings(run: Any, tmp_path: Path) -> None:
    r = run("check", "--strict", "--file", _off_subnet_gateway(tmp_path))
    assert r.code == 1
    assert f"warning: {GATEWAY_WARNING}\n" in r.err
    assert "error: 1 warning, and --strict refuses warnings" in r.err
    j = run("check", "--strict", "--json", "--file", _off_subnet_gateway(tmp_path))
    assert j.code == 1 and j.json()["valid"] is False
    clean = run("check", "--strict", "--file", str(EXAMPLES / "desktop.json"))
    assert clean.code == 0


def test_plan_prints_warnings_on_stderr_only(run: Any, tmp_path: Path) -> None:
    r = run("plan", "--json", "--file", _off_subnet_gateway(tmp_path))
    assert r.code == 0
    assert r.err == f"warning: {GATEWAY_WARNING}\n"
    assert "a" in r.json()["vms"]


def _table_rows(text: str) -> tuple[str, dict[str, list[str]]]:
    """The start order line and each VM's row (split on runs of two or more spaces)."""
    lines = text.splitlines()
    order = lines[0].removeprefix("start order: ")
    rows = {}
    for line in lines[2:]:
        cells = [c for c in line.strip().split("  ") if c.strip()]
        rows[cells[0].strip()] = [c.strip() for c in cells]
    return order, rows


@pytest.mark.parametrize("wanted", [[], ["work"], ["vault", "banking"]])
def test_plan_table_and_json_come_from_the_same_data(run: Any, wanted: list[str]) -> None:
    doc = run("plan", "--json", *wanted, "--file", DESKTOP_JSON).json()
    table = run("plan", *wanted, "--file", DESKTOP_JSON)
    assert table.code == 0
    order, rows = _table_rows(table.out)
    assert order == ", ".join(doc["startOrder"])  # `plan work` also starts net
    assert list(rows) == list(doc["vms"])
    for name, vm in doc["vms"].items():
        flags = {a["words"][0]: a["words"][1:] for a in vm["crosvm"]["args"]}
        row = rows[name]
        assert row[1] == str(vm["cid"])
        assert row[2:4] == [flags["--cpus"][0], f"{flags['--mem'][0]} MiB"]
        assert row[4] == (", ".join(t["name"] for t in vm["taps"]) or "-")
        assert row[-1] == ", ".join(vm["unbuilt"])


def test_tables_use_the_whole_line_when_not_a_terminal(tmp_path: Path) -> None:
    """Piped to a file, nothing is cut at 80 columns: every CID, store path and option path."""
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}

    def show(*extra: str) -> str:
        argv = ["show", "work", *extra, "--file", DESKTOP_JSON, "--artifacts", ARTIFACTS_FILE]
        return subprocess.run(
            [sys.executable, "-m", "vmsilo_nix", *argv],
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
            env=env,
        ).stdout

    out, doc = show(), json.loads(show("--json"))
    lines = [line.rstrip() for line in out.splitlines()]
    for a in doc["crosvm"]["args"]:
        word = " ".join(shlex.quote(w) for w in a["words"])
        assert any(line.startswith(word) for line in lines), word  # whole, on one line
        for option in a["options"]:
            short = option.removeprefix("programs.vmsilo.")
            assert any(line.startswith(word) and short in line for line in lines), short
    assert max(len(line) for line in lines) > 80


@pytest.mark.parametrize(
    ("entry", "path", "message"),
    [
        (
            {"packages": {"crosvm": "result/bin"}},
            "artifacts.packages.crosvm",
            "expected a package under /nix/store/ (as Nix builds them), got 'result/bin'",
        ),
        (
            {"packages": {"crosvm": "/usr/bin"}},
            "artifacts.packages.crosvm",
            "expected a package under /nix/store/",
        ),
        (  # a file inside a package is not the package
            {"packages": {"crosvm": "/nix/store/0000-crosvm/bin/crosvm"}},
            "artifacts.packages.crosvm",
            "expected a package under /nix/store/",
        ),
        (
            {"vms": {"work": {"kernel": "linux/bzImage"}}},
            "artifacts.vms.work.kernel",
            "expected a store path under /nix/store/ (as Nix builds them), got 'linux/bzImage'",
        ),
        (  # leaving the store through ..
            {"vms": {"work": {"rootImage": "/nix/store/../../home/a/root.img"}}},
            "artifacts.vms.work.rootImage",
            "expected a store path under /nix/store/",
        ),
        (
            {"vms": {"work": {"toplevel": "/run/current-system"}}},
            "artifacts.vms.work.toplevel",
            "expected a store path under /nix/store/",
        ),
        (
            {"vms": {"work": {"initrd": "/nix/store"}}},
            "artifacts.vms.work.initrd",
            "expected a store path under /nix/store/",
        ),
    ],
)
def test_artifacts_must_be_store_paths(
    run: Any, tmp_path: Path, entry: dict[str, Any], path: str, message: str
) -> None:
    bad = tmp_path / "a.json"
    bad.write_text(json.dumps(entry))
    result = run("plan", "--file", DESKTOP_JSON, "--artifacts", str(bad))
    assert result.code == 1
    assert f"{path}: {message}" in result.err
    assert "Traceback" not in result.err


def test_artifacts_for_a_vm_the_configuration_lacks(run: Any, tmp_path: Path) -> None:
    good = json.loads(Path(ARTIFACTS_FILE).read_text())
    good["vms"]["wrok"] = good["vms"].pop("work")
    bad = tmp_path / "a.json"
    bad.write_text(json.dumps(good))
    for command in (["plan"], ["show", "banking"], ["generate", "--out", str(tmp_path / "o")]):
        result = run(*command, "--file", DESKTOP_JSON, "--artifacts", str(bad))
        assert result.code == 1, command
        assert (
            f"artifacts.vms.wrok: {bad} gives artifacts for VM 'wrok', which the configuration "
            "does not have; did you mean 'work', which has none? (VMs: banking, work, vault, "
            "net)" in result.err
        )
    assert not (tmp_path / "o").exists()
    # an entry left from a VM since removed (the build keeps them) is named, and ignored
    stale = json.loads(Path(ARTIFACTS_FILE).read_text())
    stale["vms"]["old-browser"] = stale["vms"]["work"]
    bad.write_text(json.dumps(stale))
    result = run("plan", "--json", "--file", DESKTOP_JSON, "--artifacts", str(bad))
    assert result.code == 0
    assert (
        f"warning: artifacts.vms.old-browser: {bad} gives artifacts for VM 'old-browser', which "
        "the configuration does not have; ignored (VMs: banking, work, vault, net)" in result.err
    )
    assert (
        result.json()
        == run("plan", "--json", "--file", DESKTOP_JSON, "--artifacts", ARTIFACTS_FILE).json()
    )
    # the golden file, every name known and every path in the store, is accepted quietly
    clean = run("plan", "--file", DESKTOP_JSON, "--artifacts", ARTIFACTS_FILE)
    assert clean.code == 0 and "warning" not in clean.err


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("command", [["plan", "--json"], ["check", "--json"], ["check"]])
def test_a_full_standard_output_exits_5(command: list[str]) -> None:
    # plan's document fails in its write, check's few lines only when flushed at exit
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "vmsilo_nix", *OFFLINE, *command, "--file", DESKTOP_JSON],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
    assert proc.returncode == 5, proc.stderr
    assert "error: cannot write standard output: No space left on device" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_program_prints_the_whole_document_before_it_exits(run: Any) -> None:
    # the program leaves a batch command's data to the process's exit: all output goes first
    proc = subprocess.run(
        [sys.executable, "-m", "vmsilo_nix", *OFFLINE, "plan", "--json", "--file", DESKTOP_JSON],
        capture_output=True,
        text=True,
        check=True,
    )
    assert proc.stdout == run("plan", "--json", "--file", DESKTOP_JSON).out
    assert json.loads(proc.stdout)["startOrder"]


class _Terminal(io.TextIOWrapper):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("stream_type", "expected"),
    [
        # a pipe or file: compact UTF-8 (not \u escapes)
        (io.TextIOWrapper, '{"vm":["é",1]}\n'),
        # a terminal: indented
        (_Terminal, '{\n  "vm": [\n    "é",\n    1\n  ]\n}\n'),
    ],
)
def test_json_output_on_pipes_and_terminals(
    monkeypatch: pytest.MonkeyPatch, stream_type: type[io.TextIOWrapper], expected: str
) -> None:
    raw = io.BytesIO()
    stream = stream_type(raw, encoding="ascii")  # the bytes do not depend on the locale
    stream.write("")  # text written before goes first
    monkeypatch.setattr(sys, "stdout", stream)
    print_json({"vm": ["é", 1]})
    stream.flush()
    assert raw.getvalue().decode() == expected


def test_json_output_keeps_what_orjson_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lone surrogate (from bytes that were not UTF-8) and an integer beyond 64 bits are
    still written, as the json module writes them; a text-only stream gets text."""
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    print_json({"line": "bad \udcff byte", "big": 2**70})
    assert out.getvalue() == '{"line": "bad \\udcff byte", "big": 1180591620717411303424}\n'
    assert json.loads(out.getvalue())["big"] == 2**70


@pytest.mark.parametrize(
    "argv",
    [
        ["plan", "--json", "--file", "x.json", "work"],
        ["--debug", "--option", "substituters", "", "check", "--strict", "--file", "a.nix"],
        ["--opt", "check", "plan", "show", "--file", "x.json", "work"],  # abbreviated, a value
        ["build", "--dry-run", "--flake", ".#host", "--option", "a", "b"],
        ["status", "--json"],
        ["bogus"],
        ["--option", "a"],
        ["check", "--bogus"],
        ["plan"],
        [],
    ],
)
def test_the_parser_for_one_command_parses_as_the_whole_one(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """build_parser(argv) makes only the parser of the command argv runs; what it makes of
    argv (or the usage error it prints) is the whole parser's."""

    def parse(parser: Any) -> tuple[Any, str]:
        try:
            return vars(parser.parse_args(argv)), ""
        except SystemExit as e:
            return e.code, capsys.readouterr().err

    assert parse(cli.build_parser(argv)) == parse(cli.build_parser())


def test_the_parser_for_one_command_makes_only_that_one() -> None:
    sub = next(a for a in cli.build_parser(["plan"])._actions if a.dest == "command")
    assert list(sub.choices or ()) == ["plan"]
    everything = next(a for a in cli.build_parser(["--help"])._actions if a.dest == "command")
    assert list(everything.choices or ()) == list(cli.COMMANDS)


#: autoStart VMs whose devices need the user's session, and one that needs nothing of it.
SESSION_VMS = {
    "enable": True,
    "user": "alice",
    "nixosVms": [
        {"name": "desk", "autoStart": True, "sharedHome": False},
        {"name": "radio", "autoStart": True, "gpu": False, "sharedHome": False},
        {
            "name": "router",
            "autoStart": True,
            "gpu": False,
            "sound": {"playback": False},
            "sharedHome": False,
        },
    ],
}


def test_check_warns_that_a_session_vm_does_not_start_at_boot(run: Any, tmp_path: Path) -> None:
    config = tmp_path / "session.json"
    config.write_text(json.dumps(SESSION_VMS))
    r = run("check", "--file", str(config))
    assert r.code == 0
    assert r.err == (
        "warning: programs.vmsilo.nixosVms[0] (desk).autoStart: its GPU takes the Wayland "
        "socket of the VM user's graphical session, so it starts when that session starts, "
        "not at boot; for a VM that starts at boot, set gpu = false and sound.playback = false\n"
        "warning: programs.vmsilo.nixosVms[1] (radio).autoStart: its sound backend is a client "
        "of the VM user's PipeWire, so it starts when the user's session starts (login, or "
        "lingering), not at boot; for a VM that starts at boot, set sound.playback = false\n"
    )
    planned = run("plan", "--json", "--file", str(config)).json()["vms"]
    assert {n: (v["autoStart"], v["needs"]) for n, v in planned.items()} == {
        "desk": (True, "graphical-session"),
        "radio": (True, "session"),
        "router": (True, "boot"),
    }
    shown = {vm: run("show", "--file", str(config), vm).out for vm in ("desk", "radio", "router")}
    assert "starts when the VM user's graphical session starts" in " ".join(shown["desk"].split())
    assert "starts when the VM user's session starts" in " ".join(shown["radio"].split())
    assert "starts at boot" in shown["router"]


def test_check_host_paths_warns_of_missing_shared_directories(run: Any, tmp_path: Path) -> None:
    """Only with --host-paths (the switch's check, on the host): the directories the user
    named are looked for on this machine; the default home is the host module's to make."""
    here = tmp_path / "here"
    here.mkdir()
    gone = tmp_path / "gone"
    config = tmp_path / "shares.json"
    vm = {
        "name": "a",
        "gpu": False,
        "sound": {"playback": False},
        "sharedHome": str(gone),
        "sharedDirectories": {"ok": {"path": str(here)}, "docs": {"path": str(gone / "docs")}},
    }
    config.write_text(json.dumps({"user": "alice", "nixosVms": [vm, {"name": "b"}]}))
    assert run("check", "--file", str(config)).err == ""
    r = run("check", "--host-paths", "--file", str(config))
    assert r.code == 0
    assert r.err == "".join(
        f"warning: programs.vmsilo.nixosVms[0] (a).{option}: the directory {path} does not "
        "exist on this machine; the VM refuses to start until it does (create it, readable by "
        "alice)\n"
        for option, path in (("sharedHome", gone), ("sharedDirectories.docs.path", gone / "docs"))
    )
    strict = run("check", "--host-paths", "--strict", "--json", "--file", str(config))
    assert strict.code == 1
    assert [w["path"] for w in strict.json()["warnings"]] == [
        "programs.vmsilo.nixosVms[0] (a).sharedHome",
        "programs.vmsilo.nixosVms[0] (a).sharedDirectories.docs.path",
    ]
