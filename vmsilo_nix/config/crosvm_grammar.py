"""The crosvm command-line grammar, written down as data.

Read from google/crosvm ``main`` at commit f1e797a68dada35cbafef8d0cfae36bacfaea85e, committed
2026-08-21 (crosvm has no release tags).  Files read: ``src/crosvm/cmdline.rs`` (the
``CrosvmCmdlineArgs`` global flags and the ``RunCommand`` argh struct, plus its
``TryFrom<RunCommand> for Config`` deprecation warnings), ``src/main.rs`` (``prepare_argh_args``),
``serde_keyvalue/src/key_values.rs`` (first-field shorthand) and the serde key=value structs:
``DiskOption`` (devices/src/virtio/block/mod.rs), ``GpuParameters``
(devices/src/virtio/gpu/parameters.rs), ``DisplayParameters`` (vm_control/src/gpu.rs),
``VhostUserFrontendOption``/``CpuOptions``/``MemOptions``/``PmemOption`` (src/crosvm/config.rs),
``NetParameters`` (devices/src/virtio/net.rs), ``VfioOption`` (src/crosvm/sys/linux/config.rs),
``VsockConfig`` (devices/src/virtio/vsock/sys/linux.rs) and the virtio-snd ``Parameters``
(devices/src/virtio/snd/parameters.rs).  Removal dates come from ``git log`` of cmdline.rs
(commit dates).

Scope: a Linux x86_64 build.  Flags behind a non-default cargo feature are included in the sets
and listed in :data:`RUN_FEATURE_GATED`; flags that exist only on Windows, Android or aarch64
are left out of the sets and listed in :data:`RUN_OTHER_PLATFORMS`.

How crosvm reads argv (``crosvm [global flags] run [run flags] KERNEL``):

* The parser is argh.  Before argh sees argv, ``src/main.rs`` rewrites the exact arguments
  ``--host_ip`` -> ``--host-ip`` and ``-h`` -> ``--help`` (:data:`ARGV_REWRITES`), and splits
  every other argument that starts with ``-`` (and is longer than one character) at its FIRST
  ``=``.  So ``--block=path=/x,ro`` works.  The split also hits values: a separate value
  argument such as ``-foo=bar`` becomes two arguments, so write ``--params=-foo=bar`` instead.
* A switch takes no value: ``--no-balloon=true`` becomes ``--no-balloon true`` and ``true`` is
  then read as the KERNEL positional.  Repeating a switch is harmless (argh only sets it).
* A non-repeatable option given twice is a fatal "duplicate values provided" error; only the
  ``Vec`` options in :data:`RUN_REPEATABLE` may repeat.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Literal

from vmsilo_nix.assignments import split_assignment

CROSVM_COMMIT: Final = "f1e797a68dada35cbafef8d0cfae36bacfaea85e"
CROSVM_COMMIT_DATE: Final = "2026-08-21"

FlagKind = Literal["switch", "single", "repeatable", "unknown"]
Scope = Literal["run", "global"]

# ---------------------------------------------------------------------------------------------
# Global flags (``CrosvmCmdlineArgs``): only valid BEFORE the ``run`` subcommand.  argh's
# built-in ``--help`` is valid too but is deliberately not listed.

GLOBAL_SWITCHES: Final = frozenset({"--extended-status", "--no-syslog"})
GLOBAL_SINGLE: Final = frozenset({"--log-level", "--syslog-tag"})
GLOBAL_FLAGS: Final = GLOBAL_SWITCHES | GLOBAL_SINGLE

# ---------------------------------------------------------------------------------------------
# ``run`` flags.  Every option of ``RunCommand`` available on Linux x86_64 is in exactly one of
# the three sets below (deprecated ones included: they still parse).

RUN_REPEATABLE: Final = frozenset(
    {
        "--acpi-table",
        "--block",
        "--cpu-cluster",
        "--device-tree-overlay",
        "--disk",
        "--evdev",
        "--file-backed-mapping",
        "--fw-cfg",
        "--gpu",  # a Vec for argh, but see RUN_AT_MOST_ONCE
        "--gpu-display",
        "--input",
        "--keyboard",
        "--media-decoder",
        "--mouse",
        "--multi-touch",
        "--net",
        "--oem-strings",
        "--params",
        "--pmem",
        "--pmem-device",
        "--pmem-ext2",
        "--rotary",
        "--rw-pmem-device",
        "--rwdisk",
        "--scsi-block",
        "--serial",
        "--shared-dir",
        "--single-touch",
        "--stub-pci-device",
        "--switches",
        "--tap-fd",
        "--tap-name",
        "--trackpad",
        "--v4l2-proxy",
        "--vfio",
        "--vfio-platform",
        "--vhost-user",
        "--video-decoder",
        "--video-encoder",
        "--virtio-snd",
        "--wayland-sock",
    }
)

RUN_SWITCHES: Final = frozenset(
    {
        "--balloon-page-reporting",
        "--balloon-ws-reporting",
        "--boost-uclamp",
        "--break-linux-pci-config-io",
        "--delay-rt",
        "--disable-sandbox",
        "--disable-virtio-intx",
        "--display-window-keyboard",
        "--display-window-mouse",
        "--enable-fw-cfg",
        "--enable-hwp",
        "--force-calibrated-tsc-leaf",
        "--force-disable-readonly-mem",
        "--host-cpu-topology",
        "--hugepages",
        "--itmt",
        "--lock-guest-memory",
        "--no-balloon",
        "--no-i8042",
        "--no-rng",
        "--no-rtc",
        "--no-smt",
        "--no-usb",
        "--per-vm-core-scheduling",
        "--protected-vm",
        "--protected-vm-without-firmware",
        "--pvclock",
        "--s2idle",
        "--seccomp-log-failures",
        "--simple-media-device",
        "--split-irqchip",
        "--suspended",
        "--suspended-vcpus",
        "--unmap-guest-memory-on-fork",
        "--vfio-isolate-hotplug",
        "--vhost-net",
        "--vtpm-proxy",
    }
)

RUN_SINGLE: Final = frozenset(
    {
        "--android-display-service",
        "--android-fstab",
        "--async-executor",
        "--balloon-bias-mib",
        "--balloon-control",
        "--balloon-ws-num-bins",
        "--battery",
        "--bios",
        "--bus-lock-ratelimit",
        "--cid",
        "--coiommu",
        "--core-scheduling",
        "--cpu-affinity",
        "--cpu-capacity",
        "--cpus",
        "--dump-device-tree-blob",
        "--dynamic-power-coefficient",
        "--fdt-position",
        "--gdb",
        "--gpu-cgroup-path",
        "--gpu-render-server",
        "--gpu-server-cgroup-path",
        "--host-ip",
        "--hypervisor",
        "--init-mem",
        "--initrd",
        "--irqchip",
        "--kvm-device",
        "--mac",
        "--mem",
        "--mmio-address-range",
        "--name",
        "--nested",
        "--net-vq-pairs",
        "--netmask",
        "--pci",
        "--pci-hotplug-slots",
        "--pci-start",
        "--pflash",
        "--pivot-root",
        "--process-invariants-handle",
        "--process-invariants-size",
        "--protected-vm-with-firmware",
        "--pstore",
        "--restore",
        "--root",
        "--rt-cpus",
        "--rwroot",
        "--seccomp-policy-dir",
        "--slirp-capture-file",
        "--smbios",
        "--socket",
        "--sound",
        "--swap",
        "--syslog-tag",
        "--unprotected-vm-with-firmware",
        "--vcpu-cgroup-path",
        "--vhost-net-device",
        "--vhost-user-connect-timeout-ms",
        "--vhost-vsock-device",
        "--vhost-vsock-fd",
        "--vsock",
        "--x-display",
    }
)

#: Options that take a bool VALUE (``--core-scheduling=false``); they are not switches.  Bare,
#: ``--core-scheduling`` eats the next argument.  Its default is true.
VALUE_TAKING_BOOL: Final = frozenset({"--core-scheduling"})

#: Vec options that argh accepts repeatedly but crosvm then rejects when given more than once
#: ("at most one GPU device can currently be created").
RUN_AT_MOST_ONCE: Final = frozenset({"--gpu"})

#: crosvm's default cargo features (Cargo.toml ``default``).
DEFAULT_FEATURES: Final = frozenset(
    {
        "audio",
        "balloon",
        "document-features",
        "gpu",
        "qcow",
        "usb",
        "libvda-stub",
        "net",
        "slirp",
        "virtio_wl",
    }
)

#: ``run`` flags that only exist when crosvm is built with a cargo feature (several names mean
#: "any of").  Flags whose feature is not in DEFAULT_FEATURES are unknown to a default build.
RUN_FEATURE_GATED: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        "--android-display-service": frozenset({"android_display"}),
        "--balloon-bias-mib": frozenset({"balloon"}),
        "--balloon-control": frozenset({"balloon"}),
        "--balloon-page-reporting": frozenset({"balloon"}),
        "--balloon-ws-num-bins": frozenset({"balloon"}),
        "--balloon-ws-reporting": frozenset({"balloon"}),
        "--gdb": frozenset({"gdb"}),
        "--gpu": frozenset({"gpu"}),
        "--gpu-cgroup-path": frozenset({"gpu"}),
        "--gpu-display": frozenset({"gpu"}),
        "--gpu-render-server": frozenset({"gpu"}),
        "--gpu-server-cgroup-path": frozenset({"gpu"}),
        "--host-ip": frozenset({"net"}),
        "--init-mem": frozenset({"balloon"}),
        "--mac": frozenset({"net"}),
        "--media-decoder": frozenset({"media"}),  # and also video-decoder
        "--net": frozenset({"net"}),
        "--net-vq-pairs": frozenset({"net"}),
        "--netmask": frozenset({"net"}),
        "--no-balloon": frozenset({"balloon"}),
        "--pci-hotplug-slots": frozenset({"pci-hotplug"}),
        "--process-invariants-handle": frozenset({"process-invariants"}),
        "--process-invariants-size": frozenset({"process-invariants"}),
        "--pvclock": frozenset({"pvclock"}),
        "--simple-media-device": frozenset({"media"}),
        "--slirp-capture-file": frozenset({"slirp-ring-capture", "slirp-debug"}),
        "--sound": frozenset({"audio"}),
        "--v4l2-proxy": frozenset({"media"}),
        "--video-decoder": frozenset({"video-decoder"}),
        "--video-encoder": frozenset({"video-encoder"}),
        "--virtio-snd": frozenset({"audio"}),
        "--vtpm-proxy": frozenset({"vtpm"}),
    }
)

#: ``RunCommand`` fields that do not exist on Linux x86_64, with the target they need.  They are
#: "unknown" here.
RUN_OTHER_PLATFORMS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "--cpu-frequencies-khz": "aarch64 Linux/Android",
        "--cpu-ipc-ratio": "aarch64 Linux/Android",
        "--crash-pipe-name": "Windows (feature crash-report)",
        "--dev-pm": "aarch64 Linux/Android",
        "--exit-stats": "Windows",
        "--ffa": "aarch64 Android",
        "--host-guid": "Windows",
        "--kernel-log-file": "Windows",
        "--log-file": "Windows",
        "--logs-directory": "Windows",
        "--mte": "aarch64; also deprecated 2026-07-27, use --cpus mte=[...]",
        "--no-pmu": "aarch64",
        "--product-channel": "Windows",
        "--product-name": "Windows",
        "--product-version": "Windows",
        "--service-pipe-name": "Windows",
        "--smccc-trng": "aarch64 Linux/Android",
        "--swiotlb": "aarch64",
        "--task-profiles": "Android",
        "--vfio-platform-pm": "aarch64 Linux/Android",
        "--vhost-scmi": "aarch64 Linux/Android",
        "--virt-cpufreq": "aarch64 Linux/Android",
        "--virt-cpufreq-upstream": "aarch64 Linux/Android",
    }
)

_USE_BLOCK: Final = "use --block (deprecated 2023-10-17, warns since 2024-05-21)"
_USE_NET: Final = "use --net (warns since 2023-04-07)"
_USE_INPUT: Final = "use --input TYPE[...] (warns since 2024-02-13)"
_USE_PMEM: Final = "use --pmem (2024-05-16)"
_USE_VSOCK: Final = "use --vsock cid=N[,device=PATH] (2023-03-22)"

#: ``run`` flags that still parse but are deprecated (help text says DEPRECATED and/or crosvm
#: logs a warning).  Never emit them.  All are members of the run sets above.
RUN_DEPRECATED: Final[Mapping[str, str]] = MappingProxyType(
    {
        "--cid": _USE_VSOCK,
        "--vhost-vsock-device": _USE_VSOCK,
        "--vhost-vsock-fd": _USE_VSOCK,
        "--cpu-cluster": "use --cpus clusters=[[...]] (2022-12-02)",
        "--disk": _USE_BLOCK,
        "--rwdisk": _USE_BLOCK,
        "--root": _USE_BLOCK,
        "--rwroot": _USE_BLOCK,
        "--gpu-display": "use --gpu displays=[[...]] (2022-11-24, warns since 2024-04-15)",
        "--host-ip": _USE_NET,
        "--netmask": _USE_NET,
        "--mac": _USE_NET,
        "--tap-name": _USE_NET,
        "--tap-fd": _USE_NET,
        "--net-vq-pairs": _USE_NET,
        "--vhost-net": _USE_NET,
        "--vhost-net-device": "use --net ...,vhost-net=[device=PATH] (2023-06-09)",
        "--kvm-device": "use --hypervisor kvm[device=PATH] (2023-04-04)",
        "--oem-strings": "use --smbios oem-strings=[...] (2023-08-09)",
        "--pci-start": "use --pci mem=[start=...] (2024-11-22)",
        "--pmem-device": _USE_PMEM,
        "--rw-pmem-device": _USE_PMEM,
        "--split-irqchip": "use --irqchip split (2023-04-11)",
        "--syslog-tag": "run --syslog-tag: use the global `crosvm --syslog-tag T run` (2023-04-11)",
        "--vfio-platform": "use --vfio (2023-01-05)",
        "--single-touch": _USE_INPUT,
        "--multi-touch": _USE_INPUT,
        "--trackpad": _USE_INPUT,
        "--mouse": _USE_INPUT,
        "--keyboard": _USE_INPUT,
        "--switches": _USE_INPUT,
        "--rotary": _USE_INPUT,
        "--evdev": _USE_INPUT,
    }
)

_VHOST_USER_REMOVED: Final = "removed 2025-04-02; use --vhost-user type=TYPE,socket=PATH"

#: ``run`` flags that argh-era crosvm had but the current one rejects (date = commit removing
#: them from cmdline.rs).  Never emit them.
RUN_REMOVED: Final[Mapping[str, str]] = MappingProxyType(
    {
        "--vhost-user-fs": "removed 2025-04-02; use --vhost-user type=fs,socket=PATH "
        "(the tag now comes from the backend, e.g. virtiofsd --tag)",
        "--vhost-user-blk": _VHOST_USER_REMOVED,
        "--vhost-user-console": _VHOST_USER_REMOVED,
        "--vhost-user-gpu": _VHOST_USER_REMOVED,
        "--vhost-user-mac80211-hwsim": _VHOST_USER_REMOVED,
        "--vhost-user-net": _VHOST_USER_REMOVED,
        "--vhost-user-snd": _VHOST_USER_REMOVED,
        "--vhost-user-video-decoder": _VHOST_USER_REMOVED,
        "--vhost-user-vsock": _VHOST_USER_REMOVED,
        "--vhost-user-wl": _VHOST_USER_REMOVED,
        "--ac-adapter": "removed 2026-05-26",
        "--cfg": "removed 2025-11-13 with the config-file feature",
        "--dump-cfg": "removed 2025-11-13 with the config-file feature",
        "--lock-guest-memory-dontneed": "removed 2025-10-17",
        "--lock-guest-memory-punchhole": "removed 2025-10-17",
        "--plugin": "removed 2025-10-15 (plugin support deleted)",
        "--plugin-gid-map": "removed 2025-10-15",
        "--plugin-gid-map-file": "removed 2025-10-15",
        "--plugin-mount": "removed 2025-10-15",
        "--plugin-mount-file": "removed 2025-10-15",
        "--plugin-root": "removed 2025-10-15",
        "--pcie-ecam": "removed 2024-11-22; use --pci ecam=[start=...,size=...]",
        "--virt-cpufreq-socket": "removed 2024-07-24",
        "--strict-balloon": "removed 2024-07-11",
        "--balloon-wss-num-bins": "renamed --balloon-ws-num-bins (final removal 2023-08-01)",
        "--balloon-wss-reporting": "renamed --balloon-ws-reporting (final removal 2024-03-14)",
        "--vcpu-nice": "removed 2023-11-22 (reverted)",
        "--software-tpm": "removed 2023-10-02",
        "--vvu-proxy": "removed 2023-09-05",
        "--userspace-msr": "removed 2023-08-25",
        "--enable-pnp-data": "removed 2023-08-25",
        "--ac97": "removed 2023-08-11; use --virtio-snd",
        "--direct-edge-irq": "removed 2023-07-06",
        "--direct-level-irq": "removed 2023-07-06",
        "--direct-fixed-event": "removed 2023-07-25",
        "--direct-gpe": "removed 2023-07-25",
        "--direct-mmio": "removed 2023-07-25",
        "--direct-pmio": "removed 2023-07-25",
        "--pcie-root-port": "removed 2023-07-25",
        "--dmi": "removed 2023-05-17; use --smbios",
        "--privileged-vm": "removed 2023-05-05",
        "--geniezone-device": "removed 2023-04-04; use --hypervisor",
        "--cras-snd": "removed 2022-08-10; use --virtio-snd",
        "--jail-config": "removed 2022-07-05",
        "--no-legacy": "removed 2022-06-28",
    }
)

#: Short options of ``run`` (argh ``short = '...'``).
SHORT_ALIASES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "-b": "--block",
        "-c": "--cpus",
        "-d": "--disk",
        "-i": "--initrd",
        "-m": "--mem",
        "-p": "--params",
        "-r": "--root",
        "-s": "--socket",
    }
)

#: Whole-argument rewrites done by ``prepare_argh_args`` in src/main.rs before argh runs.  Only
#: the exact argument is rewritten: ``--host_ip=1.2.3.4`` is split to ``--host_ip`` and then
#: rejected by argh.
ARGV_REWRITES: Final[Mapping[str, str]] = MappingProxyType(
    {"--host_ip": "--host-ip", "-h": "--help"}
)

# ---------------------------------------------------------------------------------------------
# key=value options (serde_keyvalue).  Keys include serde aliases.  The first field's key may be
# omitted for the first value (``--block /x.img,ro``) unless the struct is parsed as a map
# because it uses ``#[serde(flatten)]`` (``--net``).  Unknown keys are rejected.

KEYS: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        "--block": frozenset(
            {
                "path",
                "ro",
                "root",
                "sparse",
                "direct",
                "o_direct",  # alias of direct
                "lock",
                "block-size",
                "block_size",  # alias of block-size
                "id",
                "multiple-workers",
                "async-executor",
                "async_executor",  # alias of async-executor
                "packed-queue",
                "bootindex",
                "pci-address",
                "dontcache",
            }
        ),
        "--gpu": frozenset(
            {
                "backend",
                "max-num-displays",
                "audio-device-mode",
                "displays",
                "width",  # deprecated, see DEPRECATED_KEYS
                "height",  # deprecated, see DEPRECATED_KEYS
                "egl",
                "gles",
                "glx",
                "surfaceless",
                "vulkan",
                "wsi",
                "udmabuf",
                "cache-path",
                "cache-size",
                "pci-address",
                "pci-bar-size",
                "context-types",
                "external-blob",
                "system-blob",
                "fixed-blob-mapping",
                "implicit-render-server",
                "renderer-features",
                "snapshot-scratch-path",
            }
        ),
        "--vhost-user": frozenset({"type", "socket", "max-queue-size", "pci-address"}),
        "--net": frozenset(
            {
                # mode keys (an untagged, flattened enum; exactly one mode must match):
                "tap-name",  # + optional mac
                "tap-fd",  # + optional mac
                "host-ip",  # + netmask + mac, all three required
                "netmask",
                "mac",
                # common keys:
                "vq-pairs",
                "vhost-net",
                "packed-queue",
                "pci-address",
                "mrg-rxbuf",
            }
        ),
        "--vfio": frozenset({"path", "iommu", "guest-address", "dt-symbol"}),
        "--vsock": frozenset({"cid", "device", "max-queue-sizes"}),
        "--cpus": frozenset({"num-cores", "clusters", "core-types", "boot-cpu", "freq-domains"}),
        "--mem": frozenset({"size"}),
        "--virtio-snd": frozenset(
            {
                "capture",
                "num_output_devices",
                "num_input_devices",
                "backend",
                "num_output_streams",
                "num_input_streams",
                "playback_path",
                "playback_size",
                "output_device_config",
                "input_device_config",
                "card_index",
                "unmap_guest_memory_on_fork",
            }
        ),
        "--pmem": frozenset({"path", "ro", "root", "vma-size", "swap-interval-ms"}),
    }
)

#: The key that may be left out for the first value.  ``--net`` is absent on purpose.  For
#: ``--virtio-snd`` the first field is the bool ``capture``, so the shorthand is of no use there.
FIRST_FIELD: Final[Mapping[str, str]] = MappingProxyType(
    {
        "--block": "path",
        "--gpu": "backend",
        "--vhost-user": "type",
        "--vfio": "path",
        "--vsock": "cid",
        "--cpus": "num-cores",
        "--mem": "size",
        "--virtio-snd": "capture",
        "--pmem": "path",
    }
)

#: Serde aliases among KEYS: alias -> primary key.
KEY_ALIASES: Final[Mapping[str, Mapping[str, str]]] = MappingProxyType(
    {
        "--block": MappingProxyType(
            {"o_direct": "direct", "block_size": "block-size", "async_executor": "async-executor"}
        ),
    }
)

#: Keys that still parse but warn.
DEPRECATED_KEYS: Final[Mapping[str, Mapping[str, str]]] = MappingProxyType(
    {
        "--gpu": MappingProxyType(
            {"width": "use displays=[[mode=windowed[W,H]]]", "height": "use displays=[[...]]"}
        ),
    }
)

#: Keys that exist only on other targets or with non-default features (so they are not in KEYS).
KEYS_ELSEWHERE: Final[Mapping[str, Mapping[str, str]]] = MappingProxyType(
    {
        "--block": MappingProxyType({"io-concurrency": "Windows", "io_concurrency": "Windows"}),
        "--cpus": MappingProxyType({"mte": "aarch64", "sve": "aarch64"}),
        "--virtio-snd": MappingProxyType(
            {"client_type": "feature audio_cras", "socket_type": "feature audio_cras"}
        ),
    }
)

#: Keys of bracketed sub-structs, e.g. ``--gpu displays=[[mode=windowed[1920,1080],dpi=[96,96]]]``
#: and ``--net tap-name=t0,vhost-net=[device=/dev/vhost-net]``.  ``horizontal-dpi`` and
#: ``vertical-dpi`` are gone although the help text still lists them.
NESTED_KEYS: Final[Mapping[tuple[str, str], frozenset[str]]] = MappingProxyType(
    {
        ("--gpu", "displays"): frozenset({"mode", "hidden", "refresh-rate", "dpi"}),
        ("--net", "vhost-net"): frozenset({"device"}),
    }
)

#: First (omittable) key of each nested struct.  The ``vhost-net`` entry is inferred from code
#: (a known field of a flattened struct is still deserialized with its type); crosvm has no test.
NESTED_FIRST_FIELD: Final[Mapping[tuple[str, str], str]] = MappingProxyType(
    {("--gpu", "displays"): "mode", ("--net", "vhost-net"): "device"}
)

#: Accepted values of enum-valued keys (serde renames and aliases).  On Linux the display
#: ``mode`` has only ``windowed[W,H]``; ``borderless_full_screen`` is Windows-only.
KEY_VALUES: Final[Mapping[tuple[str, str], frozenset[str]]] = MappingProxyType(
    {
        ("--vhost-user", "type"): frozenset(
            {
                "net",
                "block",
                "console",
                "rng",
                "balloon",
                "scsi",
                "9p",
                "gpu",
                "input",
                "vsock",
                "iommu",
                "sound",
                "fs",
                "pmem",
                "mac80211-hwsim",
                "video-encoder",
                "video-decoder",
                "scmi",
                "wl",
                "tpm",
                "pvclock",
                "media",
            }
        ),
        ("--gpu", "backend"): frozenset({"2d", "2D", "virglrenderer", "3d", "3D", "gfxstream"}),
        ("--gpu", "wsi"): frozenset({"vulkan", "vk"}),
        ("--gpu", "audio-device-mode"): frozenset({"per-surface", "one-global"}),
        ("--vfio", "iommu"): frozenset({"off", "viommu", "coiommu", "pkvm-iommu"}),
    }
)


@functools.lru_cache(maxsize=4096)  # asked for every word of every VM's command line
def canonical_flag(arg: str) -> str | None:
    """Return the long flag name crosvm's argh would see for one argv element.

    Mirrors ``prepare_argh_args`` in crosvm's src/main.rs: the exact arguments in
    :data:`ARGV_REWRITES` are replaced; any other argument longer than one character that starts
    with ``-`` is cut at its first ``=``.  Short aliases are then mapped to their long names.
    Returns ``None`` for arguments that are not flags (values, ``-``, the kernel path).  The
    result may be a name crosvm does not know; use :func:`classify` for that.
    """
    if arg in ARGV_REWRITES:
        return ARGV_REWRITES[arg]
    if len(arg) <= 1 or not arg.startswith("-"):
        return None
    key = split_assignment(arg)[0]
    return SHORT_ALIASES.get(key, key)


def classify(flag: str, scope: Scope = "run") -> FlagKind:
    """Tell how crosvm parses ``flag`` (long, short, or ``--x=y`` form) in ``scope``.

    ``"switch"`` takes no value, ``"single"`` takes one value and must not repeat,
    ``"repeatable"`` takes one value per occurrence.  Anything else (removed flags, flags of other
    platforms, non-flags) is ``"unknown"``.
    """
    name = canonical_flag(flag)
    if name is None:
        return "unknown"
    if scope == "global":
        if name in GLOBAL_SWITCHES:
            return "switch"
        if name in GLOBAL_SINGLE:
            return "single"
        return "unknown"
    if name in RUN_SWITCHES:
        return "switch"
    if name in RUN_SINGLE:
        return "single"
    if name in RUN_REPEATABLE:
        return "repeatable"
    return "unknown"
