# The example desktop with programs in its VMs, and ten more VMs with ten different
# guestPrograms: one base guest system for all of them, a program image per set. `vault`
# also has a guestConfig, so it keeps a system of its own.
{ lib, pkgs, ... }:
let
  example = import ../../../examples/desktop.nix;
  programs = {
    banking = [ pkgs.hello ];
    work = [ pkgs.hello ];
    vault = [ pkgs.figlet ];
  };
  extra = [
    "cowsay"
    "sl"
    "fortune"
    "lolcat"
    "cmatrix"
    "ncdu"
    "tree"
    "htop"
    "pv"
    "units"
  ];
in
{
  programs.vmsilo = example // {
    nixosVms =
      map (
        vm:
        vm
        // lib.optionalAttrs (programs ? ${vm.name}) { guestPrograms = programs.${vm.name}; }
        // lib.optionalAttrs (vm.name == "vault") { guestConfig.services.openssh.enable = true; }
      ) example.nixosVms
      ++ lib.imap0 (i: name: {
        name = "extra-${name}";
        color = "gray";
        guestPrograms = [ pkgs.${name} ];
        network.interfaces.lan.tap.hostAddress = "10.30.${toString i}.254/24";
      }) extra;
  };
}
