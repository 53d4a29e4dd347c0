# vmsilo-balloond, the memory balloon daemon: a command of the vmsilo-nix package, as a package
# of its own so that the host module (and pkgs.vmsilo-balloond) name just the daemon.
{
  runCommand,
  vmsilo-nix,
}:
import ./engine-commands.nix {
  inherit runCommand vmsilo-nix;
  pname = "vmsilo-balloond";
  description = "Moves memory between the host and vmsilo's VMs with the virtio balloon";
  commands = [ "vmsilo-balloond" ];
}
