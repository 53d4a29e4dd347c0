# What any real NixOS host has and the vmsilo fixtures do not care about.
{
  fileSystems."/" = {
    device = "/dev/disk/by-label/nixos";
    fsType = "ext4";
  };
  boot.loader.grub.enable = false;
  users.users.alice.isNormalUser = true;
  # a desktop's sound, where the VMs' sound backends play (the module asserts it)
  services.pipewire.enable = true;
  system.stateVersion = "26.05";
}
