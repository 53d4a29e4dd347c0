"""Structuring JSON into the model: strict primitives, option names, defaults, located errors."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmsilo_nix import ConfigError, structure, unstructure
from vmsilo_nix.config.model import Config, SharedDirectory
from vmsilo_nix.config.paths import OptionPaths, format_path, vm_option_path

from .conftest import minimal


def problems(raw: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        structure(raw)
    return [str(p) for p in info.value.problems]


def test_partial_input_takes_the_defaults() -> None:
    config = structure(minimal())
    assert config == Config(user="alice", nixos_vms=config.nixos_vms)
    vm = config.nixos_vms[0]
    assert (vm.memory, vm.cpus, vm.color, vm.gpu, vm.shared_home) == (1024, 2, "red", True, True)
    assert vm.sound.playback is True and vm.sound.capture is False
    assert vm.root_overlay.type == "qcow2" and vm.root_overlay.size == "10G"
    assert config.vmsilo_balloond.min_poll_interval == "250ms"


def test_full_output_structures_back_to_the_same_config() -> None:
    config = structure(
        minimal(gpu={"context-types": "cross-domain", "width": 1920}, sharedHome="/srv/h")
    )
    data = unstructure(config)
    again = structure(json.loads(json.dumps(data)))
    assert again == config
    assert unstructure(again) == data


@pytest.mark.parametrize(
    ("option", "key"),
    [
        (("vmsilo-balloond", "psiCeiling"), "psi_ceiling"),
        (("vmsilo-tray", "logLevel"), "log_level"),
    ],
)
def test_hyphenated_global_names(option: tuple[str, str], key: str) -> None:
    group, name = option
    value = 50 if name == "psiCeiling" else "debug"
    config = structure({"user": "a", group: {name: value}})
    section = config.vmsilo_balloond if group == "vmsilo-balloond" else config.vmsilo_tray
    assert getattr(section, key) == value
    assert unstructure(config)[group][name] == value


def test_odd_camel_case_names_round_trip() -> None:
    raw = minimal(
        sharedDirectories={"docs": {"path": "/d", "killprivV2": False}},
        network={
            "interfaces": {
                "wan": {
                    "tap": {},
                    "v6Addresses": ["fc00::2/64"],
                    "v6Routes": {"::/0": {"via": "fc00::1"}},
                }
            }
        },
        additionalDisks=[{"path": "/x.img", "block-size": 4096, "o_direct": True, "id": None}],
    )
    config = structure(raw)
    vm = config.nixos_vms[0]
    assert vm.shared_directories["docs"].killpriv_v2 is False
    assert vm.network.interfaces["wan"].v6_addresses == ("fc00::2/64",)
    # Keys inside free-form attribute sets are data, passed to crosvm untouched.
    assert vm.additional_disks[0] == {
        "path": "/x.img",
        "block-size": 4096,
        "o_direct": True,
        "id": None,
    }
    out = unstructure(config)["nixosVms"][0]
    assert out["sharedDirectories"]["docs"]["killprivV2"] is False
    assert out["network"]["interfaces"]["wan"]["v6Routes"] == {"::/0": {"via": "fc00::1"}}
    assert out["additionalDisks"][0]["block-size"] == 4096


@pytest.mark.parametrize(
    ("vm", "message"),
    [
        ({"autoStart": "no"}, 'autoStart: expected boolean, got the string "no"'),
        ({"autoStart": 1}, "autoStart: expected boolean, got the integer 1"),
        ({"cpus": True}, "cpus: expected signed integer, got the boolean true"),
        ({"cpus": 2.0}, "cpus: expected signed integer, got the float 2.0"),
        ({"cpus": "2"}, 'cpus: expected signed integer, got the string "2"'),
        ({"color": 255}, "color: expected string, got the integer 255"),
        (
            {"kernelParams": "quiet"},
            'kernelParams: expected list of string, got the string "quiet"',
        ),
        ({"kernelParams": [1]}, "kernelParams[0]: expected string, got the integer 1"),
        ({"sharedHome": 0}, "sharedHome: expected boolean or string, got the integer 0"),
        (
            {"gpu": "yes"},
            "gpu: expected boolean or attribute set of (string or signed integer or "
            'boolean), got the string "yes"',
        ),
        ({"gpu": {"width": 1.5}}, "gpu.width: expected string or signed integer or boolean"),
        ({"waylandProxy": "sommelir"}, 'did you mean "sommelier"?'),
        ({"rootOverlay": {"type": "zfs"}}, 'expected one of "qcow2", "tmpfs", got the string'),
        ({"network": []}, "network: expected an attribute set, got a list"),
        ({"sharedDirectories": {"d": {}}}, "sharedDirectories.d.path: is required but not set"),
        ({"sound": {"playback": None}}, "sound.playback: expected boolean, got null"),
        ({"rootDisk": {"path": ["x"]}}, "rootDisk.path: expected null or"),
        (
            {"memory": {"_vmsiloNixValue": "function"}},
            "memory: expected signed integer, got a Nix function",
        ),
    ],
)
def test_strict_types_name_the_option(vm: dict[str, Any], message: str) -> None:
    found = problems(minimal(**vm))
    assert len(found) == 1, found
    assert found[0].startswith("programs.vmsilo.nixosVms[0] (a).")
    assert message in found[0]


def test_unknown_options_suggest_the_nearest_name() -> None:
    found = problems(
        {
            "user": "a",
            "nixosVm": [],
            "crosvm": {"logLevl": "x"},
            "nixosVms": [{"name": "w", "cpu": 2, "zzz": 1}],
        }
    )
    assert "programs.vmsilo.nixosVm: unknown option; did you mean 'nixosVms'?" in found
    assert "programs.vmsilo.crosvm.logLevl: unknown option; did you mean 'logLevel'?" in found
    assert "programs.vmsilo.nixosVms[0] (w).cpu: unknown option; did you mean 'cpus'?" in found
    assert "programs.vmsilo.nixosVms[0] (w).zzz: unknown option" in found


def test_every_problem_is_reported_at_once_with_the_vm_name() -> None:
    found = problems(
        {
            "user": 7,
            "nixosVms": [
                {"name": "ok"},
                {
                    "name": "work",
                    "memory": "4G",
                    "network": {"interfaces": {"wan": {"type": "tun", "tap": {"hostAdress": "x"}}}},
                },
                {"cpus": 2},
                5,
            ],
        }
    )
    assert found == [
        "programs.vmsilo.user: expected string, got the integer 7",
        'programs.vmsilo.nixosVms[1] (work).memory: expected signed integer, got the string "4G"',
        'programs.vmsilo.nixosVms[1] (work).network.interfaces.wan.type: expected one of "tap", '
        'got the string "tun"',
        "programs.vmsilo.nixosVms[1] (work).network.interfaces.wan.tap.hostAdress: unknown "
        "option; did you mean 'hostAddress'?",
        "programs.vmsilo.nixosVms[2].name: is required but not set",
        "programs.vmsilo.nixosVms[3]: expected an attribute set, got the integer 5",
    ]


def test_required_user_and_non_attrset_root() -> None:
    assert problems({}) == ["programs.vmsilo.user: is required but not set"]
    assert problems([]) == ["programs.vmsilo: expected an attribute set, got a list"]
    assert problems(None) == ["programs.vmsilo: expected an attribute set, got null"]


def test_nix_only_options_are_accepted_and_dropped() -> None:
    raw = {
        "user": "a",
        "_internal": {"crosvm": "/nix/store/x"},
        "package": "/nix/store/y",
        "nixosVms": [{"name": "a", "guestConfig": [{"imports": []}]}],
    }
    data = unstructure(structure(raw))
    assert "_internal" not in data and "package" not in data
    assert "guestConfig" not in data["nixosVms"][0]


def test_attribute_names_with_dots_are_quoted_in_paths() -> None:
    found = problems(
        minimal(network={"interfaces": {"wan": {"routes": {"0.0.0.0/0": {"via": 1}}}}})
    )
    assert found == [
        'programs.vmsilo.nixosVms[0] (a).network.interfaces.wan.routes."0.0.0.0/0"'
        ".via: expected string, got the integer 1"
    ]


def test_model_is_frozen() -> None:
    share = SharedDirectory(path="/x")
    with pytest.raises(AttributeError):
        share.path = "/y"  # type: ignore[misc]


def test_lone_surrogates_are_rejected_where_they_appear() -> None:
    found = problems(
        {
            "user": "a",
            "nixosVms": [{"name": "\ud800", "network": {"interfaces": {"w\udc00": {"tap": {}}}}}],
        }
    )
    assert found == [
        'programs.vmsilo.nixosVms[0] ("\\ud800").name: the string is not valid Unicode text (it '
        "holds a lone surrogate)",
        'programs.vmsilo.nixosVms[0] ("\\ud800").network.interfaces."w\\udc00": the attribute '
        "name is not valid Unicode text (it holds a lone surrogate)",
    ]


def test_nul_characters_cannot_reach_a_command_line() -> None:
    found = problems(
        minimal(
            kernel="/k\0",
            crosvm={"extraArgs": ["--x\0"]},
            sharedDirectories={"a\0": {"path": "/a"}},
        )
    )
    assert found == [
        "programs.vmsilo.nixosVms[0] (a).kernel: the string contains a NUL character, which no "
        "command line can carry",
        'programs.vmsilo.nixosVms[0] (a).sharedDirectories."a\\u0000": the attribute name '
        "contains a NUL character, which no command line can carry",
        "programs.vmsilo.nixosVms[0] (a).crosvm.extraArgs[0]: the string contains a NUL "
        "character, which no command line can carry",
    ]


def test_a_nix_path_where_a_submodule_is_expected_names_what_the_user_wrote() -> None:
    """apply.nix marks a path as an attribute set on the wire; the marker's own name must not
    leak into the message as an unknown option."""
    marked = {"_vmsiloNixValue": "path", "path": "/etc/hosts"}
    found = problems(minimal(sharedDirectories={"docs": marked}))
    assert found == [
        "programs.vmsilo.nixosVms[0] (a).sharedDirectories.docs: expected an attribute set, "
        "got the Nix path /etc/hosts"
    ]


_SEGMENT = st.one_of(st.integers(-3, 5), st.text(max_size=6))


@given(
    names=st.lists(st.one_of(st.none(), st.text(max_size=5)), max_size=4),
    path=st.one_of(
        st.lists(_SEGMENT, max_size=5),
        st.tuples(st.just("nixosVms"), st.integers(-2, 6), st.lists(_SEGMENT, max_size=4)).map(
            lambda t: [t[0], t[1], *t[2]]
        ),
    ),
)
def test_option_paths_render_as_format_path(names: list[str | None], path: list[Any]) -> None:
    """The renderer `plan --json` uses for its ~50,000 paths says what format_path says,
    VM names (missing, unprintable, out of range) and quoting included."""
    assert OptionPaths(names)(tuple(path)) == format_path(path, names)
    assert OptionPaths(names, root="")(tuple(path)) == format_path(path, names, root="")
    if len(path) >= 2 and path[0] == "nixosVms" and 0 <= path[1] < len(names):
        i = path[1]
        assert vm_option_path(i, names[i], path[2:]) == format_path(path, names)
