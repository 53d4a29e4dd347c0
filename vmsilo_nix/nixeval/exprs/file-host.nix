# A NixOS host around a plain file's `programs.vmsilo`, so that `vmsilo build --file F --nixpkgs P`
# builds the same guest systems as a host importing the module would: nixpkgs' own
# eval-config.nix evaluates vmsilo's host module (which evaluates the guest module for each
# distinct software set) with the file's settings. Only `programs.vmsilo.package` is read; the
# rest of the host is the least NixOS needs to evaluate. Every argument is data (a JSON string),
# never spliced code; impure: the paths are outside the store.
{
  nixpkgs,
  module,
  file,
  system ? builtins.currentSystem,
}:
let
  vmsilo = import (/. + file);
  settings = if builtins.isFunction vmsilo then vmsilo { } else vmsilo;
in
(import (/. + nixpkgs + "/nixos/lib/eval-config.nix") {
  inherit system;
  modules = [
    (/. + module)
    (
      { lib, ... }:
      {
        programs.vmsilo = settings;
        fileSystems."/" = {
          device = "none";
          fsType = "tmpfs";
        };
        boot.loader.grub.enable = false;
        users.users.${settings.user or "user"}.isNormalUser = true;
        system.stateVersion = lib.trivial.release;
      }
    )
  ];
}).config.programs.vmsilo.package
