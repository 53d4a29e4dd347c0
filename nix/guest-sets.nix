# Which guest NixOS system and which program image each VM gets (issue 16).
#
# Every VM without a guestConfig runs the one base system (guest.nix without programs): one
# NixOS evaluation, one root image. Its guestPrograms become a program image
# (program-image.nix), one per distinct set, shared by the VMs with that set. The base varies
# only with waylandProxy and copyChannel, which change the system itself (the proxy unit, the
# channel in the root image); most hosts use one combination. A VM with a guestConfig keeps a
# system of its own, on the same guest module with its programs installed (Nix cannot compare
# two modules), and needs no image.
{
  lib,
  pkgs,
  vms,
  # vm -> the vmsilo.guest settings of its system (the engine, the proxy package)
  guestSettings,
}:
let
  hash = value: builtins.substring 0 12 (builtins.hashString "sha256" (builtins.toJSON value));
  own = vm: vm.guestConfig != [ ];
  systemKey =
    vm:
    if own vm then
      "vm-${vm.name}"
    else
      "base-${
        hash {
          proxy = vm.waylandProxy;
          channel = vm.copyChannel;
        }
      }";
  systemGroups = lib.groupBy systemKey vms;
  systems = lib.mapAttrs (
    _: members:
    let
      first = builtins.head members;
    in
    pkgs.nixos {
      imports = [ ./guest.nix ] ++ lib.optionals (own first) (lib.toList first.guestConfig);
      vmsilo.guest = guestSettings first // {
        programs = if own first then first.guestPrograms else [ ];
      };
    }
  ) systemGroups;

  hasImage = vm: !(own vm) && vm.guestPrograms != [ ];
  imageKey =
    vm:
    hash {
      system = systemKey vm;
      programs = map toString vm.guestPrograms;
    };
  imageGroups = lib.groupBy imageKey (lib.filter hasImage vms);
  programImage = pkgs.callPackage ./program-image.nix { };
  images = lib.mapAttrs (
    key: members:
    let
      first = builtins.head members;
    in
    programImage {
      name = key;
      packages = first.guestPrograms;
      base = systems.${systemKey first}.config.system.build.vmsiloStoreContents;
    }
  ) imageGroups;
  names = lib.mapAttrs (_: map (vm: vm.name));
in
{
  # VM name -> its guest NixOS system
  systems = lib.listToAttrs (map (vm: lib.nameValuePair vm.name systems.${systemKey vm}) vms);
  # VM name -> its program image (`.profile`: the profile it links), for VMs that have one
  images = lib.listToAttrs (
    map (vm: lib.nameValuePair vm.name images.${imageKey vm}) (lib.filter hasImage vms)
  );
  # key -> the VMs sharing one NixOS evaluation; key -> the VMs sharing one program image
  systemSets = names systemGroups;
  # key -> "base" (the one system of VMs without guestConfig) or "guest-system" (a VM's own)
  systemKinds = lib.mapAttrs (
    _: members: if own (builtins.head members) then "guest-system" else "base"
  ) systemGroups;
  imageSets = names imageGroups;
}
