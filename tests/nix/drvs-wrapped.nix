# tests/nix/drvs.nix one attribute down, for a `select` function to pick (tests/test_nix.py).
{
  inner = import ./drvs.nix;
}
