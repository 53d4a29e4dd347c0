# A real NixOS host (a real nixpkgs) with `vms` vmsilo VMs in `sets` different guestPrograms
# sets, for bench/bench_guest_systems.py. Every parameter is a string (nix eval --argstr):
#   nixpkgs  the nixpkgs tree; vms, sets  numbers (sets <= vms, sets <= 63)
# `result.toplevel` is the host's system derivation, which forces every guest system and image.
# VM i gets set (i mod sets); set s is the subset of six small packages that the bits of s + 1
# choose, so every set differs.
{
  nixpkgs,
  vms,
  sets,
}:
let
  lib = import (/. + nixpkgs + "/lib");
  names = [
    "hello"
    "figlet"
    "cowsay"
    "tree"
    "htop"
    "pv"
  ];
  bits = [
    1
    2
    4
    8
    16
    32
  ];
  set =
    pkgs: s:
    map (j: pkgs.${builtins.elemAt names j}) (
      lib.filter (j: builtins.bitAnd (s + 1) (builtins.elemAt bits j) != 0) (lib.range 0 5)
    );
  host = import ./real-host.nix nixpkgs (
    { pkgs, ... }:
    {
      programs.vmsilo = {
        enable = true;
        user = "alice";
        nixosVms = map (i: {
          name = "vm${toString i}";
          color = "gray";
          guestPrograms = set pkgs (lib.mod i (lib.toInt sets));
        }) (lib.range 0 (lib.toInt vms - 1));
      };
    }
  );
  package = host.config.programs.vmsilo.package;
in
{
  # an attribute to select: nix eval calls the file's function only then
  result = {
    toplevel = host.config.system.build.toplevel.drvPath;
    systems = builtins.length (builtins.attrNames package.guestSoftwareSets);
    images = builtins.length (builtins.attrNames package.programImageSets);
  };
}
