"""No input whatsoever produces a Python traceback: every outcome is a Config or a ConfigError."""

from __future__ import annotations

import copy
import io
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmsilo_nix import ConfigError
from vmsilo_nix.cli import app as cli
from vmsilo_nix.config.model import Config
from vmsilo_nix.pipeline import check

from .conftest import EXAMPLES

# Lone surrogates included: JSON can escape them ("\\ud800") although no Nix string holds one.
TEXT = st.text(st.characters(exclude_categories=()), max_size=20)
JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=25,
)
EXAMPLE = json.loads((EXAMPLES / "desktop.json").read_text())
# Strings that look like the option values users write, to get past the type checks into the
# cross-field rules.
PLAUSIBLE = st.sampled_from(
    [
        "",
        "10G",
        "0",
        "-1m",
        "250ms",
        "2s",
        "red",
        "#fff",
        "rgb(1,2,3)",
        "10.0.0.1/24",
        "fc00::1/64",
        "0.0.0.0/0",
        "::/0",
        "01:00.0",
        "0000:01:00.0",
        "52:54:00:12:34:56",
        "ff:ff:ff:ff:ff:ff",
        "banking",
        "a" * 40,
        "/shared/x",
        "x,y",
        "a:b",
        "\0",
        "é",
        "\ud800",
        "map:1:2:3",
    ]
)


def outcome(raw: Any) -> Config | ConfigError:
    try:
        return check(raw)
    except ConfigError as e:
        assert e.problems, "a ConfigError always says what is wrong"
        for p in e.problems:
            assert p.path.startswith("programs.vmsilo") and p.message
        return e


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(JSON_VALUES)
def test_arbitrary_json(raw: Any) -> None:
    outcome(raw)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from([*sorted(EXAMPLE["nixosVms"][0]), "name", "network"]),
        JSON_VALUES | PLAUSIBLE,
        max_size=4,
    )
)
def test_arbitrary_vm_options(vm: dict[str, Any]) -> None:
    outcome({"user": "a", "nixosVms": [vm, {"name": "b"}]})


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


PATHS = _paths(EXAMPLE)[1:]


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(PATHS), JSON_VALUES | PLAUSIBLE), min_size=1, max_size=4))
def test_mutated_example(edits: list[tuple[tuple[Any, ...], Any]]) -> None:
    raw = copy.deepcopy(EXAMPLE)
    for path, value in edits:
        target = raw
        try:
            for seg in path[:-1]:
                target = target[seg]
            target[path[-1]] = value
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit replaced a parent
    outcome(raw)


@settings(
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(st.text(max_size=60) | JSON_VALUES.map(json.dumps))
def test_cli_on_arbitrary_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    code = cli.main(["check", "--file", "-"])
    err = capsys.readouterr().err
    assert code in (0, 1, 3)
    assert "Traceback" not in err
