# A stand-in `pkgs` for evaluating the vmsilo modules without nixpkgs: every package is a tiny
# /bin/sh derivation with a bin/ of its own name, and `nixos` records each guest system it is
# asked to evaluate (their number is what the tests count).
{
  lib,
  root, # the vmsilo_nix checkout
  python, # the Python interpreter that has vmsilo_nix's dependencies
}:
let
  system = builtins.currentSystem;
  sh = "/bin/sh";
  # Builds run unsandboxed on this Debian Nix; the host's coreutils do the work.
  PATH = "/usr/bin:/bin";
  tool =
    name:
    derivation {
      inherit name system PATH;
      builder = sh;
      args = [
        "-c"
        "mkdir -p $out/bin && printf '#!/bin/sh\\nexit 0\\n' > $out/bin/${name} && chmod +x $out/bin/${name}"
      ];
    };
  file =
    name: content:
    derivation {
      inherit name system content PATH;
      builder = sh;
      args = [
        "-c"
        "printf '%s' \"$content\" > $out"
      ];
    };
in
rec {
  path = ./stub-nixpkgs;
  crosvm = tool "crosvm";
  virtiofsd = tool "virtiofsd";
  qemu-utils = tool "qemu-img";
  iproute2 = tool "ip";
  pipewire = tool "pw-container";
  librsvg = tool "rsvg-convert";
  vhost-device-sound = tool "vhost-device-sound";
  wayland-proxy-virtwl = tool "wayland-proxy-virtwl";
  sommelier = tool "sommelier";
  e2fsprogs = tool "mkfs.ext4";
  util-linux = tool "setpriv";
  # bash from the host, as a package with bin/bash
  bash = derivation {
    name = "bash";
    inherit system PATH;
    builder = sh;
    args = [
      "-c"
      "mkdir -p $out/bin && ln -s /bin/bash $out/bin/bash"
    ];
  };
  firefox = tool "firefox";
  keepassxc = tool "keepassxc";
  writeText = file;
  # The engine itself: this checkout's package run by the host's Python (builds run
  # unsandboxed here). The source is copied into the store, so a change rebuilds what uses it.
  vmsilo-nix = derivation {
    name = "vmsilo-nix";
    inherit system PATH;
    src = builtins.path {
      path = root + "/vmsilo_nix";
      name = "vmsilo_nix-source";
      filter = path: _: !(lib.hasSuffix "__pycache__" path);
    };
    builder = sh;
    args = [
      "-c"
      ''
        mkdir -p $out/bin $out/lib
        cp -r $src $out/lib/vmsilo_nix
        printf '#!/bin/sh\nPYTHONPATH=%s exec %s -m vmsilo_nix "$@"\n' $out/lib ${python} > $out/bin/vmsilo
        printf '#!/bin/sh\nPYTHONPATH=%s exec %s -m vmsilo_nix.balloond "$@"\n' $out/lib ${python} > $out/bin/vmsilo-balloond
        printf '#!/bin/sh\nPYTHONPATH=%s exec %s -c "import sys; from vmsilo_nix.tray.cli import host_main; sys.exit(host_main())" "$@"\n' $out/lib ${python} > $out/bin/vmsilo-tray
        printf '#!/bin/sh\nPYTHONPATH=%s exec %s -c "import sys; from vmsilo_nix.tray.cli import guest_main; sys.exit(guest_main())" "$@"\n' $out/lib ${python} > $out/bin/vmsilo-tray-guest
        chmod +x $out/bin/vmsilo $out/bin/vmsilo-balloond $out/bin/vmsilo-tray $out/bin/vmsilo-tray-guest
      ''
    ];
  };
  runCommand =
    name: env: script:
    derivation (
      builtins.removeAttrs env [
        "nativeBuildInputs"
        "meta"
        "passthru"
      ]
      // {
        inherit name system;
        builder = sh;
        PATH = lib.makeBinPath (env.nativeBuildInputs or [ ]) + ":/usr/bin:/bin";
        args = [
          "-c"
          script
        ];
      }
    )
    // env.passthru or { };
  # nixpkgs' buildEnv as far as program-image.nix uses it: the packages' trees merged as
  # symlinks, the first package winning a collision
  buildEnv =
    { name, paths, ... }:
    derivation {
      inherit name system PATH paths;
      builder = sh;
      args = [
        "-c"
        "mkdir $out && for p in $paths; do cp -rsn $p/. $out/ && chmod -R u+w $out; done"
      ];
    };
  # the host's mksquashfs (squashfs-tools)
  squashfsTools = derivation {
    name = "squashfs-tools";
    inherit system PATH;
    builder = sh;
    args = [
      "-c"
      "mkdir -p $out/bin && ln -s $(command -v mksquashfs) $out/bin/mksquashfs"
    ];
  };
  # Like nixpkgs': the function's arguments come from here unless given.
  callPackage =
    f: args:
    let
      fn = if builtins.isPath f then import f else f;
    in
    fn (
      builtins.intersectAttrs (lib.functionArgs fn) {
        inherit
          lib
          buildEnv
          runCommand
          squashfsTools
          ;
      }
      // args
    );
  # A guest system: evaluated lazily enough that only build outputs are looked at.
  nixos =
    module:
    let
      software = builtins.hashString "sha256" (builtins.toJSON (module.vmsilo.guest.programs or [ ]));
      part = what: file "guest-${what}-${builtins.substring 0 8 software}" what;
    in
    {
      stubModule = module;
      config.system.build = rec {
        toplevel = part "toplevel";
        vmsiloStoreContents = [ toplevel ];
        vmsiloKernel = "${part "kernel"}";
        vmsiloInitrd = "${part "initrd"}";
        vmsiloRootImage = part "rootimage";
      };
    };
}
