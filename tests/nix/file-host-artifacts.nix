# The boot artifacts of each guest system of a `vmsilo build --file` host, as guest.nix names
# them: what the artifacts file must hold. The environment variable VMSILO_FILE_HOST holds
# file-host.nix's argument as JSON (`nix eval --impure --file` passes no arguments).
let
  host = builtins.fromJSON (builtins.getEnv "VMSILO_FILE_HOST");
  p = import ../../vmsilo_nix/nixeval/exprs/file-host.nix host;
in
builtins.mapAttrs (
  _: s:
  let
    b = s.config.system.build;
  in
  {
    kernel = b.vmsiloKernel;
    initrd = b.vmsiloInitrd;
    rootImage = b.vmsiloRootImage.outPath;
    toplevel = b.toplevel.outPath;
  }
) p.guestSystems
