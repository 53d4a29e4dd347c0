# Real NixOS hosts importing the vmsilo module, evaluated with a real nixpkgs, as the facts
# tests/test_real_nixos.py asserts. Every parameter is a string (nix eval --argstr):
#   nixpkgs  the nixpkgs tree (VMSILO_NIXPKGS)
#   hosts    a JSON list of host configurations in this folder (example, families, ...)
# The answer is the attribute `facts` (nix eval calls a file's function only when an
# attribute is selected). Several hosts in one evaluation share the parsed nixpkgs, which is most of the cost.
{ nixpkgs, hosts }:
let
  lib = import (/. + nixpkgs + "/lib");
  facts = import ./facts.nix { inherit lib; };
  evalHost =
    name:
    import (/. + nixpkgs + "/nixos/lib/eval-config.nix") {
      system = "x86_64-linux";
      modules = [
        ../../../nix/module.nix
        ./base.nix
        (./. + "/${name}.nix")
      ];
    };
in
{
  facts = lib.genAttrs (builtins.fromJSON hosts) (name: facts.host (evalHost name));
  # only the host's toplevel, which forces every guest system and image (for NIX_SHOW_STATS)
  toplevels = lib.genAttrs (builtins.fromJSON hosts) (
    name: (evalHost name).config.system.build.toplevel.drvPath
  );
  # issue 16: what each VM's store is made of, as derivations (facts.nix: programs)
  programs = lib.genAttrs (builtins.fromJSON hosts) (name: facts.programs (evalHost name));
}
