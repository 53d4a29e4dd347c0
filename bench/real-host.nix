# A real NixOS host with `vms` VMs for bench_real_nixos.py. Parameters are strings
# (nix eval --argstr): nixpkgs (a nixpkgs tree), vms (how many), mode:
#   shared   the VMs alternate between 2 guest software sets: vmsilo evaluates 2 guest systems
#   per-vm   every VM has a guestConfig of its own: one guest system per VM, what peers do
#   sets     every VM has guestPrograms of its own (a different subset of six packages): one
#            base guest system and a program image per VM (bench_guest_systems.py)
{
  nixpkgs,
  vms,
  mode,
}:
let
  lib = import (/. + nixpkgs + "/lib");
  # VM i's own set: the packages whose bit is set in i (1 <= i <= 63)
  own =
    pkgs: i:
    lib.concatLists (
      lib.imap0 (j: name: lib.optional (builtins.bitAnd i (builtins.elemAt bits j) != 0) pkgs.${name}) [
        "hello"
        "figlet"
        "cowsay"
        "tree"
        "htop"
        "pv"
      ]
    );
  bits = [
    1
    2
    4
    8
    16
    32
  ];
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
                guestPrograms =
                  if mode == "sets" then own pkgs i else [ (if lib.mod i 2 == 0 then pkgs.hello else pkgs.jq) ];
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
  package = system.config.programs.vmsilo.package;
in
{
  toplevel = system.config.system.build.toplevel.drvPath;
  # how many guest systems (NixOS evaluations) and program images the host has
  counts = {
    systems = builtins.length (builtins.attrNames package.guestSoftwareSets);
    images = builtins.length (builtins.attrNames package.programImageSets);
  };
}
