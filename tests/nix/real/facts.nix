# What the real-NixOS tests read from an evaluated system: derivation paths (null when an
# assertion fails, so the failures come back as data), assertions, warnings, and the rendered
# units and rules vmsilo contributes.
{ lib }:
let
  ours = lib.filterAttrs (name: _: lib.hasPrefix "vmsilo" name);
  texts = units: lib.mapAttrs (_: u: u.text) (ours units);
  failed = config: map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
  drvIf = config: drv: if failed config == [ ] then drv.drvPath else null;

  guest =
    system:
    let
      c = system.config;
    in
    {
      failedAssertions = failed c;
      inherit (c) warnings;
      toplevel = drvIf c c.system.build.toplevel;
      rootImage = drvIf c c.system.build.vmsiloRootImage;
      initrd = drvIf c c.system.build.initialRamdisk;
      fileSystems = lib.mapAttrs (_: f: {
        inherit (f)
          device
          fsType
          options
          neededForBoot
          ;
      }) c.fileSystems;
      initrdSystemd = c.boot.initrd.systemd.enable;
      initrdUnits = lib.mapAttrs (_: u: u.text) (
        lib.filterAttrs (
          name: _: lib.hasPrefix "vmsilo" name || lib.hasPrefix "rw-sysroot" name
        ) c.boot.initrd.systemd.units
      );
      initrdBin = map (p: p.pname or p.name) c.boot.initrd.systemd.initrdBin;
      systemPackages = map (p: p.pname or p.name) c.environment.systemPackages;
      units = texts c.systemd.units;
      userUnits = texts c.systemd.user.units;
      channel = c.nix.channel.enable;
      hostName = c.networking.hostName;
    };

  host =
    system:
    let
      c = system.config;
      v = c.programs.vmsilo;
      ok = failed c == [ ];
    in
    # Warnings read the units, which need the guest systems: only when nothing failed.
    if !ok then
      {
        failedAssertions = failed c;
      }
    else
    {
      failedAssertions = failed c;
      inherit (c) warnings;
      toplevel = drvIf c c.system.build.toplevel;
      package = if v.enable && ok then v.package.drvPath else null;
      packageOut = if v.enable && ok then v.package.outPath else null;
      guests = if v.enable && ok then lib.mapAttrs (_: guest) v.package.guestSystems else { };
      units = texts c.systemd.units;
      userUnits = texts c.systemd.user.units;
      udev = c.services.udev.extraRules;
      nat = {
        inherit (c.networking.nat) enable externalInterface internalInterfaces;
      };
      polkit = c.security.polkit.extraConfig;
      polkitEnabled = c.security.polkit.enable;
      tmpfiles = lib.filter (lib.hasInfix "vmsilo") c.systemd.tmpfiles.rules;
      wireplumber = c.services.pipewire.wireplumber.extraConfig;
      wireplumberScripts = c.services.pipewire.wireplumber.extraScripts or { };
      initrdKernelModules = c.boot.initrd.kernelModules;
      activation =
        let
          a = c.system.activationScripts.vmsilo or null;
        in
        a.text or a;
      preSwitch = c.system.preSwitchChecks.vmsilo or null;
      # the unit names only: a specialisation's toplevel would evaluate its guests again
      specialisations = lib.mapAttrs (
        _: s: lib.attrNames (ours s.configuration.systemd.units)
      ) c.specialisation;
    };
  # issue 16: the guest systems (one per NixOS evaluation) and program images of a host, and
  # each VM's root image, program image and packages, as derivation paths
  programs =
    system:
    let
      p = system.config.programs.vmsilo.package;
    in
    {
      systemSets = p.guestSoftwareSets;
      # how each guest system takes the program image: the store's layers, the stage-1 unit,
      # and the profile in the session's PATH and XDG_DATA_DIRS
      session = lib.mapAttrs (
        _: vms:
        let
          c = p.guestSystems.${builtins.head vms}.config;
        in
        {
          store = c.fileSystems."/nix/store".options;
          programsUnit = c.boot.initrd.systemd.units."vmsilo-programs.service".text;
          pathConf = c.environment.etc."environment.d/50-systemd-path.conf".text;
          pamEnvironment = c.environment.etc."pam/environment".text;
          systemPackages = map (pkg: pkg.pname or pkg.name) c.environment.systemPackages;
        }
      ) p.guestSoftwareSets;
      imageSets = p.programImageSets;
      vms = lib.mapAttrs (name: s: {
        rootImage = s.config.system.build.vmsiloRootImage.drvPath;
        programImage = if p.programImages ? ${name} then p.programImages.${name}.drvPath else null;
        packages = map (pkg: pkg.drvPath) (
          lib.findFirst (vm: vm.name == name) null system.config.programs.vmsilo.nixosVms
        ).guestPrograms;
      }) p.guestSystems;
    };
in
{
  inherit host guest programs;
}
