# A host without PipeWire, and VMs with and without sound: only the one with sound is refused.
{ lib, ... }:
{
  services.pipewire.enable = lib.mkForce false;
  programs.vmsilo = {
    enable = true;
    user = "alice";
    nixosVms = [
      {
        name = "quiet";
        color = "gray";
        sound.playback = false;
      }
      {
        name = "music";
        color = "orange";
      }
    ];
  };
}
