# vmsilo-tray, the tray icon forwarder: two commands of the vmsilo-nix package (vmsilo-tray on
# the host, vmsilo-tray-guest in the guests), as a package of its own so that the host module
# (and pkgs.vmsilo-tray) name just the daemon.
{
  runCommand,
  vmsilo-nix,
}:
runCommand "vmsilo-tray-${vmsilo-nix.version or "0"}"
  {
    meta = (vmsilo-nix.meta or { }) // {
      description = "Shows vmsilo guests' tray icons on the host's panel, in each VM's colour";
      mainProgram = "vmsilo-tray";
    };
  }
  ''
    mkdir -p $out/bin
    ln -s ${vmsilo-nix}/bin/vmsilo-tray $out/bin/vmsilo-tray
    ln -s ${vmsilo-nix}/bin/vmsilo-tray-guest $out/bin/vmsilo-tray-guest
  ''
