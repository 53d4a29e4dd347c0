# The declared option tree of a NixOS options module, flattened to JSON-comparable facts
# (type description, default, flags) per option path. Used to compare nix/options.nix with the seed.
# Impure on purpose: the nixpkgs lib and the module to inspect come from the environment.
let
  l = import (/. + builtins.getEnv "VMSILO_NIXPKGS_LIB");
  module = builtins.getEnv "OPTIONS_MODULE";
  evaluated = l.evalModules {
    modules = [
      (import (/. + module))
      { _module.args.pkgs = { }; }
    ];
  };
  isOption = v: builtins.isAttrs v && (v._type or null) == "option";
  walk =
    prefix: opts:
    l.concatMap (
      name:
      let
        v = opts.${name};
        path = if prefix == "" then name else "${prefix}.${name}";
      in
      if l.hasPrefix "_module" name then
        [ ]
      else if isOption v then
        [
          {
            inherit path;
            type = v.type.description;
            default = if v ? default then builtins.toJSON v.default else null;
            readOnly = v.readOnly or false;
            internal = v.internal or false;
          }
        ]
        ++ walk "${path}.<sub>" (v.type.getSubOptions [ ])
      else if builtins.isAttrs v then
        walk path v
      else
        [ ]
    ) (builtins.attrNames opts);
in
walk "" evaluated.options
