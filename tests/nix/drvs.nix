# Derivations and other attributes for tests/test_nix.py's real evaluations and builds: an
# attribute that throws, a failing assertion, a non-derivation, nested sets with and without
# recurseForDerivations, and a name with a dot.
let
  mk = import ./sh-derivation.nix;
in
{
  a = mk "vmsilo-test-a";
  b = mk "vmsilo-test-b";
  c = mk "vmsilo-test-c";
  multi = derivation {
    name = "vmsilo-test-multi";
    outputs = [
      "out"
      "dev"
    ];
    builder = "/bin/sh";
    args = [
      "-c"
      "echo out > $out; echo dev > $dev"
    ];
    system = builtins.currentSystem;
  };
  bad = throw "bad attribute";
  checked =
    assert 1 == 2;
    mk "never";
  number = 3;
  nested = {
    recurseForDerivations = true;
    deep = mk "vmsilo-test-deep";
  };
  hidden = {
    inner = mk "vmsilo-test-hidden";
  };
  "with.dot" = mk "vmsilo-test-dot";
}
