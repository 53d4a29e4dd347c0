# The balloon daemon's unit as real NixOS renders it, in the minimal host of real-host.nix.
# Impure on purpose: VMSILO_NIXPKGS, VMSILO_ROOT.
let
  inherit (import ./real-host.nix) host;
in
{
  unit = host.config.systemd.units."vmsilo-balloond.service".text;
  daemon = "${host.config.programs.vmsilo._internal.vmsilo-balloond}";
  overlay = "${host.pkgs.vmsilo-balloond}";
  mainProgram = host.pkgs.vmsilo-balloond.meta.mainProgram;
}
