# Minimal stand-ins for the NixOS options the vmsilo modules set: free-form, so that the test
# reads back exactly what the modules defined. `system` is declared: its parts refer to each
# other (the kernel file of a built system), which a single free-form value cannot do lazily.
{ lib, ... }:
let
  t = lib.types;
  opt = type: lib.mkOption { inherit type; };
in
{
  freeformType = t.lazyAttrsOf t.anything;
  options.system = {
    build = opt (t.lazyAttrsOf t.raw);
    boot.loader = opt (t.lazyAttrsOf t.str);
    stateVersion = opt t.str;
    preSwitchChecks = opt (t.lazyAttrsOf t.str);
    activationScripts = opt (t.lazyAttrsOf t.str);
  };
}
