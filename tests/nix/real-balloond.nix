# The balloon daemon's unit as real NixOS renders it: the flake's module and overlay in a
# minimal host of a real nixpkgs (VMSILO_NIXPKGS), with no VMs, so that only evaluation is
# needed. Impure on purpose: VMSILO_NIXPKGS, VMSILO_ROOT.
let
  nixpkgs = /. + builtins.getEnv "VMSILO_NIXPKGS";
  root = /. + builtins.getEnv "VMSILO_ROOT";
  flake = (import (root + "/flake.nix")).outputs {
    self = flake;
    inherit nixpkgs;
  };
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
in
{
  unit = host.config.systemd.units."vmsilo-balloond.service".text;
  daemon = "${host.config.programs.vmsilo._internal.vmsilo-balloond}";
  overlay = "${host.pkgs.vmsilo-balloond}";
  mainProgram = host.pkgs.vmsilo-balloond.meta.mainProgram;
}
