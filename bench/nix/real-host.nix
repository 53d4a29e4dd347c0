# A real NixOS host importing the vmsilo module, evaluated with the nixpkgs tree at `nixpkgs`
# (a string), on the real-NixOS tests' base configuration; `module` holds programs.vmsilo.
nixpkgs: module:
import (/. + nixpkgs + "/nixos/lib/eval-config.nix") {
  system = "x86_64-linux";
  modules = [
    ../../nix/module.nix
    ../../tests/nix/real/base.nix
    module
  ];
}
