# The NixOS guest of a vmsilo VM under crosvm. One evaluation of this module (with a VM's guest
# software) serves every VM with that software: what differs between VMs (name, network,
# shares, overlay type) arrives on the kernel command line and `vmsilo guest-setup` applies it
# at boot.
#
# Disks, in crosvm's order: /dev/vda the read-only root image (a squashfs of the system
# closure), /dev/vdb the VM's fresh qcow2 overlay when rootOverlay.type = "qcow2", and last the
# VM's program image (guest-programs.nix), found by its serial.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  g = config.vmsilo.guest;
  # Facts the engine owns (vmsilo_nix/facts.py; `vmsilo facts` writes this file).
  facts = lib.importJSON ./facts.json;
  vsockPort = facts.agentVsockPort;
  proxyCommand =
    if g.waylandProxy == "sommelier" then
      "${g.proxyPackage}/bin/sommelier --virtgpu-channel --socket=wayland-1"
    else
      "${g.proxyPackage}/bin/wayland-proxy-virtwl --virtio-gpu --wayland-display=wayland-1";
in
{
  # issue 16: program images (each VM's guestPrograms) on top of this one system
  imports = [ ./guest-programs.nix ];

  options.vmsilo.guest = {
    programs = lib.mkOption {
      type = lib.types.listOf lib.types.package;
      default = [ ];
      description = "The VM's guest programs.";
    };
    waylandProxy = lib.mkOption {
      type = lib.types.enum [
        "wayland-proxy-virtwl"
        "sommelier"
      ];
      default = "wayland-proxy-virtwl";
      description = "Program forwarding guest Wayland clients to the host.";
    };
    proxyPackage = lib.mkOption {
      type = lib.types.package;
      description = "Package of the chosen Wayland proxy.";
    };
    copyChannel = lib.mkOption {
      type = lib.types.bool;
      default = false;
      description = "Put the nixpkgs the guest was built from into the image as a channel.";
    };
    engine = lib.mkOption {
      type = lib.types.package;
      description = "vmsilo_nix, for guest-setup and the command agent.";
    };
    user = lib.mkOption {
      type = lib.types.str;
      default = "user";
      description = "The unprivileged account guest commands run as.";
    };
    trayLogLevel = lib.mkOption {
      type = lib.types.str;
      default = "info";
      description = "Log level of the guest's tray forwarding (programs.vmsilo.vmsilo-tray.logLevel).";
    };
  };

  config = {
    boot.loader.grub.enable = false;
    boot.initrd.availableKernelModules = [
      "virtio_pci"
      "virtio_blk"
      "virtio_net"
      "virtio_gpu"
      "virtiofs"
      "squashfs"
      "overlay"
      "ext4"
    ];
    boot.kernelModules = [ "vmw_vsock_virtio_transport" ];

    # / is RAM; the store is the read-only image with a writable layer on top, which lives on
    # the qcow2 disk or in RAM as the VM's kernel command line says (vmsilo.overlay=). All of
    # it is mounted by systemd in stage 1: the scripted initrd is deprecated in NixOS and would
    # need shell hooks for the disk, so it is not supported (see the assertion below).
    boot.initrd.systemd.enable = lib.mkDefault true;
    fileSystems."/" = {
      fsType = "tmpfs";
      options = [ "mode=755" ];
    };
    fileSystems."/nix/.ro-store" = {
      device = "/dev/vda";
      fsType = "squashfs";
      options = [ "ro" ];
      neededForBoot = true;
    };
    # NixOS's own overlay support: in stage 1 its rw-sysroot-nix-store.service makes the upper
    # and work directories, after whatever is mounted at /nix/.rw-store.
    fileSystems."/nix/store" = {
      overlay = {
        lowerdir = [ "/nix/.ro-store" ];
        upperdir = "/nix/.rw-store/upper";
        workdir = "/nix/.rw-store/work";
      };
      neededForBoot = true;
    };
    # With rootOverlay.type = "qcow2" the writable layer is the VM's fresh disk, formatted at
    # each boot (the host creates it empty at each start). A service rather than a mount
    # unit: a mount of /dev/vdb would wait for a device that a tmpfs VM never has, while a
    # condition-skipped service waits for nothing.
    boot.initrd.systemd.services.vmsilo-rw-disk = {
      description = "vmsilo: the writable store layer on the VM's qcow2 disk";
      requiredBy = [ "rw-sysroot-nix-store.service" ];
      before = [ "rw-sysroot-nix-store.service" ];
      after = [ "systemd-udevd.service" ];
      unitConfig = {
        DefaultDependencies = false;
        ConditionKernelCommandLine = "${facts.params.overlay}=qcow2";
        RequiresMountsFor = "/sysroot";
      };
      serviceConfig.Type = "oneshot";
      script = ''
        udevadm wait --timeout=30 /dev/vdb
        mkfs.ext4 -q -F /dev/vdb
        mkdir -p /sysroot/nix/.rw-store
        mount -t ext4 /dev/vdb /sysroot/nix/.rw-store
      '';
    };
    boot.initrd.systemd.initrdBin = [ pkgs.e2fsprogs ];
    assertions = [
      {
        assertion = config.boot.initrd.systemd.enable;
        message = "vmsilo guests boot with systemd in stage 1: a guestConfig sets boot.initrd.systemd.enable = false, which vmsilo does not support (the scripted initrd is deprecated in NixOS).";
      }
    ];

    # The VM's identity: network files, hostname, shares.
    networking.hostName = "";
    networking.useNetworkd = true;
    networking.useDHCP = false;
    systemd.network.enable = true;
    systemd.services.vmsilo-guest-setup = {
      description = "vmsilo: set this VM up from its kernel command line";
      wantedBy = [ "sysinit.target" ];
      before = [
        "sysinit.target"
        "systemd-networkd.service"
        "systemd-udev-trigger.service"
      ];
      unitConfig.DefaultDependencies = false;
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        ExecStart = "${g.engine}/bin/vmsilo guest-setup";
      };
    };

    # vm-run and vm-shell arrive over vsock; commands run as the VM's user, never as root.
    systemd.services.vmsilo-agent = {
      description = "vmsilo command agent";
      wantedBy = [ "multi-user.target" ];
      # the user's manager makes /run/user/1000, where the Wayland proxy listens
      after = [
        "vmsilo-guest-setup.service"
        "user@1000.service"
      ];
      serviceConfig = {
        ExecStart = lib.concatStringsSep " " [
          "${g.engine}/bin/vmsilo channel agent --port ${toString vsockPort} --user ${g.user}"
          "--session-env WAYLAND_DISPLAY=wayland-1 --session-env XDG_SESSION_TYPE=wayland"
        ];
        Type = "notify";
        KillMode = "mixed";
        Restart = "always";
      };
    };

    users.users.${g.user} = {
      isNormalUser = true;
      uid = 1000;
      home = facts.guestHome;
      createHome = false;
      linger = true; # the user's manager, and so the Wayland proxy, runs from boot
    };
    systemd.user.services.vmsilo-wayland-proxy = {
      description = "Wayland proxy to the host compositor";
      wantedBy = [ "default.target" ];
      serviceConfig.ExecStart = proxyCommand;
    };

    # Tray icons: the session's StatusNotifierWatcher, which the host's vmsilo-tray reads over
    # vsock.
    systemd.user.services.vmsilo-tray-guest = {
      description = "vmsilo: this VM's tray icons, for the host's panel";
      wantedBy = [ "default.target" ];
      requires = [ "dbus.socket" ];
      after = [ "dbus.socket" ];
      path = [ pkgs.librsvg ]; # rsvg-convert draws SVG icons as pixmaps
      serviceConfig = {
        ExecStart = "${g.engine}/bin/vmsilo-tray-guest --log-level ${g.trayLogLevel} --listen vsock::${toString facts.trayVsockPort}";
        Restart = "always";
      };
    };

    environment.systemPackages = g.programs;
    nix.channel.enable = g.copyChannel;

    system.build = {
      vmsiloKernel = "${config.boot.kernelPackages.kernel}/${config.system.boot.loader.kernelFile}";
      vmsiloInitrd = "${config.system.build.initialRamdisk}/${config.system.boot.loader.initrdFile}";
      # what the root image holds; program images leave it out (issue 16)
      vmsiloStoreContents = [ config.system.build.toplevel ] ++ lib.optional g.copyChannel pkgs.path;
      vmsiloRootImage = pkgs.callPackage (pkgs.path + "/nixos/lib/make-squashfs.nix") {
        storeContents = config.system.build.vmsiloStoreContents;
        comp = "zstd -Xcompression-level 6";
      };
    };
    system.stateVersion = lib.mkDefault "25.11";
  };
}
