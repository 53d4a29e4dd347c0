"""Property tests: every valid config yields command lines that crosvm's grammar accepts, and
paths with spaces, commas, quotes, brackets and `$` reach crosvm and virtiofsd exactly."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vmsilo_nix.config import crosvm_grammar as grammar
from vmsilo_nix.config.artifacts import Artifacts, VmArtifacts
from vmsilo_nix.pipeline import check
from vmsilo_nix.plan.argv import flatten
from vmsilo_nix.plan.host import plan

from . import kvparse

NAMES = st.from_regex(r"[a-z][a-z0-9]{0,7}", fullmatch=True)
# Anything a file name may hold but control characters (no option takes one) and no lone
# surrogates (no Nix string holds one).
PATH_TEXT = st.text(
    st.characters(exclude_characters="/", exclude_categories=["Cc", "Cs"]), min_size=1, max_size=12
) | st.sampled_from(["a b", "a,b", 'a"b', "a'b", "[x]", "$HOME", "a=b", "\\", "é", "1234"])
PATHS = st.lists(PATH_TEXT, min_size=1, max_size=3).map(lambda parts: "/" + "/".join(parts))
TAGS = st.from_regex(r"[a-z][a-z0-9_-]{0,8}", fullmatch=True).filter(lambda t: t != "home")


@st.composite
def vm(draw: st.DrawFn, name: str, index: int) -> dict[str, Any]:
    return {
        "name": name,
        "cpus": draw(st.integers(1, 64)),
        "memory": draw(st.integers(1, 1 << 20)),
        "kernel": draw(st.none() | PATHS),
        "initramfs": draw(st.none() | PATHS),
        "sharedHome": draw(st.booleans() | PATHS),
        "rootOverlay": {"type": draw(st.sampled_from(["qcow2", "tmpfs"]))},
        "rootDisk": draw(
            st.none()
            | st.builds(lambda p, ro: {"path": f"/{name}/root{p}", "ro": ro}, PATHS, st.booleans())
        ),
        "additionalDisks": draw(
            st.lists(
                st.builds(
                    lambda p, ro, bs: {
                        "path": f"/{name}/data{p}",
                        "ro": ro,
                        "block-size": bs,
                        "id": None,
                    },
                    PATHS,
                    st.booleans(),
                    st.sampled_from([512, 4096]),
                ),
                max_size=3,
                # one image written twice is refused (the same file, however it is spelt)
                unique_by=lambda d: os.path.normpath(d["path"]),
            )
        ),
        "sharedDirectories": draw(
            st.dictionaries(
                TAGS,
                st.builds(
                    lambda p, ro, c: {"path": p, "readonly": ro, "cache": c},
                    PATHS,
                    st.booleans(),
                    st.sampled_from(["auto", "always", "never", "metadata"]),
                ),
                max_size=3,
            )
        ),
        "gpu": draw(st.booleans() | st.just({"context-types": "cross-domain", "width": 800})),
        "sound": {"playback": draw(st.booleans()), "capture": draw(st.booleans())},
        "kernelParams": draw(
            st.lists(
                st.from_regex(r"[a-z.]{1,8}(=[#-~]{1,8})?", fullmatch=True).filter(
                    lambda p: p.split("=")[0] != "init" and not p.startswith("vmsilo.")
                ),  # vmsilo's own
                max_size=3,
            )
        ),
        "vhostUser": draw(
            st.lists(st.builds(lambda s: {"type": "net", "socket": s}, PATHS), max_size=2)
        ),
        "network": {
            "interfaces": draw(
                st.dictionaries(
                    st.sampled_from(["wan", "lan", "eth0"]),
                    st.just({"tap": {}}) | st.just({"tap": {"bridge": "br0"}, "dhcp": True}),
                    max_size=2,
                )
            )
        },
    }


@st.composite
def configs(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(NAMES, min_size=1, max_size=3, unique=True))
    return {
        "user": "alice",
        "schedulerIsolation": draw(st.sampled_from(["full", "vm", "off"])),
        "nixosVms": [draw(vm(n, i)) for i, n in enumerate(names)],
    }


def split_run(argv: list[str]) -> tuple[list[str], list[str]]:
    run = argv.index("run")
    return argv[1:run], argv[run + 1 :]


def parse_run(words: list[str]) -> tuple[list[tuple[str, str | None]], str]:
    """[(flag, value or None)] and the kernel positional; asserts the grammar facts."""
    flags: list[tuple[str, str | None]] = []
    i = 0
    while i < len(words) - 1:
        word = words[i]
        flag = grammar.canonical_flag(word)
        assert flag is not None, f"stray positional {word!r} before the kernel"
        kind = grammar.classify(flag)
        assert kind != "unknown", flag
        assert flag not in grammar.RUN_REMOVED and flag not in grammar.RUN_DEPRECATED, flag
        if "=" in word:
            flags.append((flag, word.split("=", 1)[1]))
            i += 1
        elif kind == "switch":
            flags.append((flag, None))
            i += 1
        else:
            assert flag not in grammar.VALUE_TAKING_BOOL, f"{flag} needs =VALUE"
            flags.append((flag, words[i + 1]))
            i += 2
    assert i == len(words) - 1, "the kernel must be the last word"
    return flags, words[-1]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs())
def test_crosvm_argv_follows_the_grammar(raw: dict[str, Any]) -> None:
    config = check(raw)
    built = VmArtifacts(kernel="/k", initrd="/i", root_image="/r", toplevel="/t")
    p = plan(config, Artifacts(vms={vm.name: built for vm in config.nixos_vms}))
    for index, vm in enumerate(raw["nixosVms"]):
        vp = p.vms[vm["name"]]
        argv = flatten(vp.crosvm)
        before, after = split_run(argv)
        assert all(grammar.canonical_flag(w) in grammar.GLOBAL_FLAGS for w in before[::2])
        flags, kernel = parse_run(after)
        counts: dict[str, int] = {}
        for flag, _ in flags:
            counts[flag] = counts.get(flag, 0) + 1
        for flag, n in counts.items():
            if flag in grammar.RUN_SINGLE or flag in grammar.RUN_AT_MOST_ONCE:
                assert n == 1, f"{flag} given {n} times"
        blocks = []
        for flag, value in flags:
            if flag not in grammar.KEYS or value is None:
                continue
            items = kvparse.parse(value)  # raises on unbalanced quoting or brackets
            for pos, (key, _) in enumerate(items):
                if key is None:
                    assert pos == 0 and flag in grammar.FIRST_FIELD, (flag, value)
                else:
                    assert key in grammar.KEYS[flag], (flag, key)
            if flag == "--block":
                blocks.append({k or "path": v for k, v in items}["path"])
        # paths reach crosvm exactly
        assert kernel == (vm["kernel"] or "/k")
        assert dict(flags)["--initrd"] == (vm["initramfs"] or "/i")
        root = vm["rootDisk"]["path"] if vm["rootDisk"] else "/r"
        extra = [d["path"] for d in vm["additionalDisks"]]
        overlay = [vp.overlay.path] if vp.overlay.path else []
        assert blocks == [root, *overlay, *extra]
        sockets = [kvparse.parse(v or "") for f, v in flags if f == "--vhost-user"]
        assert [dict(s)["socket"] for s in sockets if dict(s)["type"] == "net"] == [
            u["socket"] for u in vm["vhostUser"]
        ]
        # and virtiofsd gets each shared directory exactly, as one --shared-dir=PATH word
        shared = [
            w.split("=", 1)[1]
            for s in vp.virtiofsd
            for w in flatten(s.argv)
            if w.startswith("--shared-dir=")
        ]
        home = vm["sharedHome"]
        expected_home = [] if home is False else [f"/shared/{vm['name']}" if home is True else home]
        assert shared == expected_home + [
            vm["sharedDirectories"][t]["path"] for t in sorted(vm["sharedDirectories"])
        ]
        assert index == vp.index
