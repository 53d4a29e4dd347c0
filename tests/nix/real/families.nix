# A host using every family of vmsilo options, with real packages from nixpkgs.
{ lib, pkgs, ... }:
let
  vms = import ./families-vms.nix { inherit pkgs; };
in
{
  users.users.bob.isNormalUser = true;
  programs.vmsilo = {
    enable = true;
    user = "bob";
    hostNetworking.nat = {
      enable = true;
      interface = "eth0";
    };
    isolatedPciDevices = [ "0000:05:00.0" ];
    # nixpkgs marks sommelier broken; a host that wants it brings a working one.
    _internal.sommelier = pkgs.sommelier.overrideAttrs (old: {
      meta = old.meta // {
        broken = false;
      };
    });
    nixosVms = vms;
  };
  # A switch to this removes the chat VM (and the VM that depends on nothing else keeps going).
  specialisation.without-chat.configuration.programs.vmsilo.nixosVms = lib.mkForce (
    lib.filter (vm: vm.name != "chat") vms
  );
}
