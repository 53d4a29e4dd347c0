"""The CLI's structuring agrees with the generated NixOS module: whatever the module system
refuses, `vmsilo check --file` refuses too. Both run on the same generated Nix values: the real
module system (nixpkgs lib, from VMSILO_NIXPKGS_LIB) and vmsilo's own evaluation of the file.
And no input depth, from JSON or from Nix, makes vmsilo raise RecursionError."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmsilo_nix import ConfigError, VmsiloError
from vmsilo_nix.config.model import Config, Vm
from vmsilo_nix.config.schema import NixType, field_nix_type, fields_of
from vmsilo_nix.nixeval import nix
from vmsilo_nix.nixeval.source import NixFileSource, load_raw
from vmsilo_nix.pipeline import check

from .conftest import ROOT, needs_nix

ACCEPTS = ROOT / "tests" / "nix" / "module-accepts.nix"


def leaves(cls: type, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], NixType]]:
    """Every option below ``cls`` that holds a value (sub-options are walked into)."""
    out = []
    for f in fields_of(cls):
        t = field_nix_type(f)
        if f.meta.group:
            out += leaves(f.type, (*prefix, f.name))
        elif t.kind == "submodule" and t.cls is not None:
            out += leaves(t.cls, (*prefix, f.name))
        elif f.name not in ("name", "nixosVms"):
            out.append(((*prefix, f.name), t))
    return out


VM_LEAVES = leaves(Vm)
TOP_LEAVES = leaves(Config)


# --- Nix values, as text ---------------------------------------------------------------------

SAFE_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=12)
PLAUSIBLE = st.sampled_from(
    [
        "",
        "10G",
        "2s",
        "red",
        "#fff",
        "10.0.0.1/24",
        "01:00.0",
        "tap",
        "qcow2",
        "info",
        "/srv/x",
        "vm",
        "full",
        "firefox",
        "/nix/store/" + "a" * 32 + "-firefox",
    ]
)


def nix_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


SCALARS = st.one_of(
    # -(2**63) has no literal: Nix reads it as the negation of a number that overflows.
    st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1).map(lambda n: f"({n})"),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda x: f"({x!r})"),
    st.booleans().map(lambda b: "true" if b else "false"),
    st.just("null"),
    (SAFE_TEXT | PLAUSIBLE).map(nix_string),
    # Nix path literals (a file and a directory; every literal is an absolute path once read).
    # Both hold `{ }`: where a submodule is expected, the module system imports a path as a
    # module, and a file that is no Nix (/etc/hosts) or is missing fails the whole evaluation.
    st.sampled_from(["./x.nix", "./share"]),
    st.just("(x: x)"),  # a function where data belongs
)
NIX_VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3).map(lambda xs: "[ " + " ".join(xs) + " ]")
        | st.dictionaries(
            st.sampled_from(["path", "ro", "type", "socket", "x", "tap", "via", "enable", "name"]),
            inner,
            max_size=3,
        ).map(lambda d: "{ " + "".join(f"{k} = {v}; " for k, v in d.items()) + "}")
    ),
    max_leaves=6,
)


def at(path: tuple[str, ...], value: str) -> str:
    text = value
    for name in reversed(path):
        text = f'{{ "{name}" = {text}; }}'
    return text


@st.composite
def configs(draw: st.DrawFn) -> str:
    """A programs.vmsilo file with one option, anywhere in the tree, set to a generated value."""
    where_vm = draw(st.booleans())
    path, _ = draw(st.sampled_from(VM_LEAVES if where_vm else TOP_LEAVES))
    value = draw(NIX_VALUES)
    # The file is an attribute set; `//` puts the generated part beside what every config needs.
    if where_vm:
        return f'{{ user = "alice"; nixosVms = [ ({{ name = "a"; }} // {at(path, value)}) ]; }}'
    return f'({{ user = "alice"; nixosVms = [ ]; }} // {at(path, value)})'


def module_accepts(files: list[Path], lib: Path) -> list[bool]:
    env = {
        "VMSILO_NIXPKGS_LIB": str(lib),
        "OPTIONS_MODULE": str(ROOT / "nix" / "options.nix"),
        "CONFIG_FILES": json.dumps([str(f) for f in files]),
    }
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        result = nix.eval_json_file(str(ACCEPTS))
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert isinstance(result, list)
    return [b is True for b in result]


def cli_accepts(file: Path) -> tuple[bool, str]:
    """What `vmsilo check --file` decides, and why (the same evaluation and checks)."""
    try:
        check(load_raw(NixFileSource(file)))
    except ConfigError as e:
        return False, str(e)
    except VmsiloError as e:  # Nix itself refused the file
        return False, str(e)
    return True, ""


# The module's types are the contract; vmsilo may refuse more (its cross-field rules), never less.
@needs_nix
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.lists(configs(), min_size=12, max_size=12))
def test_whatever_the_module_refuses_check_refuses(
    nixpkgs_lib: Path, tmp_path_factory: pytest.TempPathFactory, texts: list[str]
) -> None:
    folder = tmp_path_factory.mktemp("parity11")
    (folder / "x.nix").write_text("{ }\n")  # what ./x.nix points at
    (folder / "share").mkdir()
    (folder / "share" / "default.nix").write_text("{ }\n")  # and ./share
    files = []
    for i, text in enumerate(texts):
        files.append(folder / f"c{i}.nix")
        files[-1].write_text(text + "\n")
    verdicts = module_accepts(files, nixpkgs_lib)
    for file, text, module_ok in zip(files, texts, verdicts, strict=True):
        if not module_ok:
            ok, _ = cli_accepts(file)
            assert not ok, f"the module refuses this, vmsilo accepts it:\n{text}"


@needs_nix
@pytest.mark.parametrize(
    ("value", "where", "said"),
    [
        ("./x.nix", ("color",), "got the Nix path"),  # types.str takes no path
        ('"firefox"', ("guestPrograms",), '"firefox", which is no package'),
        ("[ ./x.nix ]", ("guestPrograms",), "got the Nix path"),  # not a store path
        ("(x: x)", ("memory",), "a Nix function"),
    ],
)
def test_known_disagreements_are_gone(
    nixpkgs_lib: Path, tmp_path: Path, value: str, where: tuple[str, ...], said: str
) -> None:
    (tmp_path / "x.nix").write_text("{ }\n")
    if where == ("guestPrograms",) and not value.startswith("["):
        value = f"[ {value} ]"
    file = tmp_path / "c.nix"
    file.write_text(
        f'{{ user = "alice"; nixosVms = [ {{ name = "a"; {where[0]} = {value}; }} ]; }}'
    )
    assert module_accepts([file], nixpkgs_lib) == [False]
    ok, why = cli_accepts(file)
    assert not ok and said in why


@needs_nix
def test_the_module_and_check_both_accept_paths_where_paths_belong(
    nixpkgs_lib: Path, tmp_path: Path
) -> None:
    file = tmp_path / "c.nix"
    file.write_text('{ user = "alice"; nixosVms = [ { name = "a"; kernel = /boot/bzImage; } ]; }')
    assert module_accepts([file], nixpkgs_lib) == [True]
    raw = load_raw(NixFileSource(file))
    assert check(raw).nixos_vms[0].kernel == "/boot/bzImage"


# --- depth -----------------------------------------------------------------------------------


def nested(depth: int, kind: str) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value] if kind == "list" else {"a": value}
    return value


@settings(max_examples=40, deadline=None)
@given(
    st.integers(min_value=0, max_value=20_000),
    st.sampled_from(["list", "dict"]),
    st.sampled_from([("cpus",), ("gpu",), ("network", "interfaces"), ("rootDisk",), ("zzz",)]),
)
def test_no_json_depth_raises_recursion_error(
    depth: int, kind: str, where: tuple[str, ...]
) -> None:
    vm: dict[str, Any] = {"name": "a"}
    target = vm
    for name in where[:-1]:
        target = target.setdefault(name, {})
    target[where[-1]] = nested(depth, kind)
    try:
        check({"user": "alice", "nixosVms": [vm]})
    except ConfigError as e:
        assert all(p.path.startswith("programs.vmsilo") for p in e.problems)


@needs_nix
@pytest.mark.parametrize("depth", [40, 900, 3000])
def test_no_nix_depth_raises_recursion_error(tmp_path: Path, depth: int) -> None:
    file = tmp_path / "deep.nix"
    value = "[ " * depth + "1" + " ]" * depth
    file.write_text(f'{{ user = "alice"; nixosVms = [ {{ name = "a"; cpus = {value}; }} ]; }}')
    ok, why = cli_accepts(file)
    assert not ok and why
