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

import importlib
from typing import TYPE_CHECKING, Any

from vmsilo_nix.facts import VERSION as __version__

if TYPE_CHECKING:
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
    from vmsilo_nix.nixeval.source import (
        FlakeSource,
        JsonSource,
        NixFileSource,
        load_raw,
        parse_source,
    )
    from vmsilo_nix.pipeline import check, load, validate
    from vmsilo_nix.plan.host import Plan, VmPlan, plan

# Where each public name lives. They are imported on first use (PEP 562), so that the programs
# that import a room of this package (vmsilo-balloond, the tray, `vmsilo channel` behind
# vm-run, the guest's agent) do not load the whole engine to start.
_HOME = {
    "Artifacts": "vmsilo_nix.config.artifacts",
    "load_artifacts": "vmsilo_nix.config.artifacts",
    "structure": "vmsilo_nix.config.convert",
    "unstructure": "vmsilo_nix.config.convert",
    "Config": "vmsilo_nix.config.model",
    "Vm": "vmsilo_nix.config.model",
    "ConfigError": "vmsilo_nix.errors",
    "NixError": "vmsilo_nix.errors",
    "NixNotFoundError": "vmsilo_nix.errors",
    "Problem": "vmsilo_nix.errors",
    "ProgramNotFoundError": "vmsilo_nix.errors",
    "SourceError": "vmsilo_nix.errors",
    "VmsiloError": "vmsilo_nix.errors",
    "FlakeSource": "vmsilo_nix.nixeval.source",
    "JsonSource": "vmsilo_nix.nixeval.source",
    "NixFileSource": "vmsilo_nix.nixeval.source",
    "load_raw": "vmsilo_nix.nixeval.source",
    "parse_source": "vmsilo_nix.nixeval.source",
    "check": "vmsilo_nix.pipeline",
    "load": "vmsilo_nix.pipeline",
    "validate": "vmsilo_nix.pipeline",
    "Plan": "vmsilo_nix.plan.host",
    "VmPlan": "vmsilo_nix.plan.host",
    "plan": "vmsilo_nix.plan.host",
}


# `vmsilo_nix.plan` is both the planner (public) and its room (a subpackage). Importing a
# subpackage the first time sets it as an attribute of this package, which would hide the
# function behind __getattr__; the (empty) room is imported now, and its attribute removed.
importlib.import_module("vmsilo_nix.plan")
del globals()["plan"]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # found once; later lookups do not come here
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOME])


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
