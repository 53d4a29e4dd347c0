# A real NixOS host with the vmsilo module and the example desktop, with some options replaced
# by hostile values (tests/test_hostile_config.py). Both parameters are strings (nix eval --argstr):
#   nixpkgs  the nixpkgs tree
#   set      JSON: top-level programs.vmsilo options laid over examples/desktop.nix
# `facts` holds the failed assertions and what NixOS renders from the values: the unit of VM `work`,
# the NAT rules script and the udev rules, which run as root once the system is switched to.
{ nixpkgs, set }:
let
  lib = import (/. + nixpkgs + "/lib");
  system = import (/. + nixpkgs + "/nixos/lib/eval-config.nix") {
    system = "x86_64-linux";
    modules = [
      ../../../nix/module.nix
      ../real/base.nix
      {
        programs.vmsilo = lib.recursiveUpdate (import ../../../examples/desktop.nix) (
          builtins.fromJSON set
        );
      }
    ];
  };
  c = system.config;
in
{
  facts = {
    failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) c.assertions);
    workUnit = c.systemd.units."vmsilo-work.service".text;
    natScript = c.networking.firewall.extraCommands;
    udevRules = c.services.udev.extraRules;
    # what nixos-rebuild evaluates first: it refuses while an assertion fails
    toplevel = (builtins.tryEval c.system.build.toplevel.drvPath).success;
  };
}
