# The vmsilo NixOS host module: `imports = [ vmsilo.nixosModules.default ]` (or this file).
#
# It evaluates one base guest system for the VMs (guest-sets.nix), serialises the evaluated
# programs.vmsilo together with the store paths Nix built, and runs `vmsilo generate` on it in a
# derivation: that tree is programs.vmsilo.package, and every unit below points into it, so no
# command line is worked out twice.
{
  config,
  options,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.programs.vmsilo;
  # Facts the engine owns (vmsilo_nix/facts.py; `vmsilo facts` writes this file).
  facts = lib.importJSON ./facts.json;
  internalOpts = options.programs.vmsilo._internal;
  engine = pkgs.vmsilo-nix or (pkgs.python3Packages.callPackage ./package.nix { });
  toPlain = import ../vmsilo_nix/nixeval/exprs/apply.nix;

  # issue 16: one base system for every VM without guestConfig, a program image per
  # guestPrograms set (guest-sets.nix).
  guestSets = import ./guest-sets.nix {
    inherit lib pkgs;
    vms = cfg.nixosVms;
    guestSettings = vm: {
      inherit (vm) waylandProxy copyChannel;
      engine = engine;
      trayLogLevel = cfg.vmsilo-tray.logLevel;
      proxyPackage =
        if vm.waylandProxy == "sommelier" then
          (if sommelierUsable then cfg._internal.sommelier else throw (sommelierMessage vm))
        else
          cfg._internal.wayland-proxy-virtwl;
    };
  };
  # nixpkgs marks sommelier broken; its own message would name neither the VM nor the way out.
  sommelierUsable = cfg._internal.sommelier.meta.available or true;
  sommelierMessage =
    vm:
    "${vmPath vm}.waylandProxy = \"sommelier\", but nixpkgs' sommelier is marked broken or unavailable; use waylandProxy = \"wayland-proxy-virtwl\", or set programs.vmsilo._internal.sommelier to a sommelier package that builds.";
  # VM name -> its guest NixOS system (VMs without guestConfig share one evaluation).
  guestSystems = guestSets.systems;
  builtFor = vm: guestSystems.${vm.name}.config.system.build;

  # The daemons' packages come from their own derivations; until a package is set, there is
  # no unit for it (a unit must never run a program the system lacks).
  hasDaemon = name: internalOpts.${name}.isDefined;

  artifacts = {
    # Programs a nixpkgs may not have are left out: the launcher then finds them on PATH.
    packages = lib.filterAttrs (_: p: p != null) {
      crosvm = cfg._internal.crosvm;
      virtiofsd = pkgs.virtiofsd;
      "qemu-img" = pkgs.qemu-utils;
      ip = pkgs.iproute2;
      "vhost-device-sound" = pkgs.vhost-device-sound or null;
      "pw-container" = pkgs.pipewire;
      vmsilo-balloond = if hasDaemon "vmsilo-balloond" then cfg._internal.vmsilo-balloond else null;
      vmsilo-tray = if hasDaemon "vmsilo-tray" then cfg._internal.vmsilo-tray else null;
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
          }
          // lib.optionalAttrs (guestSets.images ? ${vm.name}) {
            programImage = "${guestSets.images.${vm.name}}";
            programs = "${guestSets.images.${vm.name}.profile}";
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
      inherit guestSystems configJson artifactsJson artifacts;
      # key -> the VMs sharing that guest system (one NixOS evaluation each)
      guestSoftwareSets = guestSets.systemSets;
      # key -> "base" or "guest-system" (a VM with guestConfig): what `vmsilo build` shows
      guestSystemKinds = guestSets.systemKinds;
      # VM name -> its program image; key -> the VMs sharing an image
      programImages = guestSets.images;
      programImageSets = guestSets.imageSets;
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
  hasSound = vm: vm.sound.playback || vm.sound.capture;
  # The user-manager target an autoStart VM waits for (the engine's VmPlan.needs; the tests
  # compare the two): its Wayland socket comes from the user's graphical session, its sound
  # backend is a client of the user's PipeWire (the user's manager). null: it starts at boot.
  sessionTarget =
    vm:
    if forwardsWayland vm then
      "graphical-session.target"
    else if hasSound vm then
      "default.target"
    else
      null;
  hasTaps = vm: vm.network.interfaces != { };
  libexec = "${tree}/libexec/vmsilo";

  runtimeDir = vm: "${facts.runDir}/${vm.name}";
  defaultHomeVms = lib.filter (vm: vm.sharedHome == true) cfg.nixosVms;
  defaultHome = vm: builtins.replaceStrings [ "{vm}" ] [ vm.name ] facts.defaultSharedHome;
  userGroup = config.users.users.${cfg.user}.group or "users";
  hasPci = vm: vm.pciDevices != [ ];

  vmService = vm: {
    name = "vmsilo-${vm.name}";
    value = {
      description = "vmsilo VM ${vm.name}";
      # Requires= also starts them: `vm-start work` starts net, work's dependsOn, first.
      requires = map unit vm.dependsOn ++ lib.optional (hasTaps vm) "vmsilo-${vm.name}-taps.service";
      after = map unit vm.dependsOn ++ lib.optional (hasTaps vm) "vmsilo-${vm.name}-taps.service";
      # An autoStart VM whose devices need the user's session starts with that session
      # (autoStartService), since at boot nobody is logged in; any other one at boot.
      wantedBy = lib.optional (vm.autoStart && sessionTarget vm == null) "multi-user.target";
      # A unit that is gone after a switch is stopped by switch-to-configuration; a changed
      # one is left running (vm-status then says "outdated") rather than killing the VM.
      restartIfChanged = false;
      serviceConfig = {
        ExecStart = "${libexec}/${vm.name}/launch";
        User = cfg.user;
        Group = userGroup;
        # /dev/kvm; the runtime directory comes from tmpfiles (below) so that the Wayland
        # socket the user's session makes there outlives the VM.
        SupplementaryGroups = [ "kvm" ];
        StateDirectory = "vmsilo/${vm.name}";
        StateDirectoryMode = "0700";
        # The launcher stops its own children; SIGTERM goes to it alone first.
        KillMode = "mixed";
        # ... and then exits with this status: a stop, not a failure.
        SuccessExitStatus = [ facts.launcherStoppedStatus ];
        TimeoutStopSec = 30;
        Restart = "no";
        # Hardening crosvm and virtiofsd tolerate: both sandbox themselves with namespaces
        # and seccomp, so namespaces, system calls and W^X stay theirs to restrict; shared
        # directories may be anywhere, so the file system stays visible (read-only /usr, /etc).
        NoNewPrivileges = true;
        PrivateTmp = true;
        ProtectSystem = "full";
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectClock = true;
        ProtectHostname = true;
        RestrictSUIDSGID = true;
        RestrictRealtime = true;
        LockPersonality = true;
        UMask = "0077";
      }
      # VFIO pins all guest memory.
      // lib.optionalAttrs (hasPci vm) { LimitMEMLOCK = "infinity"; };
    };
  };
  tapService = vm: {
    name = "vmsilo-${vm.name}-taps";
    value = {
      description = "TAP devices of vmsilo VM ${vm.name}";
      before = [ (unit vm.name) ];
      # taps-up removes and recreates the TAPs: never while the VM runs.
      restartIfChanged = false;
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = "${libexec}/${vm.name}/taps-up";
        ExecStop = "${libexec}/${vm.name}/taps-down";
        NoNewPrivileges = true;
        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
      };
    };
  };
  # Starts an autoStart VM when the session its devices need is there: vm-start, as the user,
  # through the polkit rule, so the VM is the same system unit as when started by hand.
  autoStartService = vm: {
    name = "vmsilo-${vm.name}-autostart";
    value = {
      description = "Start vmsilo VM ${vm.name} with the session its devices need";
      wantedBy = [ (sessionTarget vm) ];
      after = [
        (sessionTarget vm)
      ]
      ++ lib.optional (forwardsWayland vm) "vmsilo-${vm.name}-wayland.service"
      ++ lib.optional (hasSound vm) "pipewire.socket";
      serviceConfig = {
        Type = "oneshot";
        ExecStart = "${tree}/bin/vm-start ${vm.name}";
      };
    };
  };
  proxyService = vm: {
    name = "vmsilo-${vm.name}-wayland";
    value = {
      description = "Wayland socket of vmsilo VM ${vm.name}, under its security context";
      wantedBy = [ "graphical-session.target" ];
      partOf = [ "graphical-session.target" ];
      after = [ "graphical-session.target" ];
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

  # Starting as the user: systemd asks polkit whether the caller may manage a unit; this rule
  # answers yes for exactly the VM services, the verbs the vm-* commands use and the VM user.
  polkitRule = ''
    // vmsilo: ${cfg.user} starts and stops the vmsilo VMs (and nothing else) without a password.
    polkit.addRule(function (action, subject) {
      if (action.id == "org.freedesktop.systemd1.manage-units" &&
          ${builtins.toJSON (map (vm: unit vm.name) cfg.nixosVms)}.indexOf(action.lookup("unit")) >= 0 &&
          ["start", "stop", "restart"].indexOf(action.lookup("verb")) >= 0 &&
          subject.user == ${builtins.toJSON cfg.user}) {
        return polkit.Result.YES;
      }
    });
  '';

  sommelierVms = lib.filter (vm: vm.waylandProxy == "sommelier") cfg.nixosVms;
  guestAssertions = lib.concatLists (
    lib.imap0 (
      index: vm:
      map (message: {
        assertion = false;
        message = "programs.vmsilo.nixosVms[${toString index}] (${vm.name}): the guest system: ${message}";
      }) (map (a: a.message) (lib.filter (a: !a.assertion) guestSystems.${vm.name}.config.assertions))
    ) cfg.nixosVms
  );
  soundVms = lib.filter hasSound cfg.nixosVms;
  pipewire = config.services.pipewire;
  vmPath =
    vm: "programs.vmsilo.nixosVms[${toString (lib.lists.findFirstIndex (v: v.name == vm.name) 0 cfg.nixosVms)}] (${vm.name})";
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
    systemd.user.services =
      lib.listToAttrs (
        map proxyService (lib.filter forwardsWayland cfg.nixosVms)
        ++ map autoStartService (lib.filter (vm: vm.autoStart && sessionTarget vm != null) cfg.nixosVms)
      )
    // lib.optionalAttrs (hasDaemon "vmsilo-tray") {
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

    # Each VM's sockets (crosvm's control socket, virtiofsd, sound, Wayland) live in a
    # directory only the VM user may enter: whoever reaches the control socket controls the VM.
    # The default shared home (sharedHome = true) is the module's to create, the user's alone;
    # a path the user wrote is theirs to create (the launcher refuses to start without it).
    systemd.tmpfiles.rules = [
      "d ${facts.runDir} 0755 root root - -"
    ]
    ++ map (vm: "d ${runtimeDir vm} 0700 ${cfg.user} ${userGroup} - -") cfg.nixosVms
    ++ lib.optional (defaultHomeVms != [ ]) "d ${facts.sharedRoot} 0755 root root - -"
    ++ map (vm: "d ${defaultHome vm} 0700 ${cfg.user} ${userGroup} - -") defaultHomeVms;

    security.polkit.enable = true;
    security.polkit.extraConfig = polkitRule;

    services.pipewire.wireplumber = lib.mkIf (soundVms != [ ]) {
      extraScripts."vmsilo/deny-capture.lua" =
        "local engine = ${builtins.toJSON facts.engine}\n" + builtins.readFile ./vmsilo-deny-capture.lua;
      extraConfig."90-vmsilo-deny-capture" = {
        "wireplumber.components" = [
          {
            name = "vmsilo/deny-capture.lua";
            type = "script/lua";
            provides = "custom.vmsilo-deny-capture";
          }
        ];
        "wireplumber.profiles".main."custom.vmsilo-deny-capture" = "required";
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
    # The isolated devices go to vfio-pci, and their VFIO group devices to the VM user.
    services.udev.extraRules = lib.concatStringsSep "\n" (
      map (b: vfioRule (normaliseBdf b)) cfg.isolatedPciDevices
      ++ lib.optional (cfg.isolatedPciDevices != [ ]) ''SUBSYSTEM=="vfio", KERNEL!="vfio", OWNER="${cfg.user}", MODE="0600"''
    );

    assertions =
      let
        names = [
          (nameAssertion "user" "user" cfg.user)
        ]
        ++ lib.optional cfg.hostNetworking.nat.enable (
          nameAssertion "interface" "hostNetworking.nat.interface" cfg.hostNetworking.nat.interface
        )
        ++ vmNameAssertions
        ++ lib.imap0 (j: bdf: nameAssertion "pci" "isolatedPciDevices[${toString j}]" bdf) cfg.isolatedPciDevices;
      in
      names
      # Sound plays through the user's PipeWire; the capture rule lives in its WirePlumber.
      ++ map (vm: {
        assertion = pipewire.enable or false && pipewire.wireplumber.enable or false;
        message = "${vmPath vm}.sound: the VM has sound (sound.playback is on by default), which plays through the user's PipeWire, but services.pipewire.enable (with services.pipewire.wireplumber.enable) is not set; enable PipeWire, or set sound.playback = false and sound.capture = false.";
      }) soundVms
      ++ map (vm: {
        assertion = sommelierUsable;
        message = sommelierMessage vm;
      }) sommelierVms
      # the guests' own assertions, once their names and proxy are sound
      ++ lib.optionals (
        lib.all (x: x.assertion) names && (sommelierVms == [ ] || sommelierUsable)
      ) guestAssertions;

    # A broken configuration stops the switch with the option paths of every problem; a shared
    # directory this host lacks is a warning (the VM would refuse to start).
    system.preSwitchChecks.vmsilo = ''
      ${engine}/bin/vmsilo check --host-paths --file ${configJson}
    '';
    # After a switch: removed VMs are stopped by systemd (their units are gone); running VMs
    # whose configuration changed are listed. vm-status runs as the VM user: the fingerprint
    # it reads is in that user's directory, and root reads nothing a user controls.
    system.activationScripts.vmsilo = ''
      if status=$(${pkgs.util-linux}/bin/setpriv --reuid=${cfg.user} --regid=${userGroup} --clear-groups \
          ${tree}/bin/vm-status 2>/dev/null) && grep -q 'outdated' <<<"$status"; then
        echo "vmsilo: these VMs run an outdated configuration; restart them to apply it:"
        grep outdated <<<"$status" | cut -f1 | sed 's/^/  /'
      fi
    '';
  };
}
