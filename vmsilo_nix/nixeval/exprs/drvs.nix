# Derivations of every attribute of a set, walked the way nix-eval-jobs walks it: the top level
# always, nested sets only with `recurseForDerivations = true`, other values skipped. A `throw` or
# failed `assert` fails only its own attribute (tryEval); tryEval loses the message, so vmsilo asks
# `at` for each failed attribute once more to get it. Used by vmsilo_nix.nix.eval_drvs when
# nix-eval-jobs is not installed; passed as `--apply` text, so it must stay one expression.
let
  isDrv = v: builtins.isAttrs v && (v.type or null) == "derivation";
  kindOf = path: v:
    if isDrv v then "drv"
    else if builtins.isAttrs v && (path == [ ] || (v.recurseForDerivations or false) == true)
    then "set"
    else "skip";
  info = path: d:
    let
      i = {
        attrPath = path;
        inherit (d) drvPath name system;
        outputs = builtins.listToAttrs
          (map (o: { name = o; value = d.${o}.outPath; }) (d.outputs or [ "out" ]));
      };
    in builtins.deepSeq i i;
  failed = path: { attrPath = path; error = true; };
  walk = path: v:
    let kind = builtins.tryEval (kindOf path v);
    in
    if !kind.success then [ (failed path) ]
    else if kind.value == "drv" then
      let r = builtins.tryEval (info path v); in [ (if r.success then r.value else failed path) ]
    else if kind.value == "set" then
      builtins.concatMap (n: walk (path ++ [ n ]) v.${n}) (builtins.attrNames v)
    else [ ];
in
{
  all = walk [ ];
  at = path: root: info path (builtins.foldl' (v: n: v.${n}) root path);
}
