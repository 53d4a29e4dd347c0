# What `vmsilo build` builds, from a host's `programs.vmsilo.package` (nix/module.nix), as build
# units: each distinct guest system once, each program image once, and the host's program
# packages. Attribute paths are [kind key vms part (file)]:
#   base          the one system of the VMs without guestConfig (guestSoftwareSets' key, whose
#                 kind guestSystemKinds says): kernel, initrd, rootImage, toplevel
#   guest-system  the own system of a VM with guestConfig: the same parts
#   program-image one guestPrograms set (programImageSets' key, as "programs-KEY"):
#                 programImage (the image) and programs (its profile)
# `vms` names the VMs a unit serves, joined by commas ("banking,vault"), so one evaluation
# serves every VM that shares it. The kernel and initrd are files inside their outputs;
# nix-eval-jobs and drvs.nix report only derivations, so the file's name is the last attribute
# of the path: ["base" "base-1a2b" "banking,vault" "kernel" "bzImage"].
# Packages are [package NAME]: artifacts.packages, what the launchers run.
# Passed as text (`--apply`, nix-eval-jobs `--expr`): it must stay one expression.
package:
let
  systems = package.guestSystems;
  systemSets = package.guestSoftwareSets;
  kindOf = key: (package.guestSystemKinds or { }).${key} or "guest-system";
  images = package.programImages or { };
  recurse = set: set // { recurseForDerivations = true; };
  # key -> { "vm1,vm2" = parts of the first VM's unit }, for the keys `keep` selects
  units =
    sets: keep: rename: parts:
    recurse (
      builtins.listToAttrs (
        map (key: {
          name = rename key;
          value = recurse {
            ${builtins.concatStringsSep "," sets.${key}} = recurse (parts (builtins.head sets.${key}));
          };
        }) (builtins.filter (key: keep key && sets.${key} != [ ]) (builtins.attrNames sets))
      )
    );
  system =
    vm:
    let
      c = systems.${vm}.config;
      b = c.system.build;
      inside = file: drv: recurse { ${file} = drv; };
    in
    {
      kernel = inside c.system.boot.loader.kernelFile c.boot.kernelPackages.kernel;
      initrd = inside c.system.boot.loader.initrdFile b.initialRamdisk;
      rootImage = b.vmsiloRootImage;
      toplevel = b.toplevel;
    };
  image = vm: {
    programImage = images.${vm};
    programs = images.${vm}.profile;
  };
  same = key: key;
in
{
  base = units systemSets (key: kindOf key == "base") same system;
  guest-system = units systemSets (key: kindOf key != "base") same system;
  program-image = units (package.programImageSets or { }) (_: true) (key: "programs-${key}") image;
  package = recurse ((package.artifacts or { }).packages or { });
}
