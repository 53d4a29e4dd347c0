# vmsilo-tray, the tray icon forwarder: two commands of the vmsilo-nix package (vmsilo-tray on
# the host, vmsilo-tray-guest in the guests), as a package of its own so that the host module
# (and pkgs.vmsilo-tray) name just the daemon.
{
  runCommand,
  vmsilo-nix,
}:
import ./engine-commands.nix {
  inherit runCommand vmsilo-nix;
  pname = "vmsilo-tray";
  description = "Shows vmsilo guests' tray icons on the host's panel, in each VM's colour";
  commands = [
    "vmsilo-tray"
    "vmsilo-tray-guest"
  ];
}
