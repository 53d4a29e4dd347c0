# The engine's rules for names that the host module hands to NixOS options itself (unit names,
# User=, NAT interfaces, udev rules), as NixOS assertions. The rules are data written from
# vmsilo_nix.config.values (names.json), so both sides check the same thing.
{ lib }:
let
  rules = lib.importJSON ./names.json;
in
rec {
  valid =
    kind: value:
    let
      rule = rules.${kind};
    in
    builtins.isString value
    && builtins.match rule.pattern value != null
    && lib.all (refused: builtins.match refused value == null) rule.refused;
  # `path` is the option path below programs.vmsilo, as the engine's messages write it.
  assertion = kind: path: value: {
    assertion = valid kind value;
    message = "programs.vmsilo.${path}: ${builtins.toJSON value} ${rules.${kind}.hint}";
  };
}
