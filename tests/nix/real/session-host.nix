# What vmsilo adds to a real NixOS host, as that host would install it: the real-systemd tests
# (tests/test_systemd_host.py) put these units, rules and files into a real systemd. The host is
# base.nix, `module` (a file: docs/nixos.md's own vmsilo.nix) and session-vms.nix, evaluated with and without
# programs.vmsilo.enable, so that every unit, tmpfiles rule and file the module adds is found,
# not only those whose names say vmsilo. Parameters are strings (nix eval --argstr); nix eval
# calls a file's function only when an attribute is selected: select `host`.
{ nixpkgs, module }:
let
  lib = import (/. + nixpkgs + "/lib");
  toPlain = import ../../../vmsilo_nix/nixeval/exprs/apply.nix;
  evalHost =
    enable:
    (import (/. + nixpkgs + "/nixos/lib/eval-config.nix") {
      system = "x86_64-linux";
      modules = [
        ../../../nix/module.nix
        ./base.nix
        (/. + module)
        ./session-vms.nix
        { programs.vmsilo.enable = lib.mkForce enable; }
      ];
    }).config;
  on = evalHost true;
  off = evalHost false;
  added = new: old: lib.filterAttrs (name: _: !(old ? ${name})) new;
  rendered = lib.mapAttrs (
    _: u: {
      inherit (u) text wantedBy requiredBy;
    }
  );
in
{
  host = {
    failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) on.assertions);
    inherit (on) warnings;
    # the options as the module hands them to `vmsilo generate`, and the tree it generates
    vmsilo = toPlain on.programs.vmsilo;
    tree = on.programs.vmsilo.package.outPath;
    user = {
      inherit (on.programs.vmsilo) user;
      inherit (on.users.users.${on.programs.vmsilo.user}) group uid;
    };
    units = rendered (added on.systemd.units off.systemd.units);
    userUnits = rendered (added on.systemd.user.units off.systemd.user.units);
    tmpfiles = lib.subtractLists off.systemd.tmpfiles.rules on.systemd.tmpfiles.rules;
    polkit = lib.removePrefix off.security.polkit.extraConfig on.security.polkit.extraConfig;
    wireplumber = {
      inherit (on.services.pipewire.wireplumber) extraConfig extraScripts;
    };
  };
}
