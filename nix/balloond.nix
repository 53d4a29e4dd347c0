# vmsilo-balloond, the memory balloon daemon: a command of the vmsilo-nix package, as a package
# of its own so that the host module (and pkgs.vmsilo-balloond) name just the daemon.
{
  runCommand,
  vmsilo-nix,
}:
runCommand "vmsilo-balloond-${vmsilo-nix.version or "0"}"
  {
    meta = (vmsilo-nix.meta or { }) // {
      description = "Moves memory between the host and vmsilo's VMs with the virtio balloon";
      mainProgram = "vmsilo-balloond";
    };
  }
  ''
    mkdir -p $out/bin
    ln -s ${vmsilo-nix}/bin/vmsilo-balloond $out/bin/vmsilo-balloond
  ''
