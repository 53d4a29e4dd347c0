"""vmsilo_nix: the engine of vmsilo, compartmentalised NixOS desktop VMs under crosvm.

Library use::

    from vmsilo_nix import load, parse_source
    config = load(parse_source(flake=".#desktop"))
    for vm in config.nixos_vms:
        print(vm.name, vm.memory)
"""

from __future__ import annotations

__version__ = "0.1.0"

from vmsilo_nix.config.convert import structure, unstructure
from vmsilo_nix.config.model import Config, Vm
from vmsilo_nix.config.rules import validate
from vmsilo_nix.errors import (
    ConfigError,
    NixError,
    NixNotFoundError,
    Problem,
    SourceError,
    VmsiloError,
)
from vmsilo_nix.nixeval.source import (
    FlakeSource,
    JsonSource,
    NixFileSource,
    load,
    load_raw,
    parse_source,
)

__all__ = [
    "Config",
    "ConfigError",
    "FlakeSource",
    "JsonSource",
    "NixError",
    "NixFileSource",
    "NixNotFoundError",
    "Problem",
    "SourceError",
    "Vm",
    "VmsiloError",
    "__version__",
    "load",
    "load_raw",
    "parse_source",
    "structure",
    "unstructure",
    "validate",
]
