# A NixOS VM test of a vmsilo host: two VMs, started by their user without a password, and a
# switch that removes one, which stops it. Needs KVM inside the test VM (nested
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
        sound.playback = false;
      };
    in
    {
      imports = [ ../module.nix ];
      virtualisation = {
        memorySize = 3072;
        cores = 2;
        qemu.options = [ "-cpu host" ];
      };
      users.users.alice.isNormalUser = true;
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
    # as the user, no password: the polkit rule allows exactly the VM units
    machine.succeed("su - alice -c 'vm-run banking true'")
    machine.succeed("su - alice -c 'vm-status banking' | grep -w running")
    machine.succeed("su - alice -c 'vm-start work'")
    machine.wait_for_unit("vmsilo-work.service")
    # anything else still needs a password
    machine.fail("su - alice -c 'systemctl start --no-ask-password systemd-timesyncd.service'")
    # a switch to a configuration without work stops it; banking keeps running
    machine.succeed("/run/current-system/specialisation/banking-only/bin/switch-to-configuration test")
    machine.fail("systemctl is-active vmsilo-work.service")
    machine.succeed("systemctl is-active vmsilo-banking.service")
  '';
}
