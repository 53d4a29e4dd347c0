# The program image of one guest software set: the closure of its packages minus what the base
# root image already holds, as a small read-only squashfs that crosvm attaches as one more disk.
#
# Its root holds store paths by name, like the base image's: stage 1 mounts it as the store
# overlay's second lower layer (guest-programs.nix), so the programs sit in /nix/store exactly
# where they were built. `profile` (passthru) is the software set's profile, a buildEnv of the
# packages: the guest links it to facts.programsLink and puts its bin/ and share/ in the session.
#
# Only sh, coreutils, awk and mksquashfs run here, so the tests build it for real with
# stand-in packages and the machine's Nix.
{
  lib,
  buildEnv,
  runCommand,
  squashfsTools,
}:
{
  # names the image and the profile (the module passes a hash of the software set)
  name,
  packages,
  # the store paths the base image is made of (its storeContents)
  base,
}:
let
  profile = buildEnv {
    name = "vmsilo-programs-${name}";
    paths = packages;
    # the same choice NixOS makes for environment.systemPackages
    ignoreCollisions = true;
  };
  # exportReferencesGraph writes each root's closure into the build directory, in Nix's
  # registration format: path, deriver, reference count, references.
  baseGraphs = lib.imap0 (i: path: [
    "base-${toString i}"
    path
  ]) base;
in
runCommand "vmsilo-programs-${name}.img"
  {
    nativeBuildInputs = [ squashfsTools ];
    exportReferencesGraph = [
      "programs"
      profile
    ]
    ++ lib.concatLists baseGraphs;
    baseGraphs = map builtins.head baseGraphs;
    passthru = { inherit profile; };
  }
  ''
    closure() {
      awk 'state == 0 { print; state = 1; next }
           state == 1 { state = 2; next }
           state == 2 { n = $0 + 0; state = n > 0 ? 3 : 0; next }
           state == 3 { if (--n == 0) state = 0 }' "$@" | sort -u
    }
    closure programs > wanted
    : > present
    for graph in $baseGraphs; do closure "$graph" >> present; done
    sort -u -o present present
    comm -23 wanted present > store-paths
    # No list of the paths beside the image: its hashes would make the host's closure hold
    # every guest program too.
    SOURCE_DATE_EPOCH=0 mksquashfs $(cat store-paths) $out \
      -no-hardlinks -keep-as-directory -all-root -b 1048576 -comp zstd -Xcompression-level 6 \
      -no-progress -quiet
  ''
