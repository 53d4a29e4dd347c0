"""The engine's stages in order, as the CLI and other tools run them.

source (Nix evaluates it) -> config (structured, then the rules) -> plan (then the checks that
need planned values). Each stage only imports the one before it; this module is where they
meet, so that no stage reaches back up.
"""

from __future__ import annotations

from vmsilo_nix.config import rules
from vmsilo_nix.config.model import Config
from vmsilo_nix.errors import ConfigError, Problem
from vmsilo_nix.nixeval import nix
from vmsilo_nix.nixeval.source import Source, load_raw
from vmsilo_nix.plan import checks


def findings(config: Config) -> list[Problem]:
    """Every rule violation: the configuration's rules, then (when those pass, since a plan of
    an invalid configuration means nothing) the checks of its plan."""
    return rules.findings(config) or checks.findings(config)


def validate(config: Config) -> Config:
    """Return ``config`` unchanged, or raise ConfigError with every rule violation."""
    problems = findings(config)
    if problems:
        raise ConfigError(problems)
    return config


def check(raw: object) -> Config:
    """Structure and validate JSON data, reporting type errors and rule violations together."""
    return rules.check(raw, findings)


def load(source: Source, opts: nix.NixOptions = nix.DEFAULT_OPTIONS) -> Config:
    """Read, structure and validate a configuration; raises ConfigError with every problem."""
    return check(load_raw(source, opts))
