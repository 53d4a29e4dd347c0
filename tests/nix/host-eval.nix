# Evaluates the vmsilo host module with the real nixpkgs module system, stand-in NixOS options
# and a stand-in pkgs, for a programs.vmsilo file; returns the facts the tests assert.
# Impure on purpose: VMSILO_NIXPKGS_LIB, VMSILO_ROOT, VMSILO_PYTHON, CONFIG_FILE, and
# EXTRA_JSON: {"set": top-level options to override, "programs": {vm: [stand-in package names]},
# "guestConfig": [VMs given a guestConfig module]}.
let
  lib = import (/. + builtins.getEnv "VMSILO_NIXPKGS_LIB");
  root = /. + builtins.getEnv "VMSILO_ROOT";
  pkgs = import ./stub-pkgs.nix {
    inherit lib root;
    python = builtins.getEnv "VMSILO_PYTHON";
  };
  extra = builtins.fromJSON (builtins.getEnv "EXTRA_JSON");
  vmsilo = lib.recursiveUpdate (import (/. + builtins.getEnv "CONFIG_FILE")) (extra.set or { });
  withPrograms = vmsilo // {
    nixosVms = map (
      vm:
      vm
      // {
        guestPrograms = map (name: pkgs.${name}) (extra.programs.${vm.name} or [ ]);
      }
      // lib.optionalAttrs (lib.elem vm.name (extra.guestConfig or [ ])) {
        guestConfig = { config, ... }: { services.openssh.enable = true; };
      }
    ) (vmsilo.nixosVms or [ ]);
  };
  evaluated = lib.evalModules {
    modules = [
      ./stub-nixos.nix
      (root + "/nix/module.nix")
      { programs.vmsilo = withPrograms; }
      { _module.args.pkgs = pkgs; }
    ];
  };
  c = evaluated.config;
  v = c.programs.vmsilo;
  pick = names: attrs: lib.filterAttrs (n: _: lib.elem n names) attrs;
in
if !v.enable then
  {
    enabled = false;
    # what the module defined anywhere: an option defined under mkIf false has no value
    defined = lib.filter (n: (builtins.tryEval (builtins.deepSeq c.${n} true)).success) (
      lib.attrNames (builtins.removeAttrs c [ "programs" "system" ])
    );
    systemDefined = lib.filter (n: c.system.${n} != { }) [
      "preSwitchChecks"
      "activationScripts"
    ];
  }
else
  {
    enabled = true;
    services = lib.mapAttrs (_: s: pick [ "requires" "after" "before" "wantedBy" "serviceConfig" ] s) c.systemd.services;
    sockets = c.systemd.sockets or { };
    tmpfiles = c.systemd.tmpfiles.rules;
    polkit = c.security.polkit.extraConfig;
    userServices = lib.mapAttrs (_: s: s.serviceConfig) c.systemd.user.services;
    userServiceUnits = lib.mapAttrs (_: s: pick [ "wantedBy" "partOf" "after" "serviceConfig" ] s) c.systemd.user.services;
    trayPackage = "${v._internal.vmsilo-tray}";
    trayDrv = v._internal.vmsilo-tray.drvPath;
    guestTrayLogLevels = lib.mapAttrs (
      _: vms: v.package.guestSystems.${builtins.head vms}.stubModule.vmsilo.guest.trayLogLevel
    ) v.package.guestSoftwareSets;
    nat = c.networking.nat or null;
    udev = c.services.udev.extraRules;
    initrdModules = c.boot.initrd.kernelModules;
    internal = {
      inherit (v._internal) vmScripts proxyScripts userScripts bashCompletionScript;
      desktopFilesPackage = "${v._internal.desktopFilesPackage}";
      balloond = v._internal.vmsilo-balloond.drvPath;
    };
    package = v.package.drvPath;
    packageOut = "${v.package}";
    guestSystems = lib.length (lib.attrNames v.package.guestSoftwareSets);
    guestPrograms = lib.mapAttrs (
      _: vms: map toString v.package.guestSystems.${builtins.head vms}.stubModule.vmsilo.guest.programs
    ) v.package.guestSoftwareSets;
    programImageSets = v.package.programImageSets;
    programImages = lib.mapAttrs (_: image: {
      image = "${image}";
      profile = "${image.profile}";
      packages = map toString image.profile.paths;
    }) v.package.programImages;
    inherit (v.package) artifacts;
    preSwitch = c.system.preSwitchChecks.vmsilo;
    activation = c.system.activationScripts.vmsilo;
    configJson = "${v.package.configJson}";
    artifactsJson = "${v.package.artifactsJson}";
    systemPackages = map toString c.environment.systemPackages;
  }
