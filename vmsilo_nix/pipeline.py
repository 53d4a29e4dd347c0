"""The engine's stages in order, as the CLI and other tools run them.

source (Nix evaluates it) -> config (structured, then the rules) -> plan (then the checks that
need planned values). Each stage only imports the one before it; this module is where they
meet, so that no stage reaches back up.
"""

from __future__ import annotations

import os

import attrs

from vmsilo_nix.config import rules
from vmsilo_nix.config.artifacts import Artifacts
from vmsilo_nix.config.model import Config
from vmsilo_nix.errors import ConfigError, Problem
from vmsilo_nix.nixeval import nix
from vmsilo_nix.nixeval.source import Source, load_raw
from vmsilo_nix.plan import checks
from vmsilo_nix.plan.host import Plan, plan
from vmsilo_nix.plan.layout import Layout


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


@attrs.frozen
class Checked:
    """A configuration that passed every rule, its plan, and what the warning rules found."""

    config: Config
    plan: Plan
    warnings: tuple[Problem, ...]


def check_planned(
    raw: object, artifacts: Artifacts | None = None, layout: Layout | None = None
) -> Checked:
    """Like ``check``, planning once: the plan the checks ran on is the one returned."""
    planned: list[Plan] = []

    def find(config: Config) -> list[Problem]:
        problems = rules.findings(config)
        if problems:
            return problems
        planned.append(plan(config, artifacts, layout))
        return checks.findings(config, planned[-1])

    config = rules.check(raw, find)
    found = rules.warnings(config) + checks.warnings(config, planned[-1])
    return Checked(config, planned[-1], tuple(found))


def host_path_warnings(config: Config) -> list[Problem]:
    """The shared directories the user named that this machine lacks: a VM refuses to start
    while one is missing. The default home is not among them: the host module creates it.
    Only meaningful where the VMs will run (``vmsilo check`` on the host, the switch's check)."""
    found: list[tuple[tuple[str | int, ...], str]] = []
    for i, vm in enumerate(config.nixos_vms):
        if isinstance(vm.shared_home, str):
            found.append((("nixosVms", i, "sharedHome"), vm.shared_home))
        for tag, share in sorted(vm.shared_directories.items()):
            found.append((("nixosVms", i, "sharedDirectories", tag, "path"), share.path))
    return [
        Problem(
            rules.where(config, path),
            f"the directory {directory} does not exist on this machine; the VM refuses to "
            f"start until it does (create it, readable by {config.user})",
            path,
            "warning",
        )
        for path, directory in found
        if not os.path.isdir(directory)
    ]


def load_planned(
    source: Source,
    opts: nix.NixOptions = nix.DEFAULT_OPTIONS,
    artifacts: Artifacts | None = None,
) -> Checked:
    """Read a configuration, check it and plan it; raises ConfigError with every problem."""
    return check_planned(load_raw(source, opts), artifacts)
