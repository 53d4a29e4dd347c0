"""The VM identity on the kernel command line, and what a guest makes of it at boot."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vmsilo_nix.cli import app as cli
from vmsilo_nix.config.artifacts import load_artifacts
from vmsilo_nix.config.values import check_unit_name
from vmsilo_nix.errors import VmsiloError
from vmsilo_nix.guest.setup import Mount, apply, plan_setup
from vmsilo_nix.pipeline import check
from vmsilo_nix.plan.argv import flatten
from vmsilo_nix.plan.host import plan
from vmsilo_nix.plan.identity import IdentityError, decode_cmdline, decode_programs, param

from .conftest import EXAMPLES, ROOT

DESKTOP = check(json.loads((EXAMPLES / "desktop.json").read_text()))


def cmdline_of(vm: str) -> str:
    """The kernel command line crosvm builds: its own, then every -p value, in order."""
    argv = flatten(plan(DESKTOP).vms[vm].crosvm)
    params = [argv[i + 1] for i, w in enumerate(argv) if w == "-p"]
    return " ".join(["panic=-1", "console=ttyS0", *params])


@pytest.mark.parametrize("vm", ["banking", "work", "vault", "net"])
def test_the_guest_writes_exactly_the_network_files_the_host_planned(vm: str) -> None:
    setup = plan_setup(decode_cmdline(cmdline_of(vm)))
    assert setup.hostname == vm
    assert setup.network_files == dict(plan(DESKTOP).vms[vm].network.guest_files)


def test_mounts_follow_the_shares() -> None:
    assert plan_setup(decode_cmdline(cmdline_of("work"))).mounts == (
        Mount("home", "/home/user", False),
        Mount("projects", "/mnt/projects", False),
        Mount("reference", "/mnt/reference", True),
    )
    assert plan_setup(decode_cmdline(cmdline_of("net"))).mounts == ()
    assert Mount("r", "/mnt/r", True).argv() == [
        "mount",
        "-t",
        "virtiofs",
        "-o",
        "ro",
        "r",
        "/mnt/r",
    ]


def test_the_last_identity_on_the_command_line_wins() -> None:
    """As for the kernel's own parameters; a bare vmsilo.config sets nothing."""
    first, last = DESKTOP.nixos_vms[0], DESKTOP.nixos_vms[1]
    cmdline = f"{param(first, 0)} quiet vmsilo.config {param(last, 1)}"
    assert plan_setup(decode_cmdline(cmdline)).hostname == last.name


@pytest.mark.parametrize(
    ("cmdline", "message"),
    [
        ("quiet", "no vmsilo.config= on the kernel command line"),
        ("vmsilo.config=!!!", "is damaged"),
        ("vmsilo.config=WzFd", "is not an object"),  # [1]
    ],
)
def test_bad_identity(cmdline: str, message: str) -> None:
    with pytest.raises(IdentityError, match=message):
        decode_cmdline(cmdline)


def test_identity_of_a_vm_that_is_not_valid_is_refused() -> None:
    bad = "vmsilo.config=" + param(DESKTOP.nixos_vms[0], 0).split("=", 1)[1]
    assert plan_setup(decode_cmdline(bad)).hostname == "banking"
    broken = base64.urlsafe_b64encode(b'{"name": 5}').decode()
    with pytest.raises(
        IdentityError, match=r"identity is not valid: .*nixosVms\[0\]\.name: expected string"
    ):
        plan_setup(decode_cmdline(f"vmsilo.config={broken}"))


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare for a private hostname",
)
def test_guest_setup_applies_in_a_private_namespace(tmp_path: Path) -> None:
    (tmp_path / "cmdline").write_text(cmdline_of("net") + "\n")
    stubs = tmp_path / "bin"
    stubs.mkdir()
    netdir = tmp_path / "network"
    code = (
        "import sys, socket; from vmsilo_nix.cli import main; "
        f"rc = main(['guest-setup', '--cmdline', {str(tmp_path / 'cmdline')!r}, "
        f"'--network-dir', {str(netdir)!r}]); print(socket.gethostname()); sys.exit(rc)"
    )
    result = subprocess.run(
        ["unshare", "--uts", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "net"
    assert {p.name: p.read_text() for p in netdir.iterdir()} == dict(
        plan(DESKTOP).vms["net"].network.guest_files
    )


def test_dry_run(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "cmdline").write_text(cmdline_of("work"))
    assert cli.main(["guest-setup", "--dry-run", "--cmdline", str(tmp_path / "cmdline")]) == 0
    done = json.loads(capsys.readouterr().out)
    assert done["hostname"] == "work"
    assert done["mounts"][0] == ["mount", "-t", "virtiofs", "home", "/home/user"]
    assert cli.main(["guest-setup", "--cmdline", str(tmp_path / "none")]) == 3


# --- a damaged or hostile identity ----------------------------------------------------------


def identity_cmdline(data: object) -> str:
    text = json.dumps(data, separators=(",", ":")).encode()
    return "quiet vmsilo.config=" + base64.urlsafe_b64encode(text).decode().rstrip("=")


GOOD = {
    "name": "work",
    "index": 1,
    "home": True,
    "shares": {"docs": True},
    "network": {
        "nameservers": ["10.0.0.254"],
        "interfaces": {"eth0": {"macAddress": "02:00:00:00:00:01", "addresses": ["10.0.0.2/24"]}},
    },
}


def with_(change: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(json.dumps(GOOD))
    data.update(change)
    return data


@pytest.mark.parametrize(
    ("identity", "message"),
    [
        # a newline in an interface name or a DNS value would add lines to networkd's files
        (
            with_({"network": {"interfaces": {"eth0\n[Network]\nDNS=1.1.1.1": {}}}}),
            'nixosVms[1] (work).network.interfaces."eth0\\n[Network]\\nDNS=1.1.1.1": the '
            "attribute name contains the control character U+000A",
        ),
        (
            with_({"network": {"nameservers": ["1.1.1.1\nDomains=~."]}}),
            "nixosVms[1] (work).network.nameservers[0]: the string contains the control "
            "character U+000A",
        ),
        (
            with_({"network": {"interfaces": {"e;x": {}}}}),
            "nixosVms[1] (work).network.interfaces.\"e;x\": invalid interface name 'e;x'",
        ),
        # a tag starting with '-' would reach mount as an option
        (
            with_({"shares": {"-oexec": False}}),
            'nixosVms[1] (work).sharedDirectories."-oexec": tag must be 1 to 36 bytes',
        ),
        (
            with_({"shares": {"../../etc": False}}),
            'nixosVms[1] (work).sharedDirectories."../../etc": tag must be',
        ),
        (with_({"shares": {"home": False}}), "tag 'home' is taken by the sharedHome share"),
        (with_({"name": "../x"}), "nixosVms[1] (../x).name: invalid name '../x'"),
        (with_({"name": None}), "nixosVms[1].name: expected string"),
        (with_({"index": 10**12}), "index must be a whole number from 0 to 65535"),
        (with_({"index": True}), "index must be a whole number"),
        (with_({"home": "yes"}), "home must be true or false"),
        (with_({"shares": ["docs"]}), "shares must be an object"),
        (with_({"shares": {"docs": "ro"}}), "docs.readonly: expected boolean"),
        (with_({"user": "root"}), "unknown fields of the identity: 'user'"),
        (
            with_({"network": {"interfaces": {"eth0": {"tap": {"name": "x"}}}}}),
            "unknown fields of the network interface 'eth0': 'tap'",
        ),
        (with_({"network": []}), "nixosVms[1] (work).network: expected"),
    ],
)
def test_a_bad_identity_is_refused_with_the_host_rules(identity: object, message: str) -> None:
    with pytest.raises(IdentityError) as caught:
        plan_setup(decode_cmdline(identity_cmdline(identity)))
    assert message in str(caught.value)


def test_deep_nesting_is_refused_without_a_traceback() -> None:
    deep = "[" * 100_000 + "]" * 100_000
    text = base64.urlsafe_b64encode(deep.encode()).decode()
    with pytest.raises(IdentityError, match="nested too deeply"):
        decode_cmdline(f"vmsilo.config={text}")


def test_a_bad_identity_leaves_networking_off(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "cmdline").write_text(
        identity_cmdline(with_({"network": {"nameservers": ["1.1.1.1\nDNS=6.6.6.6"]}}))
    )
    netdir = tmp_path / "network"
    argv = ["guest-setup", "--cmdline", str(tmp_path / "cmdline"), "--network-dir", str(netdir)]
    assert cli.main(argv) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one journal line
    assert err.startswith("error: the VM identity is not valid: programs.vmsilo.nixosVms[1]")
    assert err.rstrip().endswith("nothing is set up: networking stays off")
    assert not netdir.exists()  # no networkd file: networkd configures nothing


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
NAMES = st.sampled_from(["eth0", "wan", "e\n", "-x", "..", "a;b", "", "x" * 16, "home", "d"])
INTERFACES = st.dictionaries(
    NAMES,
    st.fixed_dictionaries(
        {},
        optional={
            "macAddress": st.sampled_from(["02:00:00:00:00:01", "01:00:00:00:00:00", "x"])
            | JSON_VALUES,
            "dhcp": st.booleans() | JSON_VALUES,
            "addresses": st.lists(st.sampled_from(["10.0.0.2/24", "10.0.0.2\n", "::1/64"])),
            "routes": st.dictionaries(
                st.sampled_from(["0.0.0.0/0", "10.0.0.1/8", "x"]),
                st.fixed_dictionaries({"via": st.sampled_from(["10.0.0.1", "fd00::1", "1\n"])}),
            ),
        },
    )
    | JSON_VALUES,
    max_size=3,
)
IDENTITIES = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["work", "../x", "-x", "a" * 33, "w\n"]) | JSON_VALUES,
        "index": st.integers(-5, 70_000) | JSON_VALUES,
        "home": st.booleans() | JSON_VALUES,
        "shares": st.dictionaries(NAMES, st.booleans() | JSON_VALUES, max_size=3) | JSON_VALUES,
        "network": st.fixed_dictionaries(
            {},
            optional={
                "nameservers": st.lists(st.sampled_from(["10.0.0.1", "1.1.1.1\nx", "x"]))
                | JSON_VALUES,
                "interfaces": INTERFACES,
            },
        )
        | JSON_VALUES,
        "extra": JSON_VALUES,
    },
)


@settings(max_examples=300, deadline=None)
@given(IDENTITIES)
def test_any_identity_is_applied_safely_or_refused(identity: dict[str, Any]) -> None:
    """No identity raises anything but IdentityError; what is accepted writes only values the
    host's check accepts: one directive per line, mount tags that are not options."""
    try:
        setup = plan_setup(decode_cmdline(identity_cmdline(identity)))
    except IdentityError:
        return
    check_unit_name(setup.hostname)
    for name, text in setup.network_files.items():
        assert "/" not in name and name.startswith("10-vmsilo-")
        for line in text.splitlines():
            assert line == "" or line.startswith(("#", "[")) or "=" in line, line
            assert line.isprintable()
    for m in setup.mounts:
        assert not m.tag.startswith("-") and "/" not in m.tag and m.tag not in (".", "..")
        assert m.target in ("/home/user", f"/mnt/{m.tag}")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_command_line_bytes_are_refused_or_applied(data: bytes) -> None:
    text = base64.urlsafe_b64encode(data).decode().rstrip("=")
    with contextlib.suppress(IdentityError):
        plan_setup(decode_cmdline(f"vmsilo.config={text}"))


PROFILE = "/nix/store/99999999999999999999999999999999-vmsilo-programs-0123456789ab"


def cmdline_with_programs(vm: str) -> str:
    """The command line of a VM whose artifacts include a program image."""
    artifacts = load_artifacts(
        {"vms": {vm: {"programImage": PROFILE + ".img", "programs": PROFILE}}}
    )
    argv = flatten(plan(DESKTOP, artifacts).vms[vm].crosvm)
    return " ".join(argv[i + 1] for i, w in enumerate(argv) if w == "-p")


def test_the_guest_reads_the_profile_the_host_planned() -> None:
    assert decode_programs(cmdline_with_programs("work")) == PROFILE
    assert decode_programs(cmdline_of("work")) is None


@pytest.mark.parametrize(
    ("cmdline", "message"),
    [
        ("vmsilo.programs=/etc/passwd", "is not a store path"),
        ("vmsilo.programs=/nix/store/short-x", "is not a store path"),
        (f"vmsilo.programs={PROFILE}/..", "is not a store path"),
        (f"vmsilo.programs={PROFILE}/bin", "is not a store path"),
        (f"vmsilo.programs={PROFILE} vmsilo.programs={PROFILE}", "twice"),
    ],
)
def test_bad_programs_parameter(cmdline: str, message: str) -> None:
    with pytest.raises(IdentityError, match=message):
        decode_programs(cmdline)


@given(st.text(max_size=300))
def test_any_programs_parameter_is_a_store_path_or_refused(value: str) -> None:
    try:
        found = decode_programs(f"quiet vmsilo.programs={value}")
    except IdentityError:
        return
    assert found is not None and found.startswith("/nix/store/") and "/" not in found[11:]


def test_guest_setup_links_the_profile(tmp_path: Path) -> None:
    store = tmp_path / "store"
    (store / PROFILE.rsplit("/", 1)[1]).mkdir(parents=True)
    link = tmp_path / "run/vmsilo/programs"
    setup = plan_setup(decode_cmdline(cmdline_of("net")), PROFILE)
    with mock.patch("socket.sethostname") as hostname:
        apply(setup, tmp_path / "network", link, store)
        apply(setup, tmp_path / "network", link, store)  # again: replaced, not refused
    hostname.assert_called_with("net")
    assert os.readlink(link) == PROFILE
    assert sorted(p.name for p in link.parent.iterdir()) == ["programs"]


def test_guest_setup_refuses_a_profile_the_image_did_not_bring(tmp_path: Path) -> None:
    setup = plan_setup(decode_cmdline(cmdline_of("net")), PROFILE)
    with (
        mock.patch("socket.sethostname"),
        pytest.raises(VmsiloError, match="not in the store: the VM's program image"),
    ):
        apply(setup, tmp_path / "network", tmp_path / "programs", tmp_path / "store")
    assert not (tmp_path / "programs").exists()
    # the network came up all the same
    assert sorted(p.name for p in (tmp_path / "network").iterdir()) == sorted(
        plan(DESKTOP).vms["net"].network.guest_files
    )


def test_dry_run_names_the_profile(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "cmdline").write_text(cmdline_with_programs("work"))
    assert cli.main(["guest-setup", "--dry-run", "--cmdline", str(tmp_path / "cmdline")]) == 0
    assert json.loads(capsys.readouterr().out)["programs"] == PROFILE
