# What `vmsilo build` builds, from a host's `programs.vmsilo.package.guestSystems` (VM name ->
# its guest NixOS system). Per VM: the kernel, the initrd, the root image and the toplevel.
# The kernel and initrd are files inside their outputs; nix-eval-jobs and drvs.nix report only
# derivations, so the file's name is the last attribute of the path: [vm "kernel" "bzImage"].
# VMs that share guest software share one system, so their derivations are equal and are built
# once. Passed as text (`--apply`, nix-eval-jobs `--expr`): it must stay one expression.
systems:
builtins.mapAttrs (
  _: system:
  let
    c = system.config;
    b = c.system.build;
    inside = file: drv: {
      recurseForDerivations = true;
      ${file} = drv;
    };
  in
  {
    recurseForDerivations = true;
    kernel = inside c.system.boot.loader.kernelFile c.boot.kernelPackages.kernel;
    initrd = inside c.system.boot.loader.initrdFile b.initialRamdisk;
    rootImage = b.vmsiloRootImage;
    toplevel = b.toplevel;
  }
) systems
