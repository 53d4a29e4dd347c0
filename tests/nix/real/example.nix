# The example desktop, as written in examples/desktop.nix.
{
  programs.vmsilo = import ../../../examples/desktop.nix;
}
