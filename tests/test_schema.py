"""The Python model is the schema: generated files must not drift, and the generated NixOS
options module must declare exactly the seed's option tree (names, types, defaults, flags)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from vmsilo_nix import facts
from vmsilo_nix.config import options as options_render
from vmsilo_nix.config.model import Config, Vm
from vmsilo_nix.config.schema import field_nix_type, fields_of, nix_only_of
from vmsilo_nix.nixeval import nix

from .conftest import EXAMPLES, ROOT, needs_nix

TREE = ROOT / "tests" / "nix" / "option-tree.nix"
MODULE_EVAL = ROOT / "tests" / "nix" / "module-eval.nix"
REGENERATE = "regenerate with `vmsilo options --format {fmt} -o {path}`"


@pytest.mark.parametrize(
    ("fmt", "path"), [("nix", "nix/options.nix"), ("markdown", "docs/options.md")]
)
def test_checked_in_file_matches_model(fmt: str, path: str) -> None:
    rendered = options_render.RENDERERS[fmt]()
    assert (ROOT / path).read_text() == rendered, REGENERATE.format(fmt=fmt, path=path)


def test_json_schema_is_valid_json_and_covers_every_option() -> None:
    schema = json.loads(options_render.render_json_schema())
    assert set(schema["properties"]) >= {f.name for f in fields_of(Config)}
    vm = schema["$defs"]["Vm"]
    assert set(vm["properties"]) == {f.name for f in fields_of(Vm)} | {"guestConfig"}
    assert vm["required"] == ["name"]
    assert schema["required"] == ["user"]
    assert schema["properties"]["vmsilo-balloond"]["$ref"] == "#/$defs/Balloond"


def test_markdown_lists_nested_options() -> None:
    md = options_render.render_markdown()
    for path in (
        "programs.vmsilo.nixosVms.*.network.interfaces.<name>.tap.hostAddress",
        "programs.vmsilo.nixosVms.*.sound.capture",
        "programs.vmsilo.nixosVms.*.sharedDirectories.<name>.killprivV2",
        "programs.vmsilo._internal.vmScripts",
        "programs.vmsilo.vmsilo-balloond.psiCeiling",
    ):
        assert f"## `{path}`" in md


@needs_nix
def test_generated_module_parses() -> None:
    instantiate = shutil.which("nix-instantiate")
    assert instantiate is not None
    subprocess.run(
        [instantiate, "--parse", str(ROOT / "nix/options.nix")], check=True, capture_output=True
    )


def _option_tree(monkeypatch: pytest.MonkeyPatch, lib: Path, module: Path) -> dict[str, Any]:
    monkeypatch.setenv("VMSILO_NIXPKGS_LIB", str(lib))
    monkeypatch.setenv("OPTIONS_MODULE", str(module))
    rows: Any = nix.eval_json_file(str(TREE))
    assert isinstance(rows, list)
    return {row["path"]: row for row in rows}


@needs_nix
def test_options_module_declares_the_seed_option_tree(
    monkeypatch: pytest.MonkeyPatch, nixpkgs_lib: Path, seed: Path
) -> None:
    ours = _option_tree(monkeypatch, nixpkgs_lib, ROOT / "nix/options.nix")
    theirs = _option_tree(monkeypatch, nixpkgs_lib, seed)
    assert sorted(ours) == sorted(theirs)
    assert ours == theirs
    # The comparison covers what matters: it is not vacuous.
    assert len(ours) > 100
    assert ours["programs.vmsilo.nixosVms.<sub>.gpu"]["type"] == (
        "boolean or attribute set of (string or signed integer or boolean)"
    )
    assert ours["programs.vmsilo.package"]["readOnly"] is True


@needs_nix
@pytest.mark.parametrize("module_name", ["generated", "seed"])
def test_eval_prints_what_the_module_system_prints(
    monkeypatch: pytest.MonkeyPatch, nixpkgs_lib: Path, seed: Path, run: Any, module_name: str
) -> None:
    """`vmsilo eval` of the example equals the module system's own config.programs.vmsilo."""
    module = seed if module_name == "seed" else ROOT / "nix/options.nix"
    monkeypatch.setenv("VMSILO_NIXPKGS_LIB", str(nixpkgs_lib))
    monkeypatch.setenv("OPTIONS_MODULE", str(module))
    monkeypatch.setenv("CONFIG_FILE", str(EXAMPLES / "desktop.nix"))
    expected = nix.eval_json_file(str(MODULE_EVAL))
    result = run("eval", "--file", str(EXAMPLES / "desktop.nix"))
    assert result.code == 0, result.err
    assert result.json() == expected


@needs_nix
def test_type_descriptions_match_the_module_system(
    monkeypatch: pytest.MonkeyPatch, nixpkgs_lib: Path
) -> None:
    """Error messages and docs describe types in the words NixOS itself uses."""
    tree = _option_tree(monkeypatch, nixpkgs_lib, ROOT / "nix/options.nix")
    ours: dict[str, str] = {}

    def collect(cls: type, prefix: str) -> None:
        for f in fields_of(cls):
            if f.meta.group:
                collect(f.type, f"{prefix}.{f.name}")
                continue
            t = field_nix_type(f)
            ours[f"{prefix}.{f.name}"] = t.describe()
            inner = t
            while inner.kind in ("listOf", "attrsOf", "nullOr"):
                inner = inner.args[0]
            if inner.kind == "submodule" and inner.cls is not None:
                collect(inner.cls, f"{prefix}.{f.name}.<sub>")
        for n in nix_only_of(cls):
            for leaf in n.children or (n,):
                path = f"{prefix}.{n.name}" + (f".{leaf.name}" if n.children else "")
                assert leaf.nix_type is not None
                ours[path] = leaf.nix_type.describe()

    collect(Config, "programs.vmsilo")
    assert ours == {path: row["type"] for path, row in tree.items()}


def test_checked_in_facts_match_the_engine() -> None:
    """The Nix modules read nix/facts.json; it must say what vmsilo_nix/facts.py says."""
    assert json.loads((ROOT / "nix/facts.json").read_text()) == facts.for_nix(), (
        "regenerate with `vmsilo facts -o nix/facts.json`"
    )
