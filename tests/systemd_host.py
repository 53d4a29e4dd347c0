"""A real systemd host for the tests: Debian 13 booted as PID 1 in systemd-nspawn, with what a
real NixOS evaluation of vmsilo's host module installs, put where Debian's systemd, polkit,
tmpfiles and WirePlumber read it.

- The rootfs (debootstrap, ~400 MiB) is built once and cached; its users alice (1000, the VM
  user, lingering: her systemd manager, PipeWire and WirePlumber run from boot) and bob (1001),
  and the kvm group NixOS always has, are part of it. Every boot starts from the same image
  (``--volatile=overlay``).
- What the module adds (units, user units, tmpfiles rules, the polkit rule, the WirePlumber
  component) is read from the evaluated system (tests/nix/real/session-host.nix) and installed
  as NixOS renders it, unit texts unchanged: the store paths in them are made to exist in the
  container's /nix/store instead. The package tree is generated there at the very store path
  NixOS computed, from the same options, with local programs (``LocalStore``); the programs
  NixOS puts on a unit's PATH (coreutils, systemd, ...) are Debian's.
- Driving it: ``nsenter`` into the container's namespaces; long work goes through its systemd.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

SUITE = "trixie"  # systemd 257, PipeWire 1.4 with pw-container, WirePlumber 0.5
PACKAGES = (
    "systemd,systemd-sysv,dbus,polkitd,pipewire,pipewire-bin,wireplumber,dbus-user-session,"
    "libpam-systemd,procps,qemu-utils,iproute2,python3,libcap-ng0,libseccomp2"
)
VM_USER, VM_UID = "alice", 1000
OTHER_USER = "bob"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vmsilo-tests"
#: Debian's programs for the nixpkgs packages NixOS puts on every unit's PATH.
DEBIAN_PROGRAMS = ("coreutils", "findutils", "gnugrep", "gnused", "systemd")
#: Store paths of a unit that need not exist: glibc ignores a missing locale archive, and
#: without TZDIR times are UTC.
ABSENT_OK = ("glibc-locales", "tzdata")
#: Units the module adds that this host does not take from the evaluation, and why.
NOT_INSTALLED = {
    "polkit.service": "Debian's polkitd runs instead (security.polkit.enable)",
    "polkit-agent-helper.socket": "Debian's polkitd runs instead",
    "polkit-agent-helper@.service": "Debian's polkitd runs instead",
    "vmsilo-balloond.service": "the memory daemon is not part of a VM's start (test_daemons)",
    "vmsilo-tray.service": "the tray is not part of a VM's start (test_tray_*)",
}
_STORE_PATH = re.compile(r"/nix/store/([0-9a-z]{32})-([^/\s\"']+)")
_NIX32 = "0123456789abcdfghijklmnpqrsvwxyz"


def why_not() -> str | None:
    """Why no container can run here, or None."""
    if os.geteuid() != 0:
        return "a systemd-nspawn container needs root"
    for tool in ("debootstrap", "systemd-nspawn", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (Debian: debootstrap, systemd-container)"
    if not Path("/sys/fs/cgroup").is_dir():
        return "no cgroup file system to boot systemd on"
    return None


def _mirror() -> str:
    for sources in Path("/etc/apt/sources.list.d").glob("*.sources"):
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    return "http://deb.debian.org/debian"


def rootfs() -> Path:
    """The cached Debian rootfs with the test users; built when missing (about a minute)."""
    key = hashlib.sha256(f"{SUITE} {PACKAGES} {VM_USER} {OTHER_USER} v2".encode()).hexdigest()
    root = CACHE / f"rootfs-{SUITE}-{key[:12]}"
    if (root / ".ready").exists():
        return root
    CACHE.mkdir(parents=True, exist_ok=True)
    work = Path(f"{root}.partial")
    shutil.rmtree(work, ignore_errors=True)
    r = subprocess.run(
        ["debootstrap", "--variant=minbase", f"--include={PACKAGES}", SUITE, str(work), _mirror()],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert r.returncode == 0, f"debootstrap failed:\n{r.stdout[-3000:]}{r.stderr[-3000:]}"
    # NixOS always has the kvm group (the VM units take it for /dev/kvm); minbase Debian has
    # no udev to make it
    subprocess.run(["chroot", str(work), "groupadd", "--system", "kvm"], check=True)
    for name, uid in ((VM_USER, VM_UID), (OTHER_USER, VM_UID + 1)):
        subprocess.run(
            ["chroot", str(work), "useradd", "-m", "-u", str(uid), "-g", "users", name],
            check=True,
            capture_output=True,
        )
    linger = work / "var/lib/systemd/linger"
    linger.mkdir(parents=True, exist_ok=True)
    (linger / VM_USER).touch()
    (work / ".ready").touch()
    shutil.rmtree(root, ignore_errors=True)
    work.rename(root)
    return root


def fake_hash(name: str) -> str:
    """A store hash for a path this host makes up (not Nix's, but of Nix's form)."""
    digest = hashlib.sha256(name.encode()).digest()
    return "".join(_NIX32[b % 32] for b in digest[:32])


class LocalStore:
    """The container's /nix/store: a host directory bound read-only at /nix/store."""

    def __init__(self, top: Path) -> None:
        self.dir = top / "store"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o755)

    def path(self, name: str) -> str:
        return f"/nix/store/{fake_hash(name)}-{name}"

    def host(self, store_path: str) -> Path:
        return self.dir / store_path.removeprefix("/nix/store/")

    def debian(self, store_path: str) -> str:
        """A package whose bin/ and sbin/ are Debian's."""
        out = self.host(store_path)
        out.mkdir(exist_ok=True)
        for sub in ("bin", "sbin"):
            if not (out / sub).is_symlink():
                (out / sub).symlink_to(f"/usr/{sub}")
        return store_path

    def program(self, name: str, program: str, source: Path) -> str:
        """A package ``name`` whose bin/``program`` is a copy of ``source``."""
        path = self.path(name)
        bin_dir = self.host(path) / "bin"
        bin_dir.mkdir(parents=True, exist_ok=True)
        for d in (bin_dir.parent, bin_dir):
            d.chmod(0o755)
        shutil.copy(source, bin_dir / program)
        (bin_dir / program).chmod(0o755)
        return path

    def file(self, name: str) -> str:
        path = self.path(name)
        self.host(path).write_text(name)
        return path

    def map_units(self, texts: Iterator[str], tree: str) -> None:
        """Make every store path the units name exist (Debian's programs for NixOS's PATH),
        but for those that may stay absent (ABSENT_OK); the tree is left to the caller."""
        for text in texts:
            for match in _STORE_PATH.finditer(text):
                path = f"/nix/store/{match[1]}-{match[2]}"
                name = match[2]
                if path == tree:
                    continue
                if any(name.startswith(f"{p}-") for p in DEBIAN_PROGRAMS):
                    self.debian(path)
                elif not any(name.startswith(f"{p}-") for p in ABSENT_OK):
                    raise AssertionError(f"a unit names {path}, which this host cannot map")


def install(host: Mapping[str, Any], top: Path) -> dict[str, Path]:
    """Write what the module adds into directories to bind into the container; returns the
    bind map (host directory or file -> where the container reads it)."""
    units, user_units = top / "units", top / "user-units"
    binds: dict[str, Path] = {}
    for where, rendered, target in (
        (units, host["units"], "/usr/local/lib/systemd/system"),
        (user_units, host["userUnits"], "/usr/local/lib/systemd/user"),
    ):
        where.mkdir(mode=0o755)
        for name, unit in rendered.items():
            if name in NOT_INSTALLED:
                continue
            assert name.startswith("vmsilo-"), f"the module adds {name}: install or explain it"
            (where / name).write_text(unit["text"])
            # how NixOS installs wantedBy and requiredBy: links in the target's directories
            for key, suffix in (("wantedBy", "wants"), ("requiredBy", "requires")):
                for target_unit in unit[key]:
                    links = where / f"{target_unit}.{suffix}"
                    links.mkdir(exist_ok=True)
                    (links / name).symlink_to(f"../{name}")
        binds[target] = where
    tmpfiles = top / "tmpfiles.d"
    tmpfiles.mkdir(mode=0o755)
    (tmpfiles / "vmsilo.conf").write_text("\n".join(host["tmpfiles"]) + "\n")
    binds["/usr/local/lib/tmpfiles.d"] = tmpfiles
    rules = top / "60-vmsilo.rules"
    rules.write_text(host["polkit"])
    binds["/etc/polkit-1/rules.d/60-vmsilo.rules"] = rules
    conf = top / "wireplumber.conf.d"
    conf.mkdir(mode=0o755)
    for name, value in host["wireplumber"]["extraConfig"].items():
        (conf / f"{name}.conf").write_text(json.dumps(value, indent=2))
    binds["/etc/wireplumber/wireplumber.conf.d"] = conf
    scripts = top / "wireplumber-scripts"
    for name, text in host["wireplumber"]["extraScripts"].items():
        (scripts / name).parent.mkdir(parents=True, exist_ok=True)
        (scripts / name).write_text(text)
    for d in [scripts, *scripts.rglob("*")]:
        if d.is_dir():
            d.chmod(0o755)
    binds["/usr/local/share/wireplumber/scripts"] = scripts
    return binds


class Container:
    """One boot of the rootfs; ``run`` executes in it (as root, or as a user)."""

    def __init__(self, root: Path, binds: Mapping[str, Path], log: Path) -> None:
        self.log = log
        words = [f"--bind-ro={src}:{dst}" for dst, src in binds.items() if dst != "/srv/record"]
        if "/srv/record" in binds:
            words.append(f"--bind={binds['/srv/record']}:/srv/record")
        self.nspawn = subprocess.Popen(
            [
                "systemd-nspawn",
                "-D",
                str(root),
                "-M",
                "vmsilo-test",
                "-b",
                "--register=no",
                "--keep-unit",
                "--volatile=overlay",
                "--private-network",
                "--console=read-only",
                "--bind=/dev/net/tun",
                *words,
            ],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        self.pid = self._init_pid()
        deadline = time.monotonic() + 120
        state = ""
        # "offline" until the container's systemd answers on its bus
        while state not in ("running", "degraded") and time.monotonic() < deadline:
            time.sleep(0.1)
            state = self.run("systemctl", "is-system-running", "--wait").stdout.strip()
        assert state in ("running", "degraded"), (state, self.log.read_text()[-3000:])

    def _init_pid(self) -> int:
        """The container's systemd: the child of nspawn that runs systemd (nspawn forks
        helpers of its own first, in namespaces the container does not end up with)."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.nspawn.poll() is None, self.log.read_text()[-3000:]
            for task in Path(f"/proc/{self.nspawn.pid}/task").glob("*/children"):
                for pid in task.read_text().split():
                    try:
                        if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                            return int(pid)
                    except OSError:
                        continue  # gone while we looked
            time.sleep(0.05)
        raise AssertionError("the container's systemd did not start")

    def run(
        self, *argv: str, user: str | None = None, timeout: float = 60, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """``argv`` as root, or as ``user`` with no more of a session than runuser gives (no
        XDG_RUNTIME_DIR: a vm-* command typed on a text console, or run by a script)."""
        as_user = ["runuser", "-u", user, "--"] if user else []
        r = subprocess.run(
            ["nsenter", "-t", str(self.pid), "-a", *as_user, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check:
            assert r.returncode == 0, (argv, r.stdout, r.stderr)
        return r

    def in_session(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``argv`` as the VM user with the environment of the user's session."""
        env = ["env", f"XDG_RUNTIME_DIR=/run/user/{VM_UID}"]
        return self.run(*env, *argv, user=VM_USER, timeout=timeout)

    def user_manager(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``systemctl --user ...`` (or another systemd tool) in the VM user's manager."""
        return self.run(argv[0], "--user", "-M", f"{VM_USER}@", *argv[1:], timeout=timeout)

    def show(self, unit: str, *props: str, user: bool = False) -> dict[str, str]:
        argv = ["systemctl", "show", unit, *(f"--property={p}" for p in props)]
        r = self.user_manager(*argv) if user else self.run(*argv)
        return dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)

    def wait_for(self, unit: str, states: Sequence[str], timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while True:
            state = self.show(unit, "ActiveState")["ActiveState"]
            if state in states or time.monotonic() > deadline:
                return state
            time.sleep(0.1)

    def journal(self, *argv: str) -> str:
        return self.run("journalctl", "--no-pager", "-o", "cat", *argv).stdout

    def root_path(self, path: str) -> Path:
        return Path(f"/proc/{self.pid}/root{path}")

    def poweroff(self) -> None:
        self.run("systemctl", "poweroff", "--no-block")
        try:
            self.nspawn.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.nspawn.kill()
            self.nspawn.wait()
