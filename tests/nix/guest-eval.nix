# Evaluates the vmsilo guest module with the real module system, stand-in NixOS options and a
# stand-in pkgs; returns what the tests assert. Impure: VMSILO_NIXPKGS_LIB, VMSILO_ROOT,
# GUEST_JSON ({"proxy": "wayland-proxy-virtwl"|"sommelier", "copyChannel": bool}).
let
  lib = import (/. + builtins.getEnv "VMSILO_NIXPKGS_LIB");
  root = /. + builtins.getEnv "VMSILO_ROOT";
  pkgs = import ./stub-pkgs.nix {
    inherit lib root;
    python = "/usr/bin/python3";
  };
  settings = builtins.fromJSON (builtins.getEnv "GUEST_JSON");
  evaluated = lib.evalModules {
    modules = [
      ./stub-nixos.nix
      # as in NixOS, an overlay's lower layers are a list that several modules add to
      {
        options.fileSystems = lib.mkOption {
          type = lib.types.attrsOf (
            lib.types.submodule {
              freeformType = lib.types.lazyAttrsOf lib.types.anything;
              options.overlay.lowerdir = lib.mkOption {
                type = lib.types.nullOr (lib.types.listOf lib.types.str);
                default = null;
              };
            }
          );
        };
      }
      (root + "/nix/guest.nix")
      {
        vmsilo.guest = {
          programs = [ pkgs.firefox ];
          waylandProxy = settings.proxy;
          proxyPackage = pkgs.${settings.proxy};
          copyChannel = settings.copyChannel;
          engine = pkgs.vmsilo-nix;
        };
        # What NixOS itself would provide.
        boot.kernelPackages.kernel = pkgs.crosvm;
        system.boot.loader = {
          kernelFile = "bzImage";
          initrdFile = "initrd";
        };
        system.build.toplevel = pkgs.writeText "toplevel" "";
        system.build.initialRamdisk = pkgs.writeText "initrd" "";
      }
      { _module.args.pkgs = pkgs; }
    ];
  };
  c = evaluated.config;
in
{
  services = lib.mapAttrs (_: s: s.serviceConfig) c.systemd.services;
  setupOrder = c.systemd.services.vmsilo-guest-setup.before;
  userServices = lib.mapAttrs (_: s: s.serviceConfig) c.systemd.user.services;
  user = c.users.users.user;
  systemPackages = map toString c.environment.systemPackages;
  rootImageContents = c.system.build.vmsiloRootImage.contents;
  toplevel = "${c.system.build.toplevel}";
  kernel = c.system.build.vmsiloKernel;
  fileSystems = c.fileSystems;
  networkd = c.systemd.network.enable;
  channel = c.nix.channel.enable;
  profiles = c.environment.profiles;
  programsUnit = c.boot.initrd.systemd.services.vmsilo-programs;
}
