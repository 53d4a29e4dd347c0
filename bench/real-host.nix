# A real NixOS host with `vms` VMs for bench_real_nixos.py. Parameters are strings
# (nix eval --argstr): nixpkgs (a nixpkgs tree), vms (how many), mode:
#   shared   the VMs alternate between 2 guest software sets: vmsilo evaluates 2 guest systems
#   per-vm   every VM has a guestConfig of its own: one guest system per VM, what peers do
{
  nixpkgs,
  vms,
  mode,
}:
let
  lib = import (/. + nixpkgs + "/lib");
  system = import (/. + nixpkgs + "/nixos/lib/eval-config.nix") {
    system = "x86_64-linux";
    modules = [
      ../nix/module.nix
      ../tests/nix/real/base.nix
      (
        { pkgs, ... }:
        {
          programs.vmsilo = {
            enable = true;
            user = "alice";
            nixosVms = map (
              i:
              {
                name = "vm${toString i}";
                color = "gray";
                guestPrograms = [ (if lib.mod i 2 == 0 then pkgs.hello else pkgs.jq) ];
              }
              // lib.optionalAttrs (mode == "per-vm") {
                guestConfig = { ... }: { };
              }
            ) (lib.range 1 (lib.toInt vms));
          };
        }
      )
    ];
  };
in
{
  toplevel = system.config.system.build.toplevel.drvPath;
}
