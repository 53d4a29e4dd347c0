# The VMs of families.nix, one or more per option family.
{ pkgs }:
[
  {
    # NAT, routed TAP, sound both ways, guest programs, autoStart
    name = "banking";
    color = "#2e7d32";
    autoStart = true;
    guestPrograms = [ pkgs.hello ];
    sound = {
      playback = true;
      capture = true;
    };
    network.interfaces.wan = {
      tap.hostAddress = "10.20.1.254/24";
      addresses = [ "10.20.1.1/24" ];
      routes."0.0.0.0/0".via = "10.20.1.254";
    };
  }
  {
    # a bridge, dependsOn, a shared directory, its own guestConfig on the same programs
    name = "work";
    color = "royalblue";
    dependsOn = [ "net" ];
    guestPrograms = [ pkgs.hello ];
    guestConfig =
      { ... }:
      {
        services.openssh.enable = true;
      };
    sharedDirectories.projects.path = "/home/bob/projects";
    network.interfaces.lan = {
      tap.bridge = "br-work";
      dhcp = true;
    };
  }
  {
    # sommelier, a RAM overlay, other programs, the playback-only sound default
    name = "chat";
    color = "orange";
    waylandProxy = "sommelier";
    rootOverlay.type = "tmpfs";
    guestPrograms = [ pkgs.jq ];
  }
  {
    # VFIO passthrough, the nixpkgs channel in the image, no GPU
    name = "net";
    color = "gray";
    gpu = false;
    autoStart = true;
    copyChannel = true;
    sound.playback = false;
    pciDevices = [ { path = "0000:05:00.0"; } ];
  }
]
