# Which of several programs.vmsilo files the NixOS module system accepts: one boolean each, in
# the order of CONFIG_FILES (a JSON list of paths). A refusal (a value not of the option's type,
# a missing required option) is a `throw` in the module system, which tryEval catches.
# Impure on purpose: VMSILO_NIXPKGS_LIB, OPTIONS_MODULE and CONFIG_FILES come from the environment.
let
  lib = import (/. + builtins.getEnv "VMSILO_NIXPKGS_LIB");
  options = import (/. + builtins.getEnv "OPTIONS_MODULE");
  accepts =
    file:
    let
      cfg =
        (lib.evalModules {
          modules = [
            options
            { programs.vmsilo = import (/. + file); }
            { _module.args.pkgs = { }; }
          ];
        }).config.programs.vmsilo;
      data = builtins.removeAttrs cfg [
        "_internal"
        "package"
      ]
      // {
        nixosVms = map (vm: builtins.removeAttrs vm [ "guestConfig" ]) cfg.nixosVms;
      };
    in
    (builtins.tryEval (builtins.deepSeq data true)).success;
in
map accepts (builtins.fromJSON (builtins.getEnv "CONFIG_FILES"))
