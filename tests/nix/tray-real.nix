# The tray's packaging under a real nixpkgs (VMSILO_NIXPKGS): the flake's overlay, the host
# module's default package and user unit in the minimal host of real-host.nix, and the guest
# module's user unit, all as NixOS renders them. Impure on purpose: VMSILO_ROOT, VMSILO_NIXPKGS.
let
  inherit (import ./real-host.nix) host root;
  pkgs = host.pkgs;
  guest =
    (pkgs.nixos {
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
  tray = pkgs.vmsilo-tray.name;
  mainProgram = pkgs.vmsilo-tray.meta.mainProgram;
  trayLinksTheEngine = builtins.hasAttr (builtins.unsafeDiscardStringContext pkgs.vmsilo-nix.drvPath) (
    builtins.getContext pkgs.vmsilo-tray.buildCommand
  );
  moduleDefault = "${host.config.programs.vmsilo._internal.vmsilo-tray}";
  overlay = "${pkgs.vmsilo-tray}";
  hostUnit = host.config.systemd.user.units."vmsilo-tray.service".text;
  engine = "${pkgs.vmsilo-nix}";
  dependencies = map (p: p.pname or p.name) pkgs.vmsilo-nix.propagatedBuildInputs;
  unitText = unit.text;
  wantedBy = unit.wantedBy;
  hasDbusSocket = guest.systemd.user.units ? "dbus.socket";
}
