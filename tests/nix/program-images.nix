# Program images of two software sets over one base, built for real from /bin/sh packages with
# references between them, for tests/test_program_image.py. Impure: VMSILO_NIXPKGS_LIB,
# VMSILO_ROOT.
let
  lib = import (/. + builtins.getEnv "VMSILO_NIXPKGS_LIB");
  root = /. + builtins.getEnv "VMSILO_ROOT";
  pkgs = import ./stub-pkgs.nix {
    inherit lib root;
    python = "/usr/bin/python3";
  };
  system = builtins.currentSystem;
  # A package whose output names the store paths it depends on, so Nix records them as
  # references (as a real program's RPATH and wrapper scripts do).
  package =
    name: deps:
    derivation {
      inherit name system deps;
      PATH = "/usr/bin:/bin";
      builder = "/bin/sh";
      args = [
        "-c"
        ''
          mkdir -p $out/bin $out/share/applications
          printf '#!/bin/sh\n# %s\nexit 0\n' "$deps" > $out/bin/${name}
          chmod +x $out/bin/${name}
          printf '[Desktop Entry]\nName=${name}\n' > $out/share/applications/${name}.desktop
        ''
      ];
    };
  libc = package "libc" [ ];
  gtk = package "gtk" [ libc ];
  libfx = package "libfx" [ libc ];
  keyring = package "keyring" [ libc ];
  firefox = package "firefox" [
    libfx
    gtk
  ];
  keepassxc = package "keepassxc" [
    keyring
    gtk
  ];
  # the base system holds libc and gtk (as a real one holds glibc and, say, a desktop's gtk)
  toplevel = package "guest-toplevel" [
    libc
    gtk
  ];
  image = pkgs.callPackage (root + "/nix/program-image.nix") { };
  web = image {
    name = "web";
    packages = [ firefox ];
    base = [ toplevel ];
  };
  vault = image {
    name = "vault";
    packages = [ keepassxc ];
    base = [ toplevel ];
  };
in
# derivation paths, to build; outPath is what the images must hold
lib.mapAttrs
  (_: d: {
    inherit (d) drvPath;
    out = d.outPath;
  })
  {
    inherit
      web
      vault
      toplevel
      firefox
      keepassxc
      libfx
      keyring
      libc
      gtk
      ;
    webProfile = web.profile;
    vaultProfile = vault.profile;
  }
