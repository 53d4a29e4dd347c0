"""Tests for vmsilo_nix.values: known examples, rejections, and hypothesis properties."""

from __future__ import annotations

import functools
import hashlib
import ipaddress
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from vmsilo_nix.config import values as v

# --------------------------------------------------------------------------------------------
# Totality: every parser either returns or raises ValueError with a message, for any str.

# Characters that appear in valid inputs of some parser, so that generated text gets past the
# first checks more often than fully random text would.
_NEAR_ALPHABET = "0123456789abcdefABCDEFkKmMgGtTpPeEhsx.:/#%-_ ()=\"',\t\n\u00e9\u212a\u0660"
_texts = st.one_of(st.text(), st.text(alphabet=_NEAR_ALPHABET, max_size=40))


def _total(fn: Callable[[str], object], text: str) -> None:
    try:
        fn(text)
    except ValueError as err:
        assert str(err), "error messages must not be empty"


_PARSERS: dict[str, Callable[[str], object]] = {
    "parse_size": v.parse_size,
    "parse_duration": v.parse_duration,
    "parse_color": v.parse_color,
    "parse_mac": v.parse_mac,
    "parse_interface_address/4": lambda t: v.parse_interface_address(t, 4),
    "parse_interface_address/6": lambda t: v.parse_interface_address(t, 6),
    "parse_network/4": lambda t: v.parse_network(t, 4),
    "parse_network/6": lambda t: v.parse_network(t, 6),
    "parse_ip": v.parse_ip,
    "parse_ip/4": lambda t: v.parse_ip(t, 4),
    "parse_ip/6": lambda t: v.parse_ip(t, 6),
    "normalise_bdf": v.normalise_bdf,
    "sysfs_path": v.sysfs_path,
    "check_unit_name": v.check_unit_name,
    "check_interface_name": v.check_interface_name,
    "check_kernel_param": v.check_kernel_param,
    "derive_mac": lambda t: v.derive_mac(t, t),
}


@pytest.mark.parametrize("name", sorted(_PARSERS))
@given(text=_texts)
def test_parsers_are_total(name: str, text: str) -> None:
    _total(_PARSERS[name], text)


@given(st.text(), st.text())
def test_derive_mac_total_in_both_arguments(vm: str, interface: str) -> None:
    try:
        mac = v.derive_mac(vm, interface)
    except ValueError:
        return
    assert v.is_unicast(v.parse_mac(mac))


@given(st.text(alphabet="0123456789.:/abcdef%", max_size=45))
def test_ip_parsers_total_on_address_like_text(text: str) -> None:
    for family in (4, 6):
        _total(functools.partial(v.parse_interface_address, family=family), text)
        _total(functools.partial(v.parse_network, family=family), text)
    _total(v.parse_ip, text)


def _ipaddress_reads(text: str) -> object:
    try:
        return ipaddress.ip_interface(text) if "/" in text else ipaddress.ip_address(text)
    except ValueError:
        return None


@given(
    st.lists(
        st.integers(0, 300).map(str) | st.sampled_from(["00", "01", "010", "255", "256", ""]),
        min_size=3,
        max_size=5,
    ).map(".".join),
    st.none() | st.integers(0, 40).map(str) | st.sampled_from(["024", "08"]),
)
@example("1.2.3.256", None)
@example("256.2.3.4", "24")
@example("1.2.3.255", "33")
@example("1.02.3.4", None)
@example("0.0.0.0", "0")
def test_ipv4_reads_as_ipaddress_reads_it(address: str, prefix: str | None) -> None:
    # vmsilo reads canonical dotted quads itself; it must accept and refuse exactly as
    # ipaddress does, and give the same value
    text = address if prefix is None else f"{address}/{prefix}"
    expected = _ipaddress_reads(text)
    parse = v.parse_ip if prefix is None else v.parse_interface_address
    args = (text,) if prefix is None else (text, 4)
    try:
        got: object = parse(*args)
    except ValueError:
        got = None
    assert got == expected and type(got) is type(expected)


# --------------------------------------------------------------------------------------------
# Sizes

K, M, G, T, P, E = (1024**i for i in range(1, 7))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10G", 10 * G),
        ("20G", 20 * G),
        ("256m", 256 * M),
        ("400m", 400 * M),
        ("512M", 512 * M),
        ("1T", T),
        ("4096", 4096),
        ("1", 1),
        ("1.5G", 3 * G // 2),
        ("0.5k", 512),
        ("1.0001K", 1024),  # 1024.1024 rounded down
        ("2p", 2 * P),
        ("7E", 7 * E),
        ("7e", 7 * E),
        ("010G", 10 * G),
        ("9223372036854775807", 2**63 - 1),
    ],
)
def test_parse_size_accepts(text: str, expected: int) -> None:
    assert v.parse_size(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "invalid size"),
        ("0", "positive"),
        ("0G", "positive"),
        ("0.0001", "fraction needs a unit"),
        ("0.0000001K", "positive"),
        ("-1G", "positive"),
        ("+1G", "invalid size"),
        ("-G", "invalid size"),
        (" 1G", "invalid size"),
        ("1G ", "invalid size"),
        ("1 G", "invalid size"),
        ("1GB", "invalid size"),
        ("1B", "invalid size"),
        ("1b", "invalid size"),
        ("1Gi", "invalid size"),
        ("1.5", "fraction needs a unit"),
        ("1.G", "invalid size"),
        (".5G", "invalid size"),
        ("0x10", "invalid size"),
        ("1e3", "invalid size"),
        ("G", "invalid size"),
        ("1X", "invalid size"),
        ("\u0661\u0662", "invalid size"),  # Arabic-Indic digits
        ("8E", "too large"),
        ("9223372036854775808", "too large"),
        ("1" * 5000, "too large"),
    ],
)
def test_parse_size_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        v.parse_size(text)


@given(st.integers(min_value=1, max_value=2**63 - 1))
def test_parse_size_plain_bytes_roundtrip(n: int) -> None:
    assert v.parse_size(str(n)) == n


@given(st.integers(min_value=1, max_value=2**20), st.sampled_from("kKmMgGtTpPeE"))
def test_parse_size_units_are_binary(n: int, unit: str) -> None:
    mul = 1024 ** ("kmgtpe".index(unit.lower()) + 1)
    if n * mul > 2**63 - 1:
        with pytest.raises(ValueError, match="too large"):
            v.parse_size(f"{n}{unit}")
    else:
        assert v.parse_size(f"{n}{unit}") == n * mul


@given(
    st.integers(min_value=0, max_value=1000),
    st.text(alphabet="0123456789", min_size=1, max_size=80),
    st.sampled_from("kmgt"),
)
def test_parse_size_fraction_rounds_down_exactly(whole: int, frac: str, unit: str) -> None:
    mul = 1024 ** ("kmgt".index(unit) + 1)
    exact = (whole * 10 ** len(frac) + int(frac)) * mul // 10 ** len(frac)
    text = f"{whole}.{frac}{unit}"
    if exact == 0:
        with pytest.raises(ValueError, match="positive"):
            v.parse_size(text)
    else:
        assert v.parse_size(text) == exact


def test_parse_size_long_fraction_is_exact() -> None:
    # 2**-60 == 5**60 / 10**60, so "0.<those 60 digits>E" is exactly one byte, and anything
    # below it, however many digits it takes to say so, rounds down to zero bytes.
    one_byte = str(5**60).zfill(60)
    assert v.parse_size(f"0.{one_byte}E") == 1
    assert v.parse_size(f"0.{one_byte}{'0' * 100}1E") == 1
    just_below = str(5**60 - 1).zfill(60) + "9" * 100
    with pytest.raises(ValueError, match="positive"):
        v.parse_size(f"0.{just_below}E")
    assert v.parse_size("0." + "9" * 100 + "E") == E - 1
    assert v.parse_size("1." + "9" * 100 + "K") == 2 * K - 1


# --------------------------------------------------------------------------------------------
# Durations


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2s", 2.0),
        ("1s", 1.0),
        ("500ms", 0.5),
        ("250ms", 0.25),
        ("100ms", 0.1),
        ("1m", 60.0),
        ("1.5s", 1.5),
        ("1.5m", 90.0),
        ("2h", 7200.0),
        ("0.5ms", 0.0005),
    ],
)
def test_parse_duration_accepts(text: str, expected: float) -> None:
    assert v.parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "invalid duration"),
        ("2", "needs a unit"),
        ("1.5", "needs a unit"),
        ("0s", "positive"),
        ("0.000ms", "positive"),
        ("-1s", "positive"),
        ("100us", "unknown unit 'us'"),
        ("1d", "unknown unit 'd'"),
        ("1sec", "unknown unit"),
        ("1S", "invalid duration"),
        ("1MS", "invalid duration"),
        ("1 s", "invalid duration"),
        (" 1s", "invalid duration"),
        ("s", "invalid duration"),
        ("1m30s", "invalid duration"),
        ("inf s", "invalid duration"),
        ("nans", "invalid duration"),
        ("1e3s", "invalid duration"),
        ("\u0661s", "invalid duration"),
        ("9" * 400 + "h", "too large"),
        ("0." + "0" * 400 + "1ms", "positive"),
    ],
)
def test_parse_duration_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        v.parse_duration(text)


@given(st.integers(min_value=1, max_value=10**9), st.sampled_from(["ms", "s", "m", "h"]))
def test_parse_duration_units(n: int, unit: str) -> None:
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    assert v.parse_duration(f"{n}{unit}") == pytest.approx(n * scale)


@given(st.text(alphabet="0123456789.", min_size=1, max_size=30), st.sampled_from(["ms", "s"]))
def test_parse_duration_result_is_finite_and_positive(number: str, unit: str) -> None:
    try:
        seconds = v.parse_duration(number + unit)
    except ValueError:
        return
    assert 0.0 < seconds < float("inf")


# --------------------------------------------------------------------------------------------
# Colours


def test_css_colour_table() -> None:
    assert len(v.CSS_COLOURS) == 148
    assert v.CSS_COLOURS["rebeccapurple"] == (0x66, 0x33, 0x99)
    assert v.CSS_COLOURS["gray"] == v.CSS_COLOURS["grey"] == (128, 128, 128)
    assert v.CSS_COLOURS["aqua"] == v.CSS_COLOURS["cyan"] == (0, 255, 255)
    assert all(name.isascii() and name.islower() for name in v.CSS_COLOURS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("red", (255, 0, 0)),
        ("Red", (255, 0, 0)),
        ("LightGoldenrodYellow", (250, 250, 210)),
        ("green", (0, 128, 0)),
        ("#f00", (255, 0, 0)),
        ("#F0a", (255, 0, 170)),
        ("#123456", (0x12, 0x34, 0x56)),
        ("#ABCDEF", (0xAB, 0xCD, 0xEF)),
        ("rgb(255,0,0)", (255, 0, 0)),
        ("rgb( 1 , 2 , 3 )", (1, 2, 3)),
        ("RGB(0, 128, 255)", (0, 128, 255)),
    ],
)
def test_parse_color_accepts(text: str, expected: tuple[int, int, int]) -> None:
    assert v.parse_color(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "notacolour",
        "transparent",
        "currentcolor",
        "#ff",
        "#ffff",
        "#fffffff",
        "#ggg",
        "ff0000",
        "rgb(256,0,0)",
        "rgb(-1,0,0)",
        "rgb(1,2)",
        "rgb(1,2,3,4)",
        "rgba(1,2,3,0.5)",
        "rgb(1.5,2,3)",
        "rgb(100%,0,0)",
        " red",
        "red ",
        "\u212ahaki",  # KELVIN SIGN lower-cases to "k"
        "#\uff46\uff46\uff46",  # full-width f
    ],
)
def test_parse_color_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="colour"):
        v.parse_color(text)


def test_parse_color_message_lists_forms() -> None:
    with pytest.raises(ValueError) as info:
        v.parse_color("blurple")
    for form in ("#rgb", "#rrggbb", "rgb(", "name"):
        assert form in str(info.value)


@given(st.tuples(*[st.integers(0, 255)] * 3))
def test_parse_color_hex_and_rgb_roundtrip(rgb: tuple[int, int, int]) -> None:
    r, g, b = rgb
    assert v.parse_color(f"#{r:02x}{g:02x}{b:02X}") == rgb
    assert v.parse_color(f"rgb({r}, {g},{b})") == rgb


@given(st.tuples(*[st.integers(0, 15)] * 3))
def test_parse_color_short_hex_doubles_digits(rgb: tuple[int, int, int]) -> None:
    text = "#" + "".join(f"{c:x}" for c in rgb)
    assert v.parse_color(text) == tuple(c * 17 for c in rgb)


@given(st.sampled_from(sorted(v.CSS_COLOURS)), st.randoms())
def test_parse_color_names_case_insensitive(name: str, rnd: Any) -> None:
    mixed = "".join(c.upper() if rnd.random() < 0.5 else c for c in name)
    assert v.parse_color(mixed) == v.CSS_COLOURS[name]


# --------------------------------------------------------------------------------------------
# MAC addresses


def test_parse_mac_examples() -> None:
    assert v.parse_mac("02:00:00:00:00:01") == bytes([2, 0, 0, 0, 0, 1])
    assert v.parse_mac("AA:bb:Cc:dD:ee:FF") == bytes.fromhex("aabbccddeeff")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("02-00-00-00-00-01", 'not "-"'),
        ("", "six hex pairs"),
        ("02:00:00:00:00", "six hex pairs"),
        ("02:00:00:00:00:01:02", "six hex pairs"),
        ("2:00:00:00:00:01", "six hex pairs"),
        ("020000000001", "six hex pairs"),
        ("0200.0000.0001", "six hex pairs"),
        ("02:00:00:00:00:0g", "six hex pairs"),
        ("02:00:00:00:00:01 ", "six hex pairs"),
        ("02:00:00:00:00:01\n", "six hex pairs"),
        ("\uff10\uff12:00:00:00:00:01", "six hex pairs"),
    ],
)
def test_parse_mac_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        v.parse_mac(text)


@given(st.binary(min_size=6, max_size=6))
def test_mac_roundtrip(mac: bytes) -> None:
    text = v.format_mac(mac)
    assert text == text.lower()
    assert v.parse_mac(text) == mac
    assert v.parse_mac(text.upper()) == mac
    assert v.is_unicast(mac) == (mac[0] % 2 == 0)


def test_is_unicast_examples() -> None:
    assert v.is_unicast(bytes.fromhex("020000000001"))
    assert not v.is_unicast(bytes.fromhex("010000000001"))
    assert not v.is_unicast(b"\xff" * 6)


@given(st.binary().filter(lambda b: len(b) != 6))
def test_mac_bytes_of_wrong_length_rejected(mac: bytes) -> None:
    with pytest.raises(ValueError, match="6 bytes"):
        v.format_mac(mac)
    with pytest.raises(ValueError, match="6 bytes"):
        v.is_unicast(mac)


def test_derive_mac_known_values() -> None:
    # sha1("work-eth0") starts 09 5c 2f b2 6e 0f; 0x09 | 0x02 & ~0x01 == 0x0a.
    assert v.derive_mac("work", "eth0") == "0a:5c:2f:b2:6e:0f"
    assert v.derive_mac("banking", "net0") == "46:bf:55:c4:bb:3f"


@given(st.text(), st.text())
def test_derive_mac_follows_documented_recipe(vm: str, interface: str) -> None:
    try:
        data = f"{vm}-{interface}".encode()
    except UnicodeEncodeError:
        with pytest.raises(ValueError):
            v.derive_mac(vm, interface)
        return
    raw = hashlib.sha1(data).digest()[:6]
    mac = v.parse_mac(v.derive_mac(vm, interface))
    assert mac[1:] == raw[1:]
    assert mac[0] == (raw[0] | 0x02) & 0xFE
    assert mac[0] & 0x02, "locally administered"
    assert v.is_unicast(mac)
    assert v.derive_mac(vm, interface) == v.derive_mac(vm, interface)


# --------------------------------------------------------------------------------------------
# IP addresses


def test_parse_interface_address_examples() -> None:
    assert v.parse_interface_address("10.0.0.1/24", 4) == ipaddress.IPv4Interface("10.0.0.1/24")
    assert v.parse_interface_address("fd00::1/64", 6) == ipaddress.IPv6Interface("fd00::1/64")
    assert v.parse_interface_address("10.0.0.0/8", 4).network == ipaddress.IPv4Network("10.0.0.0/8")


@pytest.mark.parametrize(
    ("text", "family", "message"),
    [
        ("fd00::1/64", 4, "expected an IPv4 address with prefix, e.g. 10.0.0.1/24"),
        ("10.0.0.1/24", 6, "expected an IPv6 address with prefix, e.g. fd00::1/64"),
        ("10.0.0.1", 4, "no prefix length"),
        ("fd00::1", 6, "no prefix length"),
        ("10.0.0.1/33", 4, "expected an IPv4 address with prefix"),
        ("fd00::1/129", 6, "expected an IPv6 address with prefix"),
        ("10.0.0.1/255.255.255.0", 4, "prefix length"),
        ("10.0.0.1/", 4, "prefix length"),
        ("10.0.0.1/ 24", 4, "prefix length"),
        ("10.0.0.1/24/1", 4, "prefix length"),
        ("10.0.0.256/24", 4, "expected an IPv4"),
        ("010.0.0.1/24", 4, "expected an IPv4"),
        ("fe80::1%eth0/64", 6, "zone"),
        ("", 4, "no prefix length"),
        ("10.0.0.1/\u0662\u0664", 4, "prefix length"),
    ],
)
def test_parse_interface_address_rejects(text: str, family: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        v.parse_interface_address(text, family)


@pytest.mark.parametrize("family", [0, 2, 5, 10])
def test_bad_family_is_value_error(family: int) -> None:
    with pytest.raises(ValueError, match="family"):
        v.parse_interface_address("10.0.0.1/24", family)
    with pytest.raises(ValueError, match="family"):
        v.parse_network("0.0.0.0/0", family)
    with pytest.raises(ValueError, match="family"):
        v.parse_ip("10.0.0.1", family)


def test_parse_network_examples() -> None:
    assert v.parse_network("0.0.0.0/0", 4) == ipaddress.IPv4Network("0.0.0.0/0")
    assert v.parse_network("::/0", 6) == ipaddress.IPv6Network("::/0")
    assert v.parse_network("10.0.0.0/8", 4) == ipaddress.IPv4Network("10.0.0.0/8")
    assert v.parse_network("10.0.0.5", 4) == ipaddress.IPv4Network("10.0.0.5/32")
    assert v.parse_network("fd00::5", 6) == ipaddress.IPv6Network("fd00::5/128")


@pytest.mark.parametrize(
    ("text", "family", "message"),
    [
        ("10.0.0.1/24", 4, r"host bits set; did you mean 10\.0\.0\.0/24\?"),
        ("fd00::1/64", 6, r"did you mean fd00::/64\?"),
        ("::/0", 4, "expected an IPv4 network"),
        ("0.0.0.0/0", 6, "expected an IPv6 network"),
        ("default", 4, "expected an IPv4 network"),
        ("10.0.0.0/255.0.0.0", 4, "prefix length"),
        ("", 6, "invalid network"),
    ],
)
def test_parse_network_rejects(text: str, family: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        v.parse_network(text, family)


def test_parse_ip_examples() -> None:
    assert v.parse_ip("10.0.0.1") == ipaddress.IPv4Address("10.0.0.1")
    assert v.parse_ip("fd00::1") == ipaddress.IPv6Address("fd00::1")
    assert v.parse_ip("1.1.1.1", 4) == ipaddress.IPv4Address("1.1.1.1")
    assert v.parse_ip("2606:4700::1111", 6) == ipaddress.IPv6Address("2606:4700::1111")


@pytest.mark.parametrize(
    ("text", "family", "message"),
    [
        ("10.0.0.1", 6, "is an IPv4 address: expected an IPv6 address"),
        ("fd00::1", 4, "is an IPv6 address: expected an IPv4 address"),
        ("10.0.0.1/24", None, "prefix length"),
        ("fe80::1%eth0", None, "zone"),
        ("", None, "invalid address"),
        ("localhost", None, "invalid address"),
        (" 10.0.0.1", 4, "invalid address"),
    ],
)
def test_parse_ip_rejects(text: str, family: int | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        v.parse_ip(text, family)


@given(st.ip_addresses())
def test_parse_ip_roundtrip(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    assert v.parse_ip(str(addr)) == addr
    assert v.parse_ip(str(addr), addr.version) == addr
    with pytest.raises(ValueError, match="expected an IPv"):
        v.parse_ip(str(addr), 10 - addr.version)


@given(st.ip_addresses(), st.data())
def test_interface_and_network_roundtrip(
    addr: ipaddress.IPv4Address | ipaddress.IPv6Address, data: st.DataObject
) -> None:
    prefix = data.draw(st.integers(0, addr.max_prefixlen))
    text = f"{addr}/{prefix}"
    iface = v.parse_interface_address(text, addr.version)
    assert iface.ip == addr
    assert iface.network.prefixlen == prefix
    net = iface.network
    assert v.parse_network(str(net), addr.version) == net
    if net.network_address != addr:
        with pytest.raises(ValueError, match=f"did you mean {net}"):
            v.parse_network(text, addr.version)


# --------------------------------------------------------------------------------------------
# PCI addresses


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("01:00.0", "0000:01:00.0"),
        ("0000:01:00.0", "0000:01:00.0"),
        ("0000:0A:1F.7", "0000:0a:1f.7"),
        ("ABCD:ff:1f.7", "abcd:ff:1f.7"),
        ("/sys/bus/pci/devices/0000:01:00.0", "0000:01:00.0"),
        ("/sys/bus/pci/devices/0000:0B:00.3", "0000:0b:00.3"),
    ],
)
def test_normalise_bdf_accepts(text: str, expected: str) -> None:
    assert v.normalise_bdf(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "invalid PCI address"),
        ("01:20.0", "device must be 00-1f"),
        ("01:ff.0", "device must be 00-1f"),
        ("01:00.8", "function must be 0-7"),
        ("01:00.f", "function must be 0-7"),
        ("1:00.0", "expected a PCI address"),
        ("001:00.0", "expected a PCI address"),
        ("00000:01:00.0", "expected a PCI address"),
        ("0000:01:00:0", "expected a PCI address"),
        ("0000:01:00.0 ", "expected a PCI address"),
        ("0000:01:00.0/", "expected a PCI address"),
        ("/sys/bus/pci/devices/", "expected a PCI address"),
        ("/sys/bus/pci/devices/0000:01:00.0/", "expected a PCI address"),
        ("sys/bus/pci/devices/0000:01:00.0", "expected a PCI address"),
        ("0000:0g:00.0", "expected a PCI address"),
        ("\uff10\uff11:00.0", "expected a PCI address"),
    ],
)
def test_normalise_bdf_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        v.normalise_bdf(text)


def test_sysfs_path() -> None:
    assert v.sysfs_path("01:00.0") == "/sys/bus/pci/devices/0000:01:00.0"
    assert v.sysfs_path("/sys/bus/pci/devices/0000:01:00.0") == "/sys/bus/pci/devices/0000:01:00.0"
    with pytest.raises(ValueError):
        v.sysfs_path("01:00.9")


@given(
    st.integers(0, 0xFFFF),
    st.integers(0, 0xFF),
    st.integers(0, 0x1F),
    st.integers(0, 7),
    st.booleans(),
)
def test_bdf_roundtrip(domain: int, bus: int, device: int, function: int, upper: bool) -> None:
    canonical = f"{domain:04x}:{bus:02x}:{device:02x}.{function}"
    text = canonical.upper() if upper else canonical
    assert v.normalise_bdf(text) == canonical
    assert v.normalise_bdf(v.sysfs_path(text)) == canonical
    assert v.normalise_bdf(canonical) == canonical  # idempotent
    if domain == 0:
        assert v.normalise_bdf(text[5:]) == canonical


# --------------------------------------------------------------------------------------------
# Names


@pytest.mark.parametrize("text", ["work", "banking", "a", "0", "vm-1", "my_vm", "A" * 32])
def test_check_unit_name_accepts(text: str) -> None:
    v.check_unit_name(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("-vm", "starting with a letter or digit"),
        ("_vm", "starting with a letter or digit"),
        ("my vm", "ASCII letters"),
        ("my.vm", "ASCII letters"),
        ("my/vm", "ASCII letters"),
        ("vm@1", "ASCII letters"),
        ("caf\u00e9", "ASCII letters"),
        ("\u0661", "ASCII letters"),
        ("vm\n", "ASCII letters"),
        ("A" * 33, "longer than 32"),
    ],
)
def test_check_unit_name_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        v.check_unit_name(text)


@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}", fullmatch=True))
def test_check_unit_name_accepts_grammar(text: str) -> None:
    v.check_unit_name(text)


@pytest.mark.parametrize(
    "text", ["eth0", "vm-work0", "br.100", "x", "a" * 15, "veth_a-b.c", "0eth", "..."]
)
def test_check_interface_name_accepts(text: str) -> None:
    v.check_interface_name(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("a" * 16, "longer than 15"),
        (".", "must not be '.'"),
        ("..", r"must not be '\.\.'"),
        ("a/b", "'/'"),
        ("a:b", "':'"),
        ("a b", "' '"),
        ("a\tb", r"'\\t'"),
        ("eth%d", "'%'"),
        ("a\x00", "must not contain"),
        ("\u00e9th0", "must not contain"),
        ("123", "all digits"),
        ("eth0;id", "';'"),
        ("$(id)", "'\\$', '\\(', '\\)'"),
        ("eth`id`", "'`'"),
        ("eth0\n", r"'\\n'"),
        ('e"x', "'\"'"),
    ],
)
def test_check_interface_name_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        v.check_interface_name(text)


@given(st.text())
def test_check_interface_name_kernel_rules(text: str) -> None:
    # Whatever is accepted also satisfies the kernel's dev_valid_name().
    try:
        v.check_interface_name(text)
    except ValueError:
        return
    raw = text.encode()
    assert 1 <= len(raw) <= 15
    assert text not in (".", "..")
    assert not any(c.isspace() or c in "/:\x00" for c in text)
    # and no character a shell, a unit file or networkd reads specially
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in text)


@pytest.mark.parametrize("text", ["alice", "a", "_svc", "a.b-c_d", "a" * 31, "rooter", "1x"])
def test_check_user_name_accepts(text: str) -> None:
    v.check_user_name(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must name the account"),
        ("root", "must not run as root"),
        ("0", "is a number"),
        ("1000", "is a number"),
        ("a" * 32, "longer than 31"),
        ("-a", "invalid user name"),
        ("a b", "invalid user name"),
        ("alice\n", "invalid user name"),
        ("al:ice", "invalid user name"),
        ("\u00e9", "invalid user name"),
        (".", "invalid user name"),
    ],
)
def test_check_user_name_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        v.check_user_name(text)


# --------------------------------------------------------------------------------------------
# Kernel parameters


def test_kernel_cmdline_max() -> None:
    assert v.KERNEL_CMDLINE_MAX == 2047


@pytest.mark.parametrize(
    "text", ["quiet", "console=hvc0", "root=/dev/vda", 'dyndbg="file x.c +p"', "a" * 2047, "~"]
)
def test_check_kernel_param_accepts(text: str) -> None:
    v.check_kernel_param(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("a\tb", "printable ASCII"),
        ("a\nb", "printable ASCII"),
        ("a\x7f", "printable ASCII"),
        ("caf\u00e9", "printable ASCII"),
        ('foo="bar', "unbalanced double quote"),
        ("a" * 2048, "longer than the whole command line"),
        ("--gdb", "starts with '-', which crosvm reads as a flag"),
        ("-", "starts with '-'"),
    ],
)
def test_check_kernel_param_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        v.check_kernel_param(text)


@given(
    st.text(
        alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E).filter(lambda c: c != '"'),
        min_size=1,
        max_size=200,
    ).filter(lambda t: not t.startswith("-"))
)
def test_check_kernel_param_accepts_printable_ascii(text: str) -> None:
    v.check_kernel_param(text)
