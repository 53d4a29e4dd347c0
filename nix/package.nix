# vmsilo_nix as a Python application; its tests run in the build.
{
  lib,
  buildPythonApplication,
  setuptools,
  attrs,
  cattrs,
  rich,
  pywayland,
  dbus-fast,
  pillow,
  orjson,
  pytestCheckHook,
  hypothesis,
  nix,
  shellcheck,
  desktop-file-utils,
  qemu-utils,
  bash,
  dbus,
  librsvg,
}:
buildPythonApplication {
  pname = "vmsilo-nix";
  version = (lib.importJSON ./facts.json).version;
  pyproject = true;
  src = lib.fileset.toSource {
    root = ../.;
    # Without bytecode a checkout's Python left behind: it would make the package (and every
    # guest system holding it) depend on which Python last ran the tests in that checkout.
    fileset = lib.fileset.difference (lib.fileset.unions [
      ../pyproject.toml
      ../README.md
      ../vmsilo_nix
      ../tests
      ../examples
      ../nix
      ../flake.nix
      ../docs
    ]) (lib.fileset.fileFilter (file: file.hasExt "pyc") ../.);
  };
  build-system = [ setuptools ];
  dependencies = [
    attrs
    cattrs
    rich
    pywayland
    dbus-fast
    pillow
    orjson
  ];
  nativeCheckInputs = [
    pytestCheckHook
    hypothesis
    nix
    shellcheck
    desktop-file-utils
    qemu-utils
    bash
    dbus # dbus-daemon: the tray tests' two session buses
    librsvg # rsvg-convert: the guest's SVG icons
  ];
  # Tests that need a network namespace, root or a writable Nix store skip themselves.
  meta = {
    description = "Engine of vmsilo: compartmentalised NixOS desktop VMs under crosvm";
    mainProgram = "vmsilo";
    license = lib.licenses.mit;
  };
}
