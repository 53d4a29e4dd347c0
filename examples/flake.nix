# The example desktop as a NixOS host of a flake with no inputs, so that
# `vmsilo check --flake ./examples#desktop` works offline. A real host flake has
# `nixosConfigurations.desktop = nixpkgs.lib.nixosSystem { ... }` with vmsilo's module instead.
{
  description = "vmsilo example host";
  outputs =
    { self }:
    {
      nixosConfigurations.desktop.config.programs.vmsilo = import ./desktop.nix;
    };
}
