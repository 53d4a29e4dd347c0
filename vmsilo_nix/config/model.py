"""The typed configuration model: every option of ``programs.vmsilo`` as a frozen attrs class.

This module is the single source of truth for the option schema: ``nix/options.nix``, the JSON
Schema and ``docs/options.md`` are generated from it (``vmsilo options``). Defaults here are the
defaults of the NixOS options. Lists are tuples and attribute sets are mappings, so a loaded
configuration cannot be changed by accident.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

import attrs

from vmsilo_nix.config.schema import (
    T_MODULE,
    T_PACKAGE,
    T_PATH,
    Literal_,
    NixOnly,
    attrs_of,
    either,
    list_of,
    null_or,
    option,
)

# Values allowed inside crosvm key=value attribute sets (`gpu`), and inside the free-form ones
# (disks, PCI devices, vhost-user devices), where null means "leave the key out".
AttrValue = str | int | bool
FreeformValue = str | int | bool | None
Freeform = Mapping[str, FreeformValue]

LogLevel = Literal["error", "warn", "info", "debug", "trace", "off"]


@attrs.frozen(kw_only=True)
class Route:
    via: str = option(doc="Address of the gateway that traffic for this destination goes through.")


@attrs.frozen(kw_only=True)
class Tap:
    name: str | None = option(
        None, doc="Name of the TAP device on the host. When null, `<vm name>-<interface index>`."
    )
    host_address: str | None = option(
        None,
        doc=(
            "Address with prefix length given to the host end of the TAP device, such as "
            "`10.0.0.254/24`. When null the host end has no address. Cannot be combined with "
            "`bridge`."
        ),
        example="10.0.0.254/24",
    )
    bridge: str | None = option(
        None,
        doc="Host bridge (declared in `networking.bridges`) that the TAP device joins. "
        "Cannot be combined with `hostAddress`.",
        example="br0",
    )


@attrs.frozen(kw_only=True)
class NetworkInterface:
    type: Literal["tap"] = option("tap", doc="Kind of host backend. Only `tap` exists today.")
    mac_address: str | None = option(
        None,
        doc=(
            "Guest MAC address. When null, a stable locally administered address is derived "
            "from the SHA-1 of `<vm name>-<interface name>`."
        ),
        example="52:ab:cd:ef:12:34",
    )
    tap: Tap | None = option(
        None, doc="Host TAP device for this interface; must be set when `type` is `tap`."
    )
    dhcp: bool = option(False, doc="Let the guest configure this interface by DHCP.")
    addresses: tuple[str, ...] = option(
        (),
        doc="Static IPv4 addresses of the guest, each with its prefix length.",
        example=("10.0.0.1/24",),
    )
    routes: Mapping[str, Route] = option(
        factory=dict,
        doc="IPv4 routes of the guest: destination network (CIDR) to gateway.",
        example=Literal_('{ "0.0.0.0/0".via = "10.0.0.254"; }'),
    )
    v6_addresses: tuple[str, ...] = option(
        (),
        doc="Static IPv6 addresses of the guest, each with its prefix length.",
        example=("fc00::2/64",),
    )
    v6_routes: Mapping[str, Route] = option(
        factory=dict,
        doc="IPv6 routes of the guest: destination network (CIDR) to gateway.",
        example=Literal_('{ "::/0".via = "fc00::1"; }'),
    )


@attrs.frozen(kw_only=True)
class Network:
    nameservers: tuple[str, ...] = option(
        (), doc="DNS servers the guest uses.", example=("9.9.9.9", "1.1.1.1")
    )
    interfaces: Mapping[str, NetworkInterface] = option(
        factory=dict,
        doc="Network interfaces of the guest, by the name the guest sees them under.",
    )


@attrs.frozen(kw_only=True)
class AutoShutdown:
    enable: bool = option(
        False,
        doc="Power the VM off once it has been idle (no commands running) for `after` seconds.",
    )
    after: int = option(
        60, doc="Idle time in seconds after the last command ends before power-off."
    )


@attrs.frozen(kw_only=True)
class RootOverlay:
    type: Literal["qcow2", "tmpfs"] = option(
        "qcow2",
        doc="Where writes to the read-only root go: a fresh qcow2 disk (`qcow2`) or guest RAM "
        "(`tmpfs`). Either way they are discarded when the VM stops.",
    )
    size: str = option(
        "10G",
        doc="Virtual size of the qcow2 overlay disk, in the syntax of `qemu-img create` "
        "(ignored for tmpfs).",
        example="20G",
    )


@attrs.frozen(kw_only=True)
class Sound:
    playback: bool = option(True, doc="Give the guest a sound output device.")
    capture: bool = option(False, doc="Give the guest a microphone too (this turns on playback).")


@attrs.frozen(kw_only=True)
class SharedDirectory:
    path: str = option(doc="Directory on the host to share into the guest.")
    thread_pool_size: int = option(
        0, doc="Worker threads of this share's virtiofsd (0: handle requests on the main thread)."
    )
    xattr: bool = option(True, doc="Pass extended attributes through.")
    posix_acl: bool = option(
        True, doc="Support POSIX ACLs. Cannot be used with `translateUid`/`translateGid`."
    )
    readonly: bool = option(False, doc="Refuse every write from the guest.")
    inode_file_handles: Literal["never", "prefer", "mandatory"] = option(
        "prefer", doc="Whether virtiofsd refers to inodes by file handles instead of open fds."
    )
    cache: Literal["auto", "always", "never", "metadata"] = option(
        "auto", doc="Guest caching policy for this share."
    )
    allow_mmap: bool = option(False, doc="Allow shared memory mappings of files in this share.")
    enable_readdirplus: bool = option(
        True, doc="Use READDIRPLUS; when false virtiofsd gets `--no-readdirplus`."
    )
    writeback: bool = option(False, doc="Let the guest cache writes (writeback caching).")
    allow_direct_io: bool = option(False, doc="Honour O_DIRECT opens from the guest.")
    log_level: LogLevel = option("info", doc="Log level of this share's virtiofsd.")
    killpriv_v2: bool = option(
        True,
        doc="Turn on FUSE_HANDLE_KILLPRIV_V2, so that clearing setuid/setgid bits on write is "
        "done once, by the host.",
    )
    uid_map: str | None = option(
        None,
        doc="User ID range mapped into virtiofsd's user namespace, as "
        "`:namespace_uid:host_uid:count:`.",
    )
    gid_map: str | None = option(
        None,
        doc="Group ID range mapped into virtiofsd's user namespace, as "
        "`:namespace_gid:host_gid:count:`.",
    )
    translate_uid: str | None = option(
        None,
        doc="User ID translation done inside virtiofsd, as `TYPE:source:target:count`. "
        "Cannot be used with `posixAcl`.",
    )
    translate_gid: str | None = option(
        None,
        doc="Group ID translation done inside virtiofsd, as `TYPE:source:target:count`. "
        "Cannot be used with `posixAcl`.",
    )
    preserve_noatime: bool = option(False, doc="Keep the O_NOATIME flag of opened files.")


@attrs.frozen(kw_only=True)
class VmCrosvm:
    log_level: str | None = option(
        None,
        doc="crosvm log level for this VM; null uses the global `crosvm.logLevel`.",
        example="debug",
    )
    extra_args: tuple[str, ...] = option(
        (),
        doc="Arguments placed before `run`, after the global `crosvm.extraArgs`.",
        example=("--syslog-tag", "banking"),
    )
    extra_run_args: tuple[str, ...] = option(
        (),
        doc="Arguments placed after `run`, after the global `crosvm.extraRunArgs`.",
        example=("--disable-sandbox",),
    )


GUEST_CONFIG_TYPE = either(T_MODULE, list_of(T_MODULE))


@attrs.frozen(kw_only=True)
class Vm:
    __nix_only__: ClassVar[tuple[NixOnly, ...]] = (
        NixOnly(
            "guestConfig",
            doc="NixOS modules merged into this VM's guest system: one module or a list of them "
            "(attribute sets, module functions or paths). Only Nix reads this option.",
            nix_type=GUEST_CONFIG_TYPE,
            default=(),
            example=Literal_("{ services.openssh.enable = true; }"),
        ),
    )

    name: str = option(
        doc="Name of the VM: used in commands (`vm-run NAME ...`), unit, file and TAP names.",
        example="banking",
    )
    color: str = option(
        "red",
        doc="Colour of this VM's window decorations, passed to the compositor through the "
        'Wayland security context: a name (`"red"`), `"#rrggbb"` or `"rgb(r,g,b)"`.',
        example="#3498db",
    )
    wayland_proxy: Literal["wayland-proxy-virtwl", "sommelier"] = option(
        "wayland-proxy-virtwl",
        doc="Program that forwards guest Wayland clients to the host.",
        example="sommelier",
    )
    memory: int = option(1024, doc="Memory of the VM in MiB.", example=4096)
    cpus: int = option(2, doc="Number of virtual CPUs.", example=4)
    network: Network = option(
        factory=Network,
        doc="Guest networking.",
        example=Literal_(
            '{ nameservers = [ "9.9.9.9" ]; interfaces.wan = { tap.hostAddress = "10.0.0.254/24";'
            ' addresses = [ "10.0.0.1/24" ]; routes."0.0.0.0/0".via = "10.0.0.254"; }; }'
        ),
    )
    auto_shutdown: AutoShutdown = option(factory=AutoShutdown, doc="Power-off of idle VMs.")
    auto_start: bool = option(
        False, doc="Start the VM at boot rather than on first use (vm-run, vm-start, a dependent)."
    )
    root_overlay: RootOverlay = option(
        factory=RootOverlay, doc="Where the writable layer over the read-only root lives."
    )
    depends_on: tuple[str, ...] = option(
        (), doc="Other VMs (by name) that are started before this one."
    )
    additional_disks: tuple[Freeform, ...] = option(
        (),
        doc="Extra disks, one crosvm `--block` each. `path` is required; every other key is "
        "passed to crosvm as `key=value` (null leaves it out).",
        example=Literal_(
            '[ { path = "/var/lib/vms/data.qcow2"; ro = false; sparse = true; '
            'block-size = 4096; id = "data"; } ]'
        ),
    )
    root_disk: Freeform | None = option(
        None,
        doc="Root disk to use instead of the built image, as crosvm `--block` keys; `path` is "
        "required. When set, `rootDiskReadonly` is ignored.",
        example=Literal_('{ path = "/var/lib/vms/root.qcow2"; ro = true; }'),
    )
    kernel: str | None = option(
        None,
        nix_type=null_or(T_PATH),
        doc="Kernel image to boot instead of the guest system's own.",
        example="/boot/vm/bzImage",
    )
    initramfs: str | None = option(
        None,
        nix_type=null_or(T_PATH),
        doc="Initramfs to boot instead of the guest system's own.",
        example="/boot/vm/initrd",
    )
    root_disk_readonly: bool = option(
        True, doc="Attach the built root image read-only (not used when `rootDisk` is set)."
    )
    copy_channel: bool = option(
        False,
        doc="Put a NixOS channel of the nixpkgs the VM was built from into its root image.",
    )
    shared_home: bool | str = option(
        True,
        doc="Host directory shared as `/home/user` in the guest through virtiofs: `true` for "
        "`/shared/<vm name>`, a path for another directory, `false` for none.",
        example="/data/vms/banking-home",
    )
    kernel_params: tuple[str, ...] = option(
        (),
        doc="Extra parameters appended to the guest kernel command line.",
        example=("quiet", "loglevel=3"),
    )
    gpu: bool | Mapping[str, AttrValue] = option(
        True,
        doc="Virtual GPU: `false` for none, `true` for the default set-up for Wayland "
        "forwarding, or crosvm `--gpu` keys as an attribute set.",
        example=Literal_('{ context-types = "cross-domain:virgl2"; width = 1920; height = 1080; }'),
    )
    sound: Sound = option(factory=Sound, group=True, doc="Sound devices of the guest.")
    shared_directories: Mapping[str, SharedDirectory] = option(
        factory=dict,
        doc="Host directories shared through virtiofs, by tag (the name the guest mounts). "
        "Each runs its own virtiofsd.",
        example=Literal_('{ documents = { path = "/home/alice/Documents"; readonly = true; }; }'),
    )
    vhost_user: tuple[Freeform, ...] = option(
        (),
        doc="Extra vhost-user devices, one crosvm `--vhost-user` each, as `key=value` pairs.",
        example=Literal_('[ { type = "net"; socket = "/run/vhost-net.sock"; } ]'),
    )
    pci_devices: tuple[Freeform, ...] = option(
        (),
        doc="PCI devices passed through with `--vfio`. `path` (a BDF such as `01:00.0` or a "
        "sysfs path) is required; other keys go to crosvm as `key=value`. Each device must "
        "also be in `isolatedPciDevices`.",
        example=Literal_('[ { path = "01:00.0"; } ]'),
    )
    guest_programs: tuple[str, ...] = option(
        (),
        nix_type=list_of(T_PACKAGE),
        doc="Packages installed in this VM's guest system; their desktop entries appear in the "
        "host menu. Outside Nix these are store paths.",
        example=Literal_("[ pkgs.firefox ]"),
    )
    crosvm: VmCrosvm = option(factory=VmCrosvm, doc="crosvm settings of this VM.")


@attrs.frozen(kw_only=True)
class Crosvm:
    log_level: str = option(
        "info", doc="crosvm log level (error, warn, info, debug, trace).", example="debug"
    )
    extra_args: tuple[str, ...] = option(
        (),
        doc="Arguments given to crosvm before the `run` subcommand, for every VM.",
        example=("--syslog-tag", "vmsilo"),
    )
    extra_run_args: tuple[str, ...] = option(
        (), doc="Arguments given to `crosvm run`, for every VM.", example=("--disable-sandbox",)
    )


@attrs.frozen(kw_only=True)
class Nat:
    enable: bool = option(False, doc="Masquerade VM traffic out of the host (NAT).")
    interface: str = option(
        "",
        doc="Host interface that NATed traffic leaves by; required with `enable`.",
        example="eth0",
    )


@attrs.frozen(kw_only=True)
class HostNetworking:
    nat: Nat = option(factory=Nat, group=True, doc="NAT for VM traffic.")


@attrs.frozen(kw_only=True)
class Tray:
    log_level: str = option(
        "info", doc="Log level of the tray forwarding daemons on host and guests.", example="debug"
    )


@attrs.frozen(kw_only=True)
class Balloond:
    log_level: str = option("info", doc="Log level of vmsilo-balloond.", example="debug")
    poll_interval: str = option(
        "2s",
        doc='How often memory is rebalanced when the host is calm (e.g. "2s", "500ms").',
        example="1s",
    )
    critical_host_percent: int = option(
        5,
        doc="Free host memory, in percent of RAM, below which the host is in trouble.",
        example=10,
    )
    critical_guest_available: str = option(
        "256m",
        doc="Available memory a guest always keeps: inflating its balloon never goes below it.",
        example="400m",
    )
    guest_available_bias: str = option(
        "400m",
        doc="Extra cushion above `criticalGuestAvailable`, weighted by how full the balloon "
        "is, so that nearly starved guests are squeezed less.",
        example="500m",
    )
    min_poll_interval: str = option(
        "250ms",
        doc="Fastest rebalancing interval, used under heavy memory pressure.",
        example="500ms",
    )
    psi_ceiling: int = option(
        25,
        doc="Host memory PSI (avg10, percent) at which the fastest interval is reached.",
        example=50,
    )
    extra_args: tuple[str, ...] = option((), doc="Extra arguments for vmsilo-balloond.")


def _package(doc: str) -> NixOnly:
    return NixOnly(doc.split(" ", 1)[0], doc=doc, nix_type=T_PACKAGE, internal=True)


@attrs.frozen(kw_only=True)
class Config:
    """``programs.vmsilo``."""

    __nix_only__: ClassVar[tuple[NixOnly, ...]] = (
        NixOnly(
            "_internal",
            doc="Plumbing between vmsilo's own modules.",
            children=(
                _package("crosvm package used to run the VMs."),
                _package("wayland-proxy-virtwl package for guests."),
                _package("sommelier package for guests."),
                _package("vmsilo-balloond package."),
                _package("vmsilo-tray package."),
                NixOnly(
                    "vmScripts",
                    doc="Launcher of each VM, by VM name.",
                    nix_type=attrs_of(T_PATH),
                    default={},
                    internal=True,
                ),
                NixOnly(
                    "proxyScripts",
                    doc="Wayland proxy script of each VM, by VM name.",
                    nix_type=attrs_of(T_PATH),
                    default={},
                    internal=True,
                ),
                NixOnly(
                    "userScripts",
                    doc="User commands (vm-run, vm-start, ...), by name.",
                    nix_type=attrs_of(T_PATH),
                    default={},
                    internal=True,
                ),
                NixOnly(
                    "desktopFilesPackage",
                    doc="Package of the generated .desktop files.",
                    nix_type=T_PACKAGE,
                    internal=True,
                ),
                NixOnly(
                    "bashCompletionScript",
                    doc="Bash completion for the vm-* commands.",
                    nix_type=T_PATH,
                    internal=True,
                ),
            ),
        ),
        NixOnly(
            "package",
            doc="The generated package: launchers, user commands, desktop files, completion.",
            nix_type=T_PACKAGE,
            read_only=True,
        ),
    )

    enable: bool = option(False, doc="", enable="vmsilo, NixOS VMs in their own silos")
    enable_bash_integration: bool = option(
        True, doc="", enable="bash completion of the vmsilo commands"
    )
    crosvm: Crosvm = option(factory=Crosvm, doc="Settings of crosvm shared by all VMs.")
    scheduler_isolation: Literal["full", "vm", "off"] = option(
        "full",
        doc="Protection against attacks across hyperthreads, by core scheduling. `full`: a vCPU "
        "thread never shares a core with any other thread. `vm`: only with vCPUs of its own "
        "VM. `off`: no restriction.",
    )
    user: str = option(doc="Account that runs the VMs and owns their TAP devices.", example="alice")
    host_networking: HostNetworking = option(
        factory=HostNetworking, doc="Host side of VM networking."
    )
    isolated_pci_devices: tuple[str, ...] = option(
        (),
        doc="PCI devices (BDF, `01:00.0` or `0000:01:00.0`) bound to vfio-pci early at boot so "
        "that VMs can take them. Blacklisting their host drivers makes this more reliable.",
        example=("01:00.0",),
    )
    nixos_vms: tuple[Vm, ...] = option((), doc="The VMs.")
    vmsilo_tray: Tray = option(
        factory=Tray, name="vmsilo-tray", doc="Forwarding of guest tray icons to the host."
    )
    vmsilo_balloond: Balloond = option(
        factory=Balloond, name="vmsilo-balloond", doc="The memory balloon daemon."
    )
