# What the NixOS module system itself makes of a programs.vmsilo file, given an options module:
# config.programs.vmsilo as `nix eval --json` prints it, minus what only Nix reads.
# Impure on purpose: the nixpkgs lib, the options module and the config file come from the
# environment (VMSILO_NIXPKGS_LIB, OPTIONS_MODULE, CONFIG_FILE).
let
  lib = import (/. + builtins.getEnv "VMSILO_NIXPKGS_LIB");
  evaluated = lib.evalModules {
    modules = [
      (import (/. + builtins.getEnv "OPTIONS_MODULE"))
      { programs.vmsilo = import (/. + builtins.getEnv "CONFIG_FILE"); }
      { _module.args.pkgs = { }; }
    ];
  };
  cfg = evaluated.config.programs.vmsilo;
in
builtins.removeAttrs cfg [ "_internal" "package" ]
// {
  nixosVms = map (vm: builtins.removeAttrs vm [ "guestConfig" ]) cfg.nixosVms;
}
