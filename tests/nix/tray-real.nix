# The tray's packaging under a real nixpkgs: the flake's overlay, the package's dependencies and
# the guest module's user unit as NixOS renders it. Impure: VMSILO_ROOT, VMSILO_NIXPKGS.
let
  root = /. + builtins.getEnv "VMSILO_ROOT";
  flake = (import (root + "/flake.nix")).outputs {
    self = flake;
    nixpkgs = null;
  };
  pkgs = import (/. + builtins.getEnv "VMSILO_NIXPKGS") {
    overlays = [ flake.overlays.default ];
    system = "x86_64-linux";
  };
  guest = (pkgs.nixos {
    imports = [ (root + "/nix/guest.nix") ];
    vmsilo.guest = {
      engine = pkgs.vmsilo-nix;
      proxyPackage = pkgs.wayland-proxy-virtwl;
      trayLogLevel = "debug";
    };
  }).config;
  unit = guest.systemd.user.units."vmsilo-tray-guest.service";
in
{
  tray = "${pkgs.vmsilo-tray}";
  engine = "${pkgs.vmsilo-nix}";
  dependencies = map (p: p.pname or p.name) pkgs.vmsilo-tray.propagatedBuildInputs;
  unitText = unit.text;
  wantedBy = unit.wantedBy;
  hasDbusSocket = guest.systemd.user.units ? "dbus.socket";
}
