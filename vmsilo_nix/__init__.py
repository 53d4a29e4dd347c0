"""vmsilo_nix: the engine of vmsilo, compartmentalised NixOS desktop VMs under crosvm.

Library use::

    from vmsilo_nix import load, parse_source, plan
    config = load(parse_source(flake=".#desktop"))
    for vm in config.nixos_vms:
        print(vm.name, vm.memory, plan(config).vms[vm.name].cid)

The names below are the public API (docs/library.md); they stay importable from here whatever
room they live in. Anything else is reachable through its subpackage but may move.
"""

from __future__ import annotations

from vmsilo_nix.config.artifacts import Artifacts, load_artifacts
from vmsilo_nix.config.convert import structure, unstructure
from vmsilo_nix.config.model import Config, Vm
from vmsilo_nix.errors import (
    ConfigError,
    NixError,
    NixNotFoundError,
    Problem,
    ProgramNotFoundError,
    SourceError,
    VmsiloError,
)
from vmsilo_nix.facts import VERSION as __version__
from vmsilo_nix.nixeval.source import (
    FlakeSource,
    JsonSource,
    NixFileSource,
    load_raw,
    parse_source,
)
from vmsilo_nix.pipeline import check, load, validate
from vmsilo_nix.plan.host import Plan, VmPlan, plan

__all__ = [
    "Artifacts",
    "Config",
    "ConfigError",
    "FlakeSource",
    "JsonSource",
    "NixError",
    "NixFileSource",
    "NixNotFoundError",
    "Plan",
    "Problem",
    "ProgramNotFoundError",
    "SourceError",
    "Vm",
    "VmPlan",
    "VmsiloError",
    "__version__",
    "check",
    "load",
    "load_artifacts",
    "load_raw",
    "parse_source",
    "plan",
    "structure",
    "unstructure",
    "validate",
]
