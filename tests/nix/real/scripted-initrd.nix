# A guestConfig that turns systemd in stage 1 off: the guest's assertion, named on the host.
{
  programs.vmsilo = {
    enable = true;
    user = "alice";
    nixosVms = [
      {
        name = "old";
        color = "gray";
        guestConfig.boot.initrd.systemd.enable = false;
      }
    ];
  };
}
