# A realistic vmsilo desktop: the attribute set a host assigns to `programs.vmsilo`.
#   vmsilo check --file examples/desktop.nix
#   vmsilo eval --flake ./examples#desktop      (the same settings through flake.nix)
# Packages (guestPrograms = [ pkgs.firefox ]) and guestConfig modules need nixpkgs, so this
# offline example leaves them out; a real host configuration adds them.
{
  enable = true;
  user = "alice";

  # The banking VM reaches the internet through NAT on the host's Wi-Fi interface.
  hostNetworking.nat = {
    enable = true;
    interface = "wlp3s0";
  };

  # The second Ethernet controller belongs to the `net` VM, claimed by vfio-pci at boot.
  isolatedPciDevices = [ "03:00.0" ];

  vmsilo-balloond.pollInterval = "1s";

  nixosVms = [
    {
      name = "banking";
      color = "#2e7d32";
      memory = 4096;
      cpus = 2;
      sound = {
        playback = false;
        capture = false;
      };
      network = {
        nameservers = [ "9.9.9.9" ];
        interfaces.wan = {
          tap.hostAddress = "10.10.1.254/24";
          addresses = [ "10.10.1.1/24" ];
          routes."0.0.0.0/0".via = "10.10.1.254";
        };
      };
    }
    {
      name = "work";
      color = "royalblue";
      memory = 8192;
      cpus = 4;
      dependsOn = [ "net" ];
      sharedDirectories = {
        projects.path = "/home/alice/projects";
        reference = {
          path = "/srv/reference";
          readonly = true;
          cache = "always";
        };
      };
      network.interfaces.lan = {
        tap.bridge = "br-work";
        dhcp = true;
      };
      kernelParams = [ "quiet" ];
    }
    {
      name = "vault";
      color = "rgb(120, 0, 160)";
      memory = 1024;
      cpus = 1;
      gpu = false;
      sound.playback = false;
      sharedHome = "/srv/vault/home";
      rootOverlay.type = "tmpfs";
      autoShutdown = {
        enable = true;
        after = 300;
      };
    }
    {
      name = "net";
      color = "orange";
      memory = 768;
      cpus = 1;
      gpu = false;
      sound.playback = false;
      sharedHome = false;
      autoStart = true;
      pciDevices = [ { path = "03:00.0"; } ];
      network.interfaces.uplink = {
        tap.hostAddress = "10.10.9.254/24";
        addresses = [ "10.10.9.1/24" ];
      };
    }
  ];
}
