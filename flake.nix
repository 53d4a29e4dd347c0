{
  description = "vmsilo: compartmentalised NixOS desktop VMs under crosvm";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs =
    { self, nixpkgs }:
    let
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];
      forAll =
        f:
        nixpkgs.lib.genAttrs systems (
          system:
          f (
            import nixpkgs {
              inherit system;
              overlays = [ self.overlays.default ];
            }
          )
        );
    in
    {
      overlays.default = final: _prev: {
        vmsilo-nix = final.python3Packages.callPackage ./nix/package.nix { };
        vmsilo-balloond = final.callPackage ./nix/balloond.nix { };
        vmsilo-tray = final.callPackage ./nix/tray.nix { };
      };

      packages = forAll (pkgs: {
        default = pkgs.vmsilo-nix;
        vmsilo-nix = pkgs.vmsilo-nix;
        vmsilo-balloond = pkgs.vmsilo-balloond;
        vmsilo-tray = pkgs.vmsilo-tray;
      });

      apps = forAll (pkgs: rec {
        vmsilo = {
          type = "app";
          program = "${pkgs.vmsilo-nix}/bin/vmsilo";
          meta.description = "The vmsilo command: check, plan and generate vmsilo configurations";
        };
        default = vmsilo;
      });

      # With the overlay, pkgs.vmsilo-nix and pkgs.vmsilo-balloond are the host's. A host whose
      # pkgs is read-only (a NixOS test's) imports ./nix/module.nix instead and brings the
      # overlay itself: such a pkgs refuses modules that set nixpkgs.overlays.
      nixosModules.default = {
        imports = [ ./nix/module.nix ];
        nixpkgs.overlays = [ self.overlays.default ];
      };

      checks = forAll (pkgs: {
        package = pkgs.vmsilo-nix;
        # The example desktop as a NixOS host: its whole system evaluated.
        example-host =
          (nixpkgs.lib.nixosSystem {
            inherit (pkgs.stdenv.hostPlatform) system;
            modules = [
              self.nixosModules.default
              {
                programs.vmsilo = import ./examples/desktop.nix;
                users.users.alice.isNormalUser = true;
                services.pipewire.enable = true; # the VMs' sound plays there
                fileSystems."/" = {
                  device = "/dev/disk/by-label/nixos";
                  fsType = "ext4";
                };
                boot.loader.grub.enable = false;
                system.stateVersion = "26.05";
              }
            ];
          }).config.system.build.toplevel;
        # Two VMs started by their user, and a switch that removes one (needs nested KVM).
        host = pkgs.testers.runNixOSTest (import ./nix/tests/host.nix);
      });

      devShells = forAll (pkgs: {
        default = pkgs.mkShell {
          packages = [
            (pkgs.python3.withPackages (ps: [
              ps.attrs
              ps.cattrs
              ps.rich
              ps.dbus-fast
              ps.pillow
              ps.orjson
              ps.pytest
              ps.hypothesis
              ps.mypy
            ]))
            pkgs.ruff
            pkgs.shellcheck
            pkgs.desktop-file-utils
            pkgs.qemu-utils
            pkgs.dbus
            pkgs.nix
          ];
        };
      });
    };
}
