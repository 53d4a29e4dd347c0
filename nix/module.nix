# The vmsilo NixOS host module: `imports = [ vmsilo.nixosModules.default ]` (or this file).
#
# It evaluates one guest system per distinct guest software set, serialises the evaluated
# programs.vmsilo together with the store paths Nix built, and runs `vmsilo generate` on it in a
# derivation: that tree is programs.vmsilo.package, and every unit below points into it, so no
# command line is worked out twice.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.programs.vmsilo;
  engine = pkgs.vmsilo-nix or (pkgs.python3Packages.callPackage ./package.nix { });
  toPlain = import ../vmsilo_nix/nixeval/exprs/apply.nix;

  # VMs with the same guest software share one guest system (and one root image). Nix cannot
  # compare module functions, so a VM with its own guestConfig gets its own system.
  softwareKey =
    vm:
    builtins.hashString "sha256" (
      builtins.toJSON {
        programs = map toString vm.guestPrograms;
        proxy = vm.waylandProxy;
        channel = vm.copyChannel;
        config = if vm.guestConfig == [ ] then null else vm.name;
      }
    );
  groups = lib.groupBy softwareKey cfg.nixosVms;
  guestSystems = lib.mapAttrs (
    _: vms:
    let
      first = builtins.head vms;
    in
    pkgs.nixos {
      imports = [ ./guest.nix ] ++ lib.toList first.guestConfig;
      vmsilo.guest = {
        programs = first.guestPrograms;
        inherit (first) waylandProxy copyChannel;
        engine = engine;
        trayLogLevel = cfg.vmsilo-tray.logLevel;
        proxyPackage = if first.waylandProxy == "sommelier" then cfg._internal.sommelier else cfg._internal.wayland-proxy-virtwl;
      };
    }
  ) groups;
  builtFor = vm: guestSystems.${softwareKey vm}.config.system.build;

  artifacts = {
    # Programs a nixpkgs may not have are left out: the launcher then finds them on PATH.
    packages = lib.filterAttrs (_: p: p != null) {
      crosvm = cfg._internal.crosvm;
      virtiofsd = pkgs.virtiofsd;
      "qemu-img" = pkgs.qemu-utils;
      ip = pkgs.iproute2;
      "vhost-device-sound" = pkgs.vhost-device-sound or null;
      "pw-container" = pkgs.pipewire;
      vmsilo-balloond = cfg._internal.vmsilo-balloond;
      vmsilo-tray = cfg._internal.vmsilo-tray;
      vmsilo = engine;
      bash = pkgs.bash or null;
    };
    vms = lib.listToAttrs (
      map (vm: {
        name = vm.name;
        value =
          let
            b = builtFor vm;
          in
          {
            kernel = "${b.vmsiloKernel}";
            initrd = "${b.vmsiloInitrd}";
            rootImage = "${b.vmsiloRootImage}";
            toplevel = "${b.toplevel}";
          };
      }) cfg.nixosVms
    );
  };

  # What the engine reads: the evaluated options as plain JSON (the same apply function the
  # CLI uses), and the store paths above. Both are data; no Nix code is generated.
  configJson = pkgs.writeText "vmsilo-config.json" (
    builtins.toJSON (toPlain cfg)
  );
  artifactsJson = pkgs.writeText "vmsilo-artifacts.json" (builtins.toJSON artifacts);
  tree =
    pkgs.runCommand "vmsilo-tree" { nativeBuildInputs = [ engine ]; } ''
      vmsilo generate --file ${configJson} --artifacts ${artifactsJson} --out $out
    ''
    // {
      inherit guestSystems configJson artifactsJson;
    };

  unit = name: "vmsilo-${name}.service";
  # The same rules as vmsilo_nix (network.tap_name and wayland.forwards_wayland); the module
  # tests compare both sides.
  tapNames =
    vm:
    lib.imap0 (
      index: ifname:
      let
        iface = vm.network.interfaces.${ifname};
      in
      {
        name = if iface.tap.name or null != null then iface.tap.name else "${vm.name}-${toString index}";
        routed = (iface.tap.hostAddress or null) != null;
      }
    ) (lib.attrNames vm.network.interfaces);
  forwardsWayland =
    vm:
    vm.gpu == true
    || (
      builtins.isAttrs vm.gpu
      && lib.elem "cross-domain" (lib.splitString ":" (toString (vm.gpu.context-types or "")))
    );
  hasTaps = vm: vm.network.interfaces != { };
  libexec = "${tree}/libexec/vmsilo";

  vmService = vm: {
    name = "vmsilo-${vm.name}";
    value = {
      description = "vmsilo VM ${vm.name}";
      requires = map unit vm.dependsOn ++ lib.optional (hasTaps vm) "vmsilo-${vm.name}-taps.service";
      after = map unit vm.dependsOn ++ lib.optional (hasTaps vm) "vmsilo-${vm.name}-taps.service";
      wantedBy = lib.optional vm.autoStart "multi-user.target";
      serviceConfig = {
        ExecStart = "${libexec}/${vm.name}/launch";
        User = cfg.user;
        RuntimeDirectory = "vmsilo/${vm.name}";
        StateDirectory = "vmsilo/${vm.name}";
        # The launcher stops its own children; SIGTERM goes to it alone first.
        KillMode = "mixed";
        TimeoutStopSec = 30;
        Restart = "no";
      };
    };
  };
  tapService = vm: {
    name = "vmsilo-${vm.name}-taps";
    value = {
      description = "TAP devices of vmsilo VM ${vm.name}";
      before = [ (unit vm.name) ];
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = "${libexec}/${vm.name}/taps-up";
        ExecStop = "${libexec}/${vm.name}/taps-down";
      };
    };
  };
  activationSocket = vm: {
    name = "vmsilo-${vm.name}";
    value = {
      description = "Starts vmsilo VM ${vm.name} on first use";
      wantedBy = [ "sockets.target" ];
      socketConfig.ListenStream = "/run/vmsilo-activate/${vm.name}.sock";
    };
  };
  proxyService = vm: {
    name = "vmsilo-${vm.name}-wayland";
    value = {
      description = "Wayland socket of vmsilo VM ${vm.name}, under its security context";
      wantedBy = [ "graphical-session.target" ];
      partOf = [ "graphical-session.target" ];
      serviceConfig.ExecStart = "${libexec}/${vm.name}/wayland-proxy";
    };
  };
  # The values this module hands to NixOS options itself (unit names and User=, the NAT
  # interfaces, udev rules) are checked here, at evaluation, by the engine's own name rules
  # (names.nix), before NixOS renders them into units and root scripts. Everything else reaches
  # the system only through the tree, whose build runs the engine's whole check (generate).
  names = import ./names.nix { inherit lib; };
  nameAssertion = names.assertion;
  vmNameAssertions = lib.concatLists (
    lib.imap0 (
      i: vm:
      let
        # as the engine writes it: the VM's name after its index, when it is a valid name
        at = "nixosVms[${toString i}]" + lib.optionalString (names.valid "vm" vm.name) " (${vm.name})";
        tapped = lib.filter (t: t.iface.tap or null != null) (
          lib.imap0 (index: ifname: {
            inherit index ifname;
            iface = vm.network.interfaces.${ifname};
          }) (lib.attrNames vm.network.interfaces)
        );
      in
      [ (nameAssertion "vm" "${at}.name" vm.name) ]
      ++ map (
        t:
        nameAssertion "interface" "${at}.network.interfaces.${lib.strings.escapeNixIdentifier t.ifname}.tap.name" (
          if t.iface.tap.name or null != null then t.iface.tap.name else "${vm.name}-${toString t.index}"
        )
      ) tapped
    ) cfg.nixosVms
  );
  vfioRule =
    bdf: ''ACTION=="add", SUBSYSTEM=="pci", KERNEL=="${bdf}", ATTR{driver_override}="vfio-pci"'';
  normaliseBdf = bdf: if lib.length (lib.splitString ":" bdf) == 2 then "0000:${bdf}" else bdf;
in
{
  imports = [ ./options.nix ];

  config = lib.mkIf cfg.enable {
    programs.vmsilo = {
      package = tree;
      _internal = {
        crosvm = lib.mkDefault pkgs.crosvm;
        wayland-proxy-virtwl = lib.mkDefault pkgs.wayland-proxy-virtwl;
        sommelier = lib.mkDefault pkgs.sommelier;
        vmsilo-balloond = lib.mkDefault (
          pkgs.vmsilo-balloond or (pkgs.callPackage ./balloond.nix { vmsilo-nix = engine; })
        );
        vmsilo-tray = lib.mkDefault (
          pkgs.vmsilo-tray or (pkgs.callPackage ./tray.nix { vmsilo-nix = engine; })
        );
        vmScripts = lib.listToAttrs (
          map (vm: lib.nameValuePair vm.name "${libexec}/${vm.name}/launch") cfg.nixosVms
        );
        proxyScripts = lib.listToAttrs (
          map (vm: lib.nameValuePair vm.name "${libexec}/${vm.name}/wayland-proxy") (
            lib.filter forwardsWayland cfg.nixosVms
          )
        );
        userScripts = lib.genAttrs [ "vm-run" "vm-start" "vm-stop" "vm-shell" "vm-status" ] (
          name: "${tree}/bin/${name}"
        );
        desktopFilesPackage = tree;
        bashCompletionScript = "${tree}/share/bash-completion/completions/vm-run";
      };
    };

    environment.systemPackages = [
      (
        if cfg.enableBashIntegration then
          tree
        else
          pkgs.runCommand "vmsilo-commands" { } ''
            mkdir -p $out/share
            ln -s ${tree}/bin $out/bin
            ln -s ${tree}/share/applications $out/share/applications
          ''
      )
    ];

    systemd.services = lib.listToAttrs (
      map vmService cfg.nixosVms ++ map tapService (lib.filter hasTaps cfg.nixosVms)
    )
    // {
      vmsilo-balloond =
        let
          facts = lib.importJSON ./facts.json;
        in
        {
          description = "vmsilo memory balloon daemon";
          wantedBy = [ "multi-user.target" ];
          serviceConfig = {
            ExecStart = "${libexec}/balloond";
            Type = "notify";
            Restart = "on-failure";
            # crosvm's control sockets belong to the account that runs the VMs.
            User = cfg.user;
            # The state file behind `vmsilo-balloond --status`, readable by everyone.
            RuntimeDirectory = facts.balloondRuntimeDirectory;
            RuntimeDirectoryMode = "0755";
            # It reads /proc/meminfo, arms a trigger on /proc/pressure/memory, connects to the
            # VMs' control sockets under the run directory and runs crosvm from the store.
            ProtectSystem = "strict";
            ProtectHome = true;
            InaccessiblePaths = [ "-${facts.stateDir}" ];
            PrivateTmp = true;
            PrivateDevices = true;
            PrivateNetwork = true;
            RestrictAddressFamilies = [ "AF_UNIX" ];
            CapabilityBoundingSet = "";
            NoNewPrivileges = true;
            ProtectClock = true;
            ProtectControlGroups = true;
            ProtectHostname = true;
            ProtectKernelLogs = true;
            ProtectKernelModules = true;
            ProtectKernelTunables = true;
            ProtectProc = "invisible";
            RestrictNamespaces = true;
            RestrictRealtime = true;
            RestrictSUIDSGID = true;
            LockPersonality = true;
            MemoryDenyWriteExecute = true;
            SystemCallArchitectures = "native";
            SystemCallFilter = [
              "@system-service"
              "~@privileged"
            ];
            UMask = "0022";
          };
        };
    };
    systemd.sockets = lib.listToAttrs (
      map activationSocket (lib.filter (vm: !vm.autoStart) cfg.nixosVms)
    );
    systemd.user.services = lib.listToAttrs (map proxyService (lib.filter forwardsWayland cfg.nixosVms))
    // {
      vmsilo-tray = {
        description = "vmsilo tray icons of the VMs";
        wantedBy = [ "graphical-session.target" ];
        partOf = [ "graphical-session.target" ];
        after = [ "graphical-session.target" ];
        serviceConfig = {
          ExecStart = "${libexec}/tray";
          Restart = "on-failure";
        };
      };
    };

    networking.nat = lib.mkIf cfg.hostNetworking.nat.enable {
      enable = true;
      externalInterface = cfg.hostNetworking.nat.interface;
      internalInterfaces = lib.sort lib.lessThan (
        lib.concatMap (vm: map (t: t.name) (lib.filter (t: t.routed) (tapNames vm))) cfg.nixosVms
      );
    };

    boot.initrd.kernelModules = lib.optionals (cfg.isolatedPciDevices != [ ]) [ "vfio-pci" ];
    services.udev.extraRules = lib.concatMapStringsSep "\n" (b: vfioRule (normaliseBdf b)) cfg.isolatedPciDevices;

    assertions = [
      (nameAssertion "user" "user" cfg.user)
    ]
    ++ lib.optional cfg.hostNetworking.nat.enable (
      nameAssertion "interface" "hostNetworking.nat.interface" cfg.hostNetworking.nat.interface
    )
    ++ vmNameAssertions
    ++ lib.imap0 (j: bdf: nameAssertion "pci" "isolatedPciDevices[${toString j}]" bdf) cfg.isolatedPciDevices;

    # A broken configuration stops the switch with the option paths of every problem.
    system.preSwitchChecks.vmsilo = ''
      ${engine}/bin/vmsilo check --file ${configJson}
    '';
    # After a switch: removed VMs are stopped by systemd (their units are gone); running VMs
    # whose configuration changed are listed.
    system.activationScripts.vmsilo = ''
      if ${tree}/bin/vm-status 2>/dev/null | grep -q 'outdated'; then
        echo "vmsilo: these VMs run an outdated configuration; restart them to apply it:"
        ${tree}/bin/vm-status | grep outdated | cut -f1 | sed 's/^/  /'
      fi
    '';
  };
}
