# The example desktop with three guestPrograms sets (banking: firefox, work: thunderbird and
# libreoffice, vault: keepassxc), for bench_guest_systems.py --closures: what goes on the
# guests' disks now (the base root image once, one program image per set) against one full
# guest system per set as before issue 16. Derivation paths; `nix path-info -r` gives their
# closures. Parameter: nixpkgs (--argstr).
{ nixpkgs }:
let
  lib = import (/. + nixpkgs + "/lib");
  sets = pkgs: {
    banking = [ pkgs.firefox ];
    work = [
      pkgs.thunderbird
      pkgs.libreoffice
    ];
    vault = [ pkgs.keepassxc ];
  };
  host = import (/. + nixpkgs + "/nixos/lib/eval-config.nix") {
    system = "x86_64-linux";
    modules = [
      ../nix/module.nix
      ../tests/nix/real/base.nix
      (
        { pkgs, ... }:
        {
          programs.vmsilo = (import ../examples/desktop.nix) // {
            nixosVms = map (
              vm: vm // { guestPrograms = (sets pkgs).${vm.name} or [ ]; }
            ) (import ../examples/desktop.nix).nixosVms;
          };
        }
      )
    ];
  };
  inherit (host) pkgs;
  package = host.config.programs.vmsilo.package;
  base = package.guestSystems.net.config.system.build;
  # as before: the set's programs installed in a guest system of its own
  full =
    programs:
    (pkgs.nixos {
      imports = [ ../nix/guest.nix ];
      vmsilo.guest = {
        inherit programs;
        engine = pkgs.python3Packages.callPackage ../nix/package.nix { };
        proxyPackage = pkgs.wayland-proxy-virtwl;
      };
    }).config.system.build.toplevel.drvPath;
in
{
  result = {
    base = base.toplevel.drvPath;
    images = lib.mapAttrs (_: image: image.drvPath) package.programImages;
    profiles = lib.mapAttrs (_: image: image.profile.drvPath) package.programImages;
    full = lib.mapAttrs (_: full) (sets pkgs);
  };
}
