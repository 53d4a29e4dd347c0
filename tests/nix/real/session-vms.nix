# Two VMs beside docs/nixos.md's banking on the real-systemd host: `desk` starts with the VM
# user's graphical session (autoStart with the default GPU and sound), `router` at boot
# (autoStart with nothing of the user's session).
{
  programs.vmsilo.nixosVms = [
    {
      name = "desk";
      autoStart = true;
      sharedHome = false;
      rootOverlay.type = "tmpfs";
    }
    {
      name = "router";
      autoStart = true;
      gpu = false;
      sound.playback = false;
      sharedHome = false;
      rootOverlay.type = "tmpfs";
    }
  ];
}
