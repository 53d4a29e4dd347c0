"""vmsilo_nix: the engine of vmsilo, compartmentalised NixOS desktop VMs under crosvm.

Library use::

    from vmsilo_nix import load, parse_source
    config = load(parse_source(flake=".#desktop"))
    for vm in config.nixos_vms:
        print(vm.name, vm.memory)
"""

from __future__ import annotations

__version__ = "0.1.0"

from .convert import structure, unstructure
from .errors import (
    ConfigError,
    NixError,
    NixNotFoundError,
    Problem,
    SourceError,
    VmsiloError,
)
from .model import Config, Vm
from .source import FlakeSource, JsonSource, NixFileSource, load, load_raw, parse_source
from .validate import validate

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
