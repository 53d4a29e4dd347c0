# What `vmsilo build` builds, from a host's `programs.vmsilo.package`: its `guestSystems` (VM
# name -> guest NixOS system) and, when the module says which VMs share one system,
# `guestSoftwareSets` (key -> VM names). Each distinct system is listed once, under the names of
# its VMs joined by commas ("banking,vault"), so one evaluation serves every VM that shares it.
# Per system: the kernel, the initrd, the root image and the toplevel. The kernel and initrd are
# files inside their outputs; nix-eval-jobs and drvs.nix report only derivations, so the file's
# name is the last attribute of the path: ["banking,vault" "kernel" "bzImage"].
# Passed as text (`--apply`, nix-eval-jobs `--expr`): it must stay one expression.
package:
let
  systems = package.guestSystems;
  shared =
    if package ? guestSoftwareSets then
      builtins.listToAttrs (
        map (vms: {
          name = builtins.concatStringsSep "," vms;
          value = systems.${builtins.head vms};
        }) (builtins.filter (vms: vms != [ ]) (builtins.attrValues package.guestSoftwareSets))
      )
    else
      systems;
in
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
) shared
