# nix/package.nix of the checkout at `src` (a string: --argstr), with a real nixpkgs: its
# derivation and the names of its Python dependencies, for tests/test_package.py.
{ nixpkgs, src }:
let
  pkgs = import nixpkgs { system = "x86_64-linux"; };
  package = pkgs.python3Packages.callPackage (/. + src + "/nix/package.nix") { };
in
{
  # selected by name: nix eval applies --argstr only on the way to an attribute
  facts = {
    drv = package.drvPath;
    deps = map (d: d.pname or d.name) package.propagatedBuildInputs;
  };
}
