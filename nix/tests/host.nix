# A NixOS VM test of a vmsilo host with the defaults a new user gets (sound on, the default
# shared home): two VMs, started by their user without a password, a stop that leaves the unit
# stopped rather than failed, and a switch that removes one VM, which stops it. The GPU is off:
# the test machine has no graphical session. Needs KVM inside the test VM (nested
# virtualisation) and a nixpkgs that can be built: `nix build .#checks.x86_64-linux.host`.
# runNixOSTest gives the nodes the flake's pkgs, overlay applied and read-only: the module is
# imported as a file (nixosModules.default would set nixpkgs.overlays, which that refuses).
{
  name = "vmsilo-host";
  nodes.machine =
    { lib, ... }:
    let
      vm = name: {
        inherit name;
        color = "gray";
        memory = 512;
        cpus = 1;
        gpu = false;
      };
    in
    {
      imports = [ ../module.nix ];
      virtualisation = {
        memorySize = 3072;
        cores = 2;
        qemu.options = [ "-cpu host" ];
      };
      # the user's session without a login: their systemd manager and PipeWire run from boot
      users.users.alice = {
        isNormalUser = true;
        linger = true;
      };
      services.pipewire.enable = true;
      programs.vmsilo = {
        enable = true;
        user = "alice";
        nixosVms = [
          (vm "banking")
          (vm "work")
        ];
      };
      specialisation.banking-only.configuration.programs.vmsilo.nixosVms = lib.mkForce [ (vm "banking") ];
    };
  testScript = ''
    machine.wait_for_unit("multi-user.target")
    machine.wait_for_unit("pipewire.socket", "alice")
    # the default home exists, the user's alone
    machine.succeed("test \"$(stat -c '%U %a' /shared/banking)\" = 'alice 700'")
    # as the user, no password: the polkit rule allows exactly the VM units
    machine.succeed("su - alice -c 'vm-run banking true'")
    machine.succeed("su - alice -c 'vm-status banking' | grep -w running")
    # its sound backend is a client of alice's PipeWire
    machine.succeed("pgrep -u alice -f 'vhost-device-sound --socket /run/vmsilo/banking/sound.sock'")
    machine.succeed("su - alice -c 'vm-start work'")
    machine.wait_for_unit("vmsilo-work.service")
    # anything else still needs a password
    machine.fail("su - alice -c 'systemctl start --no-ask-password systemd-timesyncd.service'")
    # a switch to a configuration without work stops it; banking keeps running
    machine.succeed("/run/current-system/specialisation/banking-only/bin/switch-to-configuration test")
    machine.fail("systemctl is-active vmsilo-work.service")
    machine.succeed("systemctl is-active vmsilo-banking.service")
    # a stop is a stop, not a failure
    machine.succeed("su - alice -c 'vm-stop banking'")
    state = machine.succeed("systemctl show -p ActiveState -p Result --value vmsilo-banking.service")
    assert state.split() == ["inactive", "success"], state
  '';
}
