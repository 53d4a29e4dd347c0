# The guest side of program images (program-image.nix): imported by guest.nix, so the one base
# system runs every VM's own programs.
#
# A VM with programs boots with `vmsilo.programs=<its profile>` on its kernel command line and
# its image attached as the disk with serial facts.programsDiskId. Stage 1 mounts the image
# under the store as a second read-only lower layer: the programs then sit in /nix/store exactly
# where they were built, beside the base system, under the one writable layer. A VM without
# programs gets an empty directory there. At boot `vmsilo guest-setup` links facts.programsLink
# to the profile; that link is a profile of this system (like /run/current-system/sw), so its
# bin/ is on PATH and its share/ in XDG_DATA_DIRS for the user's session, its services and the
# commands the agent runs.
{ lib, ... }:
let
  facts = lib.importJSON ./facts.json;
  mountPoint = facts.programsMount;
  device = "/dev/disk/by-id/virtio-${facts.programsDiskId}";
in
{
  fileSystems."/nix/store".overlay.lowerdir = lib.mkAfter [ mountPoint ];

  # A service, not a mount unit: a VM without programs has no such disk, and a mount unit
  # would wait for it.
  boot.initrd.systemd.services.vmsilo-programs = {
    description = "vmsilo: the VM's program image under the store";
    requiredBy = [ "sysroot-nix-store.mount" ];
    before = [ "sysroot-nix-store.mount" ];
    after = [ "systemd-udevd.service" ];
    unitConfig = {
      DefaultDependencies = false;
      RequiresMountsFor = "/sysroot";
    };
    serviceConfig = {
      Type = "oneshot";
      RemainAfterExit = true;
    };
    script = ''
      mkdir -p /sysroot${mountPoint}
      for word in $(cat /proc/cmdline); do
        case "$word" in
          ${facts.params.programs}=*)
            udevadm wait --timeout=30 ${device}
            mount -t squashfs -o ro ${device} /sysroot${mountPoint}
            ;;
        esac
      done
    '';
  };

  environment.profiles = [ facts.programsLink ];
}
