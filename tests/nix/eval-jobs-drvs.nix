# What tests/test_nix_eval_jobs.py evaluates with plain nix and with nix-eval-jobs: two
# derivations, one nested under recurseForDerivations, an attribute that throws and one that is
# not a derivation.
let
  mk = import ./sh-derivation.nix;
in
{
  a = mk "vmsilo-nej-a";
  b = mk "vmsilo-nej-b";
  broken = throw "broken on purpose";
  nested = {
    recurseForDerivations = true;
    deep = mk "vmsilo-nej-deep";
  };
  skipped = "not a derivation";
}
