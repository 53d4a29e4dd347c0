# A package of some of the vmsilo-nix package's commands (links to them), so that the host
# module, and pkgs.vmsilo-balloond or pkgs.vmsilo-tray, can name one daemon and nothing else of
# the engine. The first command is the package's main program.
{
  runCommand,
  vmsilo-nix,
  pname,
  description,
  commands,
}:
runCommand "${pname}-${vmsilo-nix.version or "0"}"
  {
    meta = (vmsilo-nix.meta or { }) // {
      inherit description;
      mainProgram = builtins.head commands;
    };
  }
  (
    "mkdir -p $out/bin\n"
    + builtins.concatStringsSep "" (
      map (command: "ln -s ${vmsilo-nix}/bin/${command} $out/bin/${command}\n") commands
    )
  )
