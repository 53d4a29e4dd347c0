"""One virtiofsd per shared directory of a VM, and the crosvm flags that attach them.

Every share (``sharedHome`` and each ``sharedDirectories`` entry) gets its own virtiofsd
process listening on a vhost-user socket in the VM's run-time directory; crosvm connects to it
with ``--vhost-user type=fs,socket=...``. crosvm no longer carries the mount tag, so virtiofsd
must announce it itself (``--tag``).

Flags are always written ``--flag=value`` (one exec word), because ``--inode-file-handles``
only parses in that form and a single spelling is easier to read in ``vmsilo show``.

Decisions:

- ``--inode-file-handles=`` is always explicit: virtiofsd's own default changed (``never``
  before v1.13.3, ``prefer`` since), and the option's default must mean the same everywhere.
- ``--killpriv-v2`` / ``--no-killpriv-v2``: both exist in virtiofsd (the latter is its
  default and is documented there as "Disable KILLPRIV V2 support [default]"); the option's
  value is always written out for the same reason as above.
- ``--xattr`` only when ``xattr`` is true. ``--posix-acl`` implies xattr support inside
  virtiofsd whatever ``--xattr`` says; it is still passed on its own when ``posixAcl`` is true.
- ``--sandbox`` is left at virtiofsd's default, ``namespace``. The VMs run as the unprivileged
  ``programs.vmsilo.user``; without root, virtiofsd builds its sandbox from a new user namespace
  (plus mount, PID and network namespaces) and pivots into the shared directory, which needs no
  privileges as long as the kernel allows unprivileged user namespaces (NixOS does by default).
  ``chroot`` is root-only and ``none`` would drop the isolation, so neither is chosen. Inside
  the namespace the user's own UID/GID are mapped 1:1 unless ``uidMap``/``gidMap`` say otherwise,
  which only work in this mode.
- ``--seccomp`` stays at its default (``kill``).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from vmsilo_nix.config.artifacts import Artifacts
from vmsilo_nix.config.model import Config, SharedDirectory
from vmsilo_nix.config.naming import shared_home_path
from vmsilo_nix.facts import HOME_TAG
from vmsilo_nix.plan.argv import Arg, OptionPath, arg, kv_list
from vmsilo_nix.plan.layout import Layout


@attrs.frozen
class VirtiofsPlan:
    """One share: its virtiofsd command line and where crosvm finds it."""

    tag: str
    socket: str
    shared_dir: str
    readonly: bool
    argv: tuple[Arg, ...]  # argv[0] is the virtiofsd executable
    sources: tuple[OptionPath, ...]
    dir_source: OptionPath  # the option that names shared_dir: what a missing one is told by
    host_creates: bool  # the default home: the host module creates it (tmpfiles), not the user


def plan_virtiofs(
    config: Config, vm_index: int, layout: Layout, artifacts: Artifacts
) -> tuple[VirtiofsPlan, ...]:
    """The home share first (when ``sharedHome`` is not false), then every entry of
    ``sharedDirectories`` in tag order (the order Nix gives attribute names)."""
    vm = config.nixos_vms[vm_index]
    vm_src: OptionPath = ("nixosVms", vm_index)
    program = artifacts.program("virtiofsd")
    plans: list[VirtiofsPlan] = []

    home = shared_home_path(vm)
    if home is not None:
        home_src: OptionPath = (*vm_src, "sharedHome")
        plans.append(
            _plan(
                program,
                HOME_TAG,
                layout.virtiofs_socket(vm.name, HOME_TAG),
                SharedDirectory(path=home),
                share_src=home_src,
                settings_src=None,
                host_creates=vm.shared_home is True,
            )
        )
    for tag in sorted(vm.shared_directories):
        share_src = (*vm_src, "sharedDirectories", tag)
        plans.append(
            _plan(
                program,
                tag,
                layout.virtiofs_socket(vm.name, tag),
                vm.shared_directories[tag],
                share_src=share_src,
                settings_src=share_src,
            )
        )
    return tuple(plans)


def _plan(
    program: str,
    tag: str,
    socket: str,
    share: SharedDirectory,
    *,
    share_src: OptionPath,
    settings_src: OptionPath | None,
    host_creates: bool = False,
) -> VirtiofsPlan:
    """``settings_src`` is None for the home share, whose settings are the defaults."""
    path_src = share_src if settings_src is None else (*settings_src, "path")

    def opt(key: str, word: str) -> Arg:
        if settings_src is None:
            return arg(word, note=f"sharedHome uses the default of sharedDirectories.*.{key}")
        return arg(word, source=(*settings_src, key))

    s = share
    out = [
        arg(program, note=f"the virtiofsd of share {tag}"),
        arg(f"--socket-path={socket}", note="vhost-user socket in the VM's run-time directory"),
        arg(f"--shared-dir={s.path}", source=path_src),
        arg(f"--tag={tag}", source=share_src, note="the name the guest mounts"),
        opt("threadPoolSize", f"--thread-pool-size={s.thread_pool_size}"),
    ]
    if s.xattr:
        out.append(opt("xattr", "--xattr"))
    if s.posix_acl:
        out.append(opt("posixAcl", "--posix-acl"))
    out.append(opt("inodeFileHandles", f"--inode-file-handles={s.inode_file_handles}"))
    out.append(opt("cache", f"--cache={s.cache}"))
    if s.allow_mmap:
        out.append(opt("allowMmap", "--allow-mmap"))
    if not s.enable_readdirplus:
        out.append(opt("enableReaddirplus", "--no-readdirplus"))
    if s.writeback:
        out.append(opt("writeback", "--writeback"))
    if s.allow_direct_io:
        out.append(opt("allowDirectIo", "--allow-direct-io"))
    out.append(opt("logLevel", f"--log-level={s.log_level}"))
    out.append(opt("killprivV2", "--killpriv-v2" if s.killpriv_v2 else "--no-killpriv-v2"))
    for key, flag, value in (
        ("uidMap", "--uid-map", s.uid_map),
        ("gidMap", "--gid-map", s.gid_map),
        ("translateUid", "--translate-uid", s.translate_uid),
        ("translateGid", "--translate-gid", s.translate_gid),
    ):
        if value is not None:
            out.append(opt(key, f"{flag}={value}"))
    if s.preserve_noatime:
        out.append(opt("preserveNoatime", "--preserve-noatime"))
    if s.readonly:
        out.append(opt("readonly", "--readonly"))
    return VirtiofsPlan(
        tag=tag,
        socket=socket,
        shared_dir=s.path,
        readonly=s.readonly,
        argv=tuple(out),
        sources=(share_src,),
        dir_source=path_src,
        host_creates=host_creates,
    )


def crosvm_args(plans: Sequence[VirtiofsPlan]) -> list[Arg]:
    """One ``--vhost-user type=fs,socket=...`` per share, in the order of the plans."""
    return [
        arg(
            "--vhost-user",
            kv_list([("type", "fs"), ("socket", p.socket)]),
            sources=p.sources,
            note=f"virtiofs share {p.tag}",
        )
        for p in plans
    ]
