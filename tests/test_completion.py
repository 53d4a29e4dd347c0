"""The bash completion script: shellcheck-clean, and real bash completes what users type."""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from vmsilo_nix.cli import app as cli
from vmsilo_nix.config import options as options_render
from vmsilo_nix.render.completion import (
    COMPLETED_COMMANDS,
    FORMATS,
    VMSILO_GLOBAL_OPTIONS,
    VMSILO_SUBCOMMANDS,
    Options,
    render_bash_completion,
    value_count,
)

VMS = ["banking", "work", "vault"]
PROGRAMS = {"banking": ["firefox", "thunderbird", "firefox"], "work": ["code", "firefox"]}
SUBCOMMANDS = [
    "check",
    "eval",
    "plan",
    "show",
    "generate",
    "build",
    "status",
    "wayland-context",
    "channel",
    "guest-setup",
    "options",
    "facts",
]

# Calls the function `complete -p` registers for the command, as bash does on TAB, and prints
# COMPREPLY, each word ended by a NUL. Arguments: the script, COMP_LINE (the cursor at its
# end), COMP_WORDS.
DRIVER = r"""
source "$1" || exit 3
COMP_WORDBREAKS=$' \t\n"\'><=;|&(:'
COMP_LINE=$2
COMP_POINT=${#COMP_LINE}
shift 2
COMP_WORDS=("$@")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
read -r -a spec < <(complete -p "${COMP_WORDS[0]}")
function=''
for ((i = 0; i + 1 < ${#spec[@]}; i++)); do
    [[ ${spec[i]} == -F ]] && function=${spec[i + 1]}
done
if [[ -z $function ]]; then
    echo "no completion function for ${COMP_WORDS[0]}" >&2
    exit 4
fi
COMPREPLY=()
"$function" "${COMP_WORDS[0]}" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
if ((${#COMPREPLY[@]})); then
    printf '%s\0' "${COMPREPLY[@]}"
fi
"""
# How bash splits a command line into COMP_WORDS: at blanks, and around runs of the other
# characters of COMP_WORDBREAKS (quotes aside, which these tests do not need).
WORD = re.compile(r"""[^\s"'><=;|&(:]+|["'><=;|&(:]+""")


def write_script(
    directory: Path, vms: Sequence[str] = VMS, programs: Mapping[str, Sequence[str]] = PROGRAMS
) -> Path:
    path = directory / "vm-run"
    path.write_text(render_bash_completion(vms, programs), encoding="utf-8")
    return path


@pytest.fixture
def script(tmp_path: Path) -> Path:
    return write_script(tmp_path)


def typed(script: Path, line: str, cwd: Path | None = None) -> list[str]:
    """What bash offers on TAB after `line` typed (the cursor at its end)."""
    words = WORD.findall(line)
    if not line or line[-1].isspace():
        words.append("")
    argv = ["bash", "--norc", "--noprofile", "-c", DRIVER, "driver", str(script), line]
    result = subprocess.run([*argv, *words], capture_output=True, text=True, check=False, cwd=cwd)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return result.stdout.split("\0")[:-1]


def test_shellcheck_and_bash_syntax(tmp_path: Path) -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    (tmp_path / "empty").mkdir()
    for path in (write_script(tmp_path), write_script(tmp_path / "empty", [], {})):
        for argv in (["shellcheck", "-s", "bash", str(path)], ["shellcheck", str(path)]):
            result = subprocess.run(argv, capture_output=True, text=True, check=False)
            assert result.returncode == 0, result.stdout
        result = subprocess.run(
            ["bash", "-n", str(path)], capture_output=True, text=True, check=False
        )
        assert result.returncode == 0, result.stderr


def test_registers_every_command(script: Path) -> None:
    result = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", 'source "$1" && complete -p', "x", str(script)],
        capture_output=True,
        text=True,
        check=True,
    )
    registered = {line.split()[-1] for line in result.stdout.splitlines()}
    assert registered == set(COMPLETED_COMMANDS)


def test_deterministic() -> None:
    assert render_bash_completion(VMS, PROGRAMS) == render_bash_completion(VMS, dict(PROGRAMS))


# --- the user commands ---------------------------------------------------------------------


def test_vm_run(script: Path, tmp_path: Path) -> None:
    assert typed(script, "vm-run ") == VMS
    assert typed(script, "vm-run ba") == ["banking"]
    assert typed(script, "vm-run x") == []
    assert typed(script, "vm-run banking ") == ["firefox", "thunderbird"]
    assert typed(script, "vm-run banking fi") == ["firefox"]
    assert typed(script, "vm-run work ") == ["code", "firefox"]
    assert typed(script, "vm-run vault ") == []  # no guest programs
    assert typed(script, "vm-run nosuchvm ") == []
    files = tmp_path / "files"
    (files / "docs").mkdir(parents=True)
    (files / "notes.txt").write_text("")
    (files / "my report.pdf").write_text("")
    assert sorted(typed(script, "vm-run banking firefox ", cwd=files)) == [
        "docs",
        "my report.pdf",
        "notes.txt",
    ]
    assert typed(script, "vm-run banking firefox no", cwd=files) == ["notes.txt"]
    assert typed(script, "vm-run banking firefox notes.txt d", cwd=files) == ["docs"]


def test_vm_start_stop_shell(script: Path) -> None:
    for command in ("vm-start", "vm-stop", "vm-shell"):
        assert typed(script, f"{command} ") == VMS
        assert typed(script, f"{command} w") == ["work"]
        assert typed(script, f"{command} banking ") == []
        assert typed(script, f"{command} banking w") == []


def test_vm_status(script: Path) -> None:
    assert typed(script, "vm-status ") == VMS
    # Every position takes a VM; one already named is not offered again.
    assert typed(script, "vm-status banking ") == ["work", "vault"]
    assert typed(script, "vm-status banking vault ") == ["work"]
    assert typed(script, "vm-status banking v") == ["vault"]


# --- vmsilo ----------------------------------------------------------------------------------


def test_vmsilo_subcommands_and_global_options(script: Path) -> None:
    assert typed(script, "vmsilo ") == SUBCOMMANDS
    assert typed(script, "vmsilo w") == ["wayland-context"]
    assert typed(script, "vmsilo --") == ["--help", "--version", "--debug", "--option"]
    assert typed(script, "vmsilo --debug ") == SUBCOMMANDS
    # --option takes two words, whatever they look like.
    assert typed(script, "vmsilo --option ") == []
    assert typed(script, "vmsilo --option substituters ") == []
    assert typed(script, "vmsilo --option substituters '' ") == SUBCOMMANDS
    assert typed(script, "vmsilo --option check show ") == SUBCOMMANDS


def test_vmsilo_options_of_each_subcommand(script: Path) -> None:
    assert typed(script, "vmsilo check --fo") == []
    assert typed(script, "vmsilo check --f") == ["--flake", "--file"]
    assert typed(script, "vmsilo check -") == [
        "-h",
        "--help",
        "--flake",
        "--file",
        "--json",
        "--strict",
        "--host-paths",
    ]
    assert typed(script, "vmsilo eval --") == ["--help", "--flake", "--file"]
    assert typed(script, "vmsilo plan --a") == ["--artifacts"]
    assert typed(script, "vmsilo options -") == ["-h", "--help", "--format", "--output", "-o"]
    assert typed(script, "vmsilo generate -") == [
        "-h",
        "--help",
        "--flake",
        "--file",
        "--out",
        "-o",
        "--artifacts",
        "--build",
        "--nixpkgs",
        "--artifacts-out",
        "--out-link",
        "--no-out-link",
        "--workers",
        "--max-memory-size",
        "--eval-jobs",
        "--no-eval-jobs",
        "--json",
    ]
    assert typed(script, "vmsilo status -") == ["-h", "--help", "--flake", "--tree", "--json"]
    assert typed(script, "vmsilo build --d") == ["--dry-run"]
    assert typed(script, "vmsilo wayland-context --") == [
        "--help",
        "--socket",
        "--app-id",
        "--instance-id",
        "--engine",
        "--display",
        "--timeout",
    ]


def test_vmsilo_option_values(script: Path, tmp_path: Path) -> None:
    assert typed(script, "vmsilo options --format ") == ["nix", "json", "markdown"]
    assert typed(script, "vmsilo options --format j") == ["json"]
    assert typed(script, "vmsilo options --format json ") == []
    # With "=" among COMP_WORDBREAKS, "--format=j" arrives as three words.
    # --format=VALUE: readline completes what follows the "=" (a word break).
    assert typed(script, "vmsilo options --format=") == ["nix", "json", "markdown"]
    assert typed(script, "vmsilo options --format=m") == ["markdown"]
    assert typed(script, "vmsilo check --flake ") == []  # REF#HOST: nothing to offer

    files = tmp_path / "files"
    (files / "hosts").mkdir(parents=True)
    (files / "host.nix").write_text("")
    (files / "artifacts.json").write_text("")
    assert sorted(typed(script, "vmsilo check --file h", cwd=files)) == ["host.nix", "hosts"]
    assert typed(script, "vmsilo plan --artifacts a", cwd=files) == ["artifacts.json"]
    assert typed(script, "vmsilo options -o a", cwd=files) == ["artifacts.json"]
    assert sorted(typed(script, "vmsilo options --output h", cwd=files)) == ["host.nix", "hosts"]
    # generate's --out and -o take a directory.
    assert typed(script, "vmsilo generate --out h", cwd=files) == ["hosts"]
    assert typed(script, "vmsilo generate -o h", cwd=files) == ["hosts"]
    assert typed(script, "vmsilo generate -o hosts ") == []
    assert sorted(typed(script, "vmsilo check --file=h", cwd=files)) == ["host.nix", "hosts"]
    (files / "a:b.nix").write_text("")
    assert typed(script, "vmsilo check --file a:", cwd=files) == ["b.nix"]


def test_vmsilo_vm_positionals(script: Path) -> None:
    # COMP_WORDS splits a flake reference at ":"; it is still one word.
    assert typed(script, "vmsilo show --flake github:me/cfg#desktop ") == VMS
    assert typed(script, "vmsilo plan --flake path:/etc/nixos#desktop --json b") == ["banking"]
    assert typed(script, "vmsilo show ") == VMS
    assert typed(script, "vmsilo show v") == ["vault"]
    assert typed(script, "vmsilo show banking ") == []  # show takes one VM
    assert typed(script, "vmsilo show --file x.nix --json ") == VMS
    assert typed(script, "vmsilo --debug show --flake .#desktop w") == ["work"]
    assert typed(script, "vmsilo plan ") == VMS
    assert typed(script, "vmsilo plan banking --file x.nix ") == ["work", "vault"]
    assert typed(script, "vmsilo check ") == []
    assert typed(script, "vmsilo options ") == []


def test_names_are_quoted_whatever_they_hold(tmp_path: Path) -> None:
    if shutil.which("shellcheck") is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    vms = ["it's", "$(touch pwned)", "*", "new\nline"]
    programs = {"it's": ["`touch pwned`", "x'y", "a b"], "*": ["star"]}
    script = write_script(tmp_path, vms, programs)
    result = subprocess.run(
        ["shellcheck", str(script)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout
    assert typed(script, "vm-run ", cwd=tmp_path) == vms
    assert typed(script, "vm-run $", cwd=tmp_path) == ["$(touch pwned)"]
    assert typed(script, "vm-run it's ", cwd=tmp_path) == ["`touch pwned`", "a b", "x'y"]
    assert typed(script, "vm-run * ", cwd=tmp_path) == ["star"]
    assert typed(script, "vm-status * it's ", cwd=tmp_path) == ["$(touch pwned)", "new\nline"]
    assert not (tmp_path / "pwned").exists()


def test_no_vms(tmp_path: Path) -> None:
    script = write_script(tmp_path, [], {})
    assert typed(script, "vm-run ") == []
    assert typed(script, "vm-run x ") == []
    assert typed(script, "vmsilo show ") == []
    assert typed(script, "vmsilo ") == SUBCOMMANDS


# --- the tables against the real parser --------------------------------------------------------


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("vmsilo has no subcommands")


def _options(parser: argparse.ArgumentParser) -> dict[str, int]:
    """Each option string with the number of words that follow it."""
    found: dict[str, int] = {}
    for action in parser._actions:
        for option in action.option_strings:
            found[option] = action.nargs if isinstance(action.nargs, int) else 1
    return found


def _counts(options: Options) -> dict[str, int]:
    return {option: value_count(kind) for option, kind in options.items()}


def test_tables_match_the_cli_parser() -> None:
    parser = cli.build_parser()
    assert _options(parser) == _counts(VMSILO_GLOBAL_OPTIONS)
    subparsers = _subparsers(parser)
    # wayland-context may not exist yet; every subcommand the CLI has is known, in its order.
    assert list(subparsers) == [name for name in VMSILO_SUBCOMMANDS if name in subparsers]
    for name, sub in subparsers.items():
        assert _options(sub) == _counts(VMSILO_SUBCOMMANDS[name]), name
    assert set(FORMATS) == set(options_render.RENDERERS)
