# The artifacts nix/module.nix gives the launchers of a `vmsilo build --file` host (its own
# `artifacts`: each VM's boot artifacts and program image, the host packages): what the
# artifacts file `vmsilo build` writes must hold. The environment variable VMSILO_FILE_HOST
# holds file-host.nix's argument as JSON (`nix eval --impure --file` passes no arguments).
let
  host = builtins.fromJSON (builtins.getEnv "VMSILO_FILE_HOST");
  p = import ../../vmsilo_nix/nixeval/exprs/file-host.nix host;
in
{
  inherit (p.artifacts) vms;
  packages = builtins.mapAttrs (_: d: d.outPath) p.artifacts.packages;
}
