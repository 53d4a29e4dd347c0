# A minimal host of a real nixpkgs (VMSILO_NIXPKGS) with the flake's module and overlay and no
# VMs, so that only evaluation is needed; the daemons' real-NixOS tests read their units from it.
# Impure on purpose: VMSILO_NIXPKGS, VMSILO_ROOT.
let
  nixpkgs = /. + builtins.getEnv "VMSILO_NIXPKGS";
  root = /. + builtins.getEnv "VMSILO_ROOT";
  flake = (import (root + "/flake.nix")).outputs {
    self = flake;
    inherit nixpkgs;
  };
in
{
  inherit root;
  host = import (nixpkgs + "/nixos/lib/eval-config.nix") {
    system = builtins.currentSystem;
    modules = [
      flake.nixosModules.default
      {
        programs.vmsilo = {
          enable = true;
          user = "alice";
        };
        users.users.alice.isNormalUser = true;
        fileSystems."/" = {
          device = "/dev/disk/by-label/nixos";
          fsType = "ext4";
        };
        boot.loader.grub.enable = false;
        system.stateVersion = "25.11";
      }
    ];
  };
}
