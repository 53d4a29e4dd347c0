# What the host module's name assertions (nix/names.nix) say of each sample, for
# tests/test_hostile_config.py to compare with the engine. Both parameters are strings
# (nix-instantiate --argstr):
#   nixpkgsLib  the nixpkgs lib directory
#   samples     JSON: a list of strings
# One list of booleans per kind of name in nix/names.json, in the samples' order.
{ nixpkgsLib, samples }:
let
  lib = import (/. + nixpkgsLib);
  names = import ../../nix/names.nix { inherit lib; };
  texts = builtins.fromJSON samples;
in
builtins.mapAttrs (kind: _: map (names.valid kind) texts) (lib.importJSON ../../nix/names.json)
