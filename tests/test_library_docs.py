"""docs/library.md's examples run as written, and every name it calls public is importable."""

from __future__ import annotations

import re
import subprocess
import sys

import vmsilo_nix

from .conftest import ROOT, needs_nix

DOC = ROOT / "docs" / "library.md"
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def examples() -> list[str]:
    return _BLOCK.findall(DOC.read_text())


@needs_nix
def test_every_example_runs_as_a_user_would() -> None:
    blocks = examples()
    assert blocks, "docs/library.md has no python example"
    for code in blocks:
        # A fresh interpreter in the checkout, as a user's script would be: the example's
        # relative paths are from there.
        proc = subprocess.run(
            [sys.executable, "-c", code],
            check=False,
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        assert "Traceback" not in proc.stderr
        assert proc.stdout.strip(), "the example printed nothing"


@needs_nix
def test_the_first_example_prints_each_vm_of_the_example_desktop() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", examples()[0]], check=False, capture_output=True, text=True, cwd=ROOT
    )
    names = [line.split()[0] for line in proc.stdout.splitlines()]
    assert names == ["banking", "work", "vault", "net"]


def test_an_example_reports_a_bad_configuration_without_a_traceback() -> None:
    """The example's error handling catches what a user can cause: here, an invalid file."""
    code = examples()[0].replace("examples/desktop.nix", "examples/no-such-file.nix")
    proc = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr
    assert "cannot read the configuration:" in proc.stdout


def test_every_public_name_in_the_table_is_importable() -> None:
    text = DOC.read_text()
    section = text[text.index("## What is public") : text.index("## Errors")]
    names = {m.group(1) for m in re.finditer(r"^\| `([A-Za-z_]+)[`(]", section, re.M)} | {
        m.group(1) for m in re.finditer(r"`([A-Z][A-Za-z]+)`", section)
    }
    errors = text[text.index("## Errors") :]
    names |= {m.group(1) for m in re.finditer(r"`([A-Z][A-Za-z]+Error)`", errors)}
    assert {"load", "plan", "check", "ConfigError"} <= names
    missing = sorted(n for n in names if not hasattr(vmsilo_nix, n))
    assert missing == []
