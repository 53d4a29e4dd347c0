# Turns a `programs.vmsilo` value into plain JSON data for vmsilo_nix, whether it comes from the
# module system (every option present) or from a hand-written attribute set.
# - Options only Nix reads are dropped: `_internal`, `package`, and each VM's `guestConfig`.
# - Packages and Nix paths become markers holding their store path or path (nothing is copied to
#   the store): the option's type decides whether one is accepted, as the module system does.
# - A function where data belongs becomes a marker, so that vmsilo can name the option instead of
#   `builtins.toJSON` failing somewhere unknown.
# Passed as the `--apply` expression of `nix eval --json`; it must stay a single expression.
let
  isDerivation = v: (v.type or null) == "derivation";
  plain =
    v:
    if builtins.isFunction v then
      { _vmsiloNixValue = "function"; }
    else if builtins.isPath v then
      {
        _vmsiloNixValue = "path";
        path = toString v;
      }
    else if builtins.isList v then
      map plain v
    else if builtins.isAttrs v then
      (
        if isDerivation v then
          {
            _vmsiloNixValue = "derivation";
            outPath = v.outPath;
          }
        else
          builtins.mapAttrs (_: plain) v
      )
    else
      v;
  vm = v: plain (if builtins.isAttrs v then builtins.removeAttrs v [ "guestConfig" ] else v);
  vms = v: if builtins.isList v then map vm v else plain v;
in
cfg:
if builtins.isAttrs cfg then
  plain (builtins.removeAttrs cfg [ "_internal" "package" "nixosVms" ])
  // (if cfg ? nixosVms then { nixosVms = vms cfg.nixosVms; } else { })
else
  plain cfg
