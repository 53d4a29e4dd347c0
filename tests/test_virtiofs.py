"""virtiofsd command lines per share, and the crosvm flags that attach them."""

from __future__ import annotations

from typing import Any

from vmsilo_nix import structure
from vmsilo_nix.config.artifacts import Artifacts
from vmsilo_nix.plan.argv import flatten
from vmsilo_nix.plan.layout import Layout
from vmsilo_nix.plan.virtiofs import VirtiofsPlan, crosvm_args, plan_virtiofs

from .conftest import minimal

LAYOUT = Layout(run_dir="/run/vmsilo", state_dir="/var/lib/vmsilo")
STORE = "/nix/store/aaaa-virtiofsd"
ARTIFACTS = Artifacts(packages={"virtiofsd": STORE})

# What every share with default settings gets after --shared-dir and --tag.
DEFAULT_TAIL = [
    "--thread-pool-size=0",
    "--xattr",
    "--posix-acl",
    "--inode-file-handles=prefer",
    "--cache=auto",
    "--log-level=info",
    "--killpriv-v2",
]


def plans(artifacts: Artifacts = ARTIFACTS, **vm: Any) -> tuple[VirtiofsPlan, ...]:
    return plan_virtiofs(structure(minimal(**vm)), 0, LAYOUT, artifacts)


def test_default_vm_shares_its_home_from_shared_vm_name() -> None:
    (home,) = plans()
    assert (home.tag, home.shared_dir, home.readonly) == ("home", "/shared/a", False)
    assert home.socket == "/run/vmsilo/a/virtiofs-home.sock"
    assert home.sources == (("nixosVms", 0, "sharedHome"),)
    assert flatten(home.argv) == [
        f"{STORE}/bin/virtiofsd",
        "--socket-path=/run/vmsilo/a/virtiofs-home.sock",
        "--shared-dir=/shared/a",
        "--tag=home",
        *DEFAULT_TAIL,
    ]


def test_shared_home_as_a_path_and_false() -> None:
    (home,) = plans(sharedHome="/data/vm homes/a")
    assert flatten(home.argv)[2] == "--shared-dir=/data/vm homes/a"
    assert plans(sharedHome=False) == ()


def test_home_settings_are_defaults_with_notes_and_its_path_comes_from_shared_home() -> None:
    (home,) = plans(sharedHome="/h")
    by_flag = {a.words[0].split("=")[0]: a for a in home.argv}
    assert by_flag["--shared-dir"].sources == (("nixosVms", 0, "sharedHome"),)
    assert by_flag["--tag"].sources == (("nixosVms", 0, "sharedHome"),)
    assert by_flag["--cache"].sources == ()
    assert "sharedHome uses the default" in by_flag["--cache"].explain()
    assert home.argv[0].explain() == "the virtiofsd of share home"


def test_directory_share_with_defaults() -> None:
    home, docs = plans(sharedDirectories={"docs": {"path": "/home/alice/Documents"}})
    assert home.tag == "home"
    assert (docs.tag, docs.shared_dir, docs.readonly) == ("docs", "/home/alice/Documents", False)
    assert docs.sources == (("nixosVms", 0, "sharedDirectories", "docs"),)
    assert flatten(docs.argv) == [
        f"{STORE}/bin/virtiofsd",
        "--socket-path=/run/vmsilo/a/virtiofs-docs.sock",
        "--shared-dir=/home/alice/Documents",
        "--tag=docs",
        *DEFAULT_TAIL,
    ]


# Every setting of a share changed from its default (tests/test_virtiofsd_real.py runs it too).
EVERY_SETTING: dict[str, Any] = {
    "path": "/srv/share",
    "threadPoolSize": 4,
    "xattr": False,
    "posixAcl": False,
    "readonly": True,
    "inodeFileHandles": "mandatory",
    "cache": "never",
    "allowMmap": True,
    "enableReaddirplus": False,
    "writeback": True,
    "allowDirectIo": True,
    "logLevel": "debug",
    "killprivV2": False,
    "uidMap": ":1000:1000:1:",
    "gidMap": ":100:100:1:",
    "translateUid": "map:1000:2000:1",
    "translateGid": "squash-guest:0:100:65536",
    "preserveNoatime": True,
}


def test_every_setting_changed_from_its_default() -> None:
    share = EVERY_SETTING
    (s,) = plans(sharedHome=False, sharedDirectories={"s": share})
    assert s.readonly is True
    assert flatten(s.argv) == [
        f"{STORE}/bin/virtiofsd",
        "--socket-path=/run/vmsilo/a/virtiofs-s.sock",
        "--shared-dir=/srv/share",
        "--tag=s",
        "--thread-pool-size=4",
        "--inode-file-handles=mandatory",
        "--cache=never",
        "--allow-mmap",
        "--no-readdirplus",
        "--writeback",
        "--allow-direct-io",
        "--log-level=debug",
        "--no-killpriv-v2",
        "--uid-map=:1000:1000:1:",
        "--gid-map=:100:100:1:",
        "--translate-uid=map:1000:2000:1",
        "--translate-gid=squash-guest:0:100:65536",
        "--preserve-noatime",
        "--readonly",
    ]
    base = ("nixosVms", 0, "sharedDirectories", "s")
    assert [a.sources for a in s.argv[2:]] == [
        ((*base, "path"),),
        (base,),
        *[
            ((*base, key),)
            for key in (
                "threadPoolSize",
                "inodeFileHandles",
                "cache",
                "allowMmap",
                "enableReaddirplus",
                "writeback",
                "allowDirectIo",
                "logLevel",
                "killprivV2",
                "uidMap",
                "gidMap",
                "translateUid",
                "translateGid",
                "preserveNoatime",
                "readonly",
            )
        ],
    ]


def test_xattr_alone_and_posix_acl_alone() -> None:
    (x,) = plans(sharedHome=False, sharedDirectories={"x": {"path": "/x", "posixAcl": False}})
    assert "--xattr" in flatten(x.argv)
    assert "--posix-acl" not in flatten(x.argv)
    (p,) = plans(sharedHome=False, sharedDirectories={"p": {"path": "/p", "xattr": False}})
    assert "--xattr" not in flatten(p.argv)
    assert "--posix-acl" in flatten(p.argv)


def test_every_flag_is_a_single_word_in_equals_form() -> None:
    (s,) = plans(
        sharedHome=False,
        sharedDirectories={"s": {"path": "/s", "uidMap": ":0:1000:1:", "cache": "metadata"}},
    )
    for a in s.argv[1:]:
        assert len(a.words) == 1
        assert a.words[0].startswith("--")


def test_shares_come_in_tag_order_after_home() -> None:
    got = plans(
        sharedDirectories={t: {"path": f"/{t}"} for t in ("zeta", "Alpha", "beta", "alpha")}
    )
    assert [p.tag for p in got] == ["home", "Alpha", "alpha", "beta", "zeta"]


def test_awkward_paths_pass_through_exactly() -> None:
    weird = "/data/my docs, \"quoted\" 'too' $HOME `x`"
    (home, w) = plans(sharedHome=weird + "/home", sharedDirectories={"w": {"path": weird}})
    assert flatten(home.argv)[2] == f"--shared-dir={weird}/home"
    assert flatten(w.argv)[2] == f"--shared-dir={weird}"
    run = Layout(run_dir="/run/odd, dir $x", state_dir="/s")
    (h,) = plan_virtiofs(structure(minimal()), 0, run, ARTIFACTS)
    assert h.socket == "/run/odd, dir $x/a/virtiofs-home.sock"
    assert flatten(h.argv)[1] == "--socket-path=/run/odd, dir $x/a/virtiofs-home.sock"
    # crosvm's key=value parser needs the comma quoted inside the value.
    assert flatten(crosvm_args([h])) == [
        "--vhost-user",
        'type=fs,socket="/run/odd, dir $x/a/virtiofs-home.sock"',
    ]


def test_program_from_path_when_nix_gave_no_package() -> None:
    (home,) = plans(artifacts=Artifacts())
    assert flatten(home.argv)[0] == "virtiofsd"


def test_second_vm_sources_and_sockets() -> None:
    config = structure(
        {
            "user": "alice",
            "nixosVms": [
                {"name": "a"},
                {"name": "b", "sharedDirectories": {"d": {"path": "/d"}}},
            ],
        }
    )
    home, d = plan_virtiofs(config, 1, LAYOUT, ARTIFACTS)
    assert home.shared_dir == "/shared/b"
    assert d.socket == "/run/vmsilo/b/virtiofs-d.sock"
    assert d.sources == (("nixosVms", 1, "sharedDirectories", "d"),)
    assert d.argv[2].sources == (("nixosVms", 1, "sharedDirectories", "d", "path"),)


def test_crosvm_gets_one_vhost_user_per_share_in_order() -> None:
    got = plans(sharedDirectories={"docs": {"path": "/docs"}, "music": {"path": "/m"}})
    args = crosvm_args(got)
    assert flatten(args) == [
        "--vhost-user",
        "type=fs,socket=/run/vmsilo/a/virtiofs-home.sock",
        "--vhost-user",
        "type=fs,socket=/run/vmsilo/a/virtiofs-docs.sock",
        "--vhost-user",
        "type=fs,socket=/run/vmsilo/a/virtiofs-music.sock",
    ]
    assert [a.sources for a in args] == [
        (("nixosVms", 0, "sharedHome"),),
        (("nixosVms", 0, "sharedDirectories", "docs"),),
        (("nixosVms", 0, "sharedDirectories", "music"),),
    ]
    assert crosvm_args(()) == []
