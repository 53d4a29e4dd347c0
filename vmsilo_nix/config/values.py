"""Parsers and validators for the scalar value formats used by vmsilo's NixOS options.

Every function here is pure and total over ``str``: it either returns a value or raises
``ValueError`` carrying a short message meant for people. The caller prefixes the option path
(see ``errors.Problem``), so messages never name the option themselves.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import re
from collections.abc import Mapping
from decimal import Decimal
from types import MappingProxyType
from typing import Final

__all__ = [
    "CSS_COLOURS",
    "INTERFACE_NAME_MAX",
    "KERNEL_CMDLINE_MAX",
    "UNIT_NAME_MAX",
    "USER_NAME_MAX",
    "check_interface_name",
    "check_kernel_param",
    "check_unit_name",
    "check_user_name",
    "derive_mac",
    "format_mac",
    "is_unicast",
    "nix_name_rules",
    "normalise_bdf",
    "parse_color",
    "parse_duration",
    "parse_interface_address",
    "parse_ip",
    "parse_mac",
    "parse_network",
    "parse_size",
    "sysfs_path",
]

_SHOW_MAX = 40


def _show(text: str) -> str:
    """Quote user input for an error message, shortening long values."""
    if len(text) > _SHOW_MAX:
        text = text[: _SHOW_MAX - 3] + "..."
    return repr(text)


# --------------------------------------------------------------------------------------------
# Sizes

# qemu-img reads image sizes as int64, so anything above this cannot be created.
_SIZE_MAX: Final = 2**63 - 1
_SIZE_UNITS: Final = {
    "k": 2**10,
    "m": 2**20,
    "g": 2**30,
    "t": 2**40,
    "p": 2**50,
    "e": 2**60,
}
_SIZE_RE: Final = re.compile(r"([0-9]+)(?:\.([0-9]+))?([kKmMgGtTpPeE]?)")
_SIZE_HINT: Final = (
    'expected a number of bytes or a number with a unit K, M, G, T, P or E, e.g. "20G"'
)


def parse_size(text: str) -> int:
    """Parse a size as qemu-img accepts it and return it in bytes.

    Forms: plain bytes ("4096") or a decimal number with a binary (1024-based) unit suffix,
    either case: k, m, g, t, p, e ("256m", "20G", "1.5G"). Fractional results are rounded down.
    Signs, whitespace, hexadecimal, a "B" suffix and fractional plain bytes are rejected.
    """
    m = _SIZE_RE.fullmatch(text)
    if m is None:
        if text.startswith("-") and _SIZE_RE.fullmatch(text[1:]):
            raise ValueError("size must be positive")
        raise ValueError(f"invalid size {_show(text)}: {_SIZE_HINT}")
    whole_digits, frac_digits, unit = m.group(1), m.group(2) or "", m.group(3)
    if frac_digits and not unit:
        raise ValueError(f"invalid size {_show(text)}: a fraction needs a unit, e.g. 1.5G")
    mul: int = _SIZE_UNITS[unit.lower()] if unit else 1
    whole_digits = whole_digits.lstrip("0")
    # 10**19 > _SIZE_MAX, so a longer integer part is too large whatever the unit; checking the
    # length first also keeps int() away from Python's limit on digits it will convert.
    if len(whole_digits) > 19:
        raise ValueError("size is too large")
    # Only the first log2(mul) <= 60 fractional digits can affect floor(fraction * mul): with
    # mul = 2**j, floor(f * 2**j / 10**k) == floor(f // 10**(k-j) / 5**j). Truncating to 60
    # digits is therefore exact for every unit.
    frac_digits = frac_digits[:60]
    scale = 10 ** len(frac_digits)
    numerator = int(whole_digits or "0") * scale + int(frac_digits or "0")
    size: int = numerator * mul // scale
    if size <= 0:
        raise ValueError("size must be positive")
    if size > _SIZE_MAX:
        raise ValueError("size is too large")
    return size


# --------------------------------------------------------------------------------------------
# Durations

_DURATION_UNITS: Final = {
    "ms": Decimal("0.001"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
}
_DURATION_RE: Final = re.compile(r"([0-9]+(?:\.[0-9]+)?)([a-z]*)")
_DURATION_HINT: Final = 'expected a number with a unit ms, s, m or h, e.g. "500ms" or "2s"'


def parse_duration(text: str) -> float:
    """Parse a duration such as "2s", "500ms", "1.5s", "1m" or "1h" and return seconds.

    A unit is required; zero and negative durations are rejected (they are never useful as
    intervals or timeouts).
    """
    m = _DURATION_RE.fullmatch(text)
    if m is None:
        if text.startswith("-") and _DURATION_RE.fullmatch(text[1:]):
            raise ValueError("duration must be positive")
        raise ValueError(f"invalid duration {_show(text)}: {_DURATION_HINT}")
    number, unit = m.group(1), m.group(2)
    if not unit:
        raise ValueError(f"duration {_show(text)} needs a unit: {_DURATION_HINT}")
    mul = _DURATION_UNITS.get(unit)
    if mul is None:
        raise ValueError(f"unknown unit {unit!r} in duration {_show(text)}: {_DURATION_HINT}")
    # Decimal parses any length of digits exactly; float() of a huge Decimal gives inf rather
    # than raising, and of a tiny one gives 0.0, so both ends are caught by the checks below.
    seconds = float(Decimal(number) * mul)
    if seconds == float("inf"):
        raise ValueError("duration is too large")
    if seconds <= 0.0:
        raise ValueError("duration must be positive")
    return seconds


# --------------------------------------------------------------------------------------------
# Colours

# The 148 CSS Color Module Level 4 named colours, as "name rrggbb" pairs.
_CSS_COLOUR_TABLE: Final = """
aliceblue f0f8ff antiquewhite faebd7 aqua 00ffff aquamarine 7fffd4 azure f0ffff
beige f5f5dc bisque ffe4c4 black 000000 blanchedalmond ffebcd blue 0000ff
blueviolet 8a2be2 brown a52a2a burlywood deb887 cadetblue 5f9ea0 chartreuse 7fff00
chocolate d2691e coral ff7f50 cornflowerblue 6495ed cornsilk fff8dc crimson dc143c
cyan 00ffff darkblue 00008b darkcyan 008b8b darkgoldenrod b8860b darkgray a9a9a9
darkgreen 006400 darkgrey a9a9a9 darkkhaki bdb76b darkmagenta 8b008b
darkolivegreen 556b2f darkorange ff8c00 darkorchid 9932cc darkred 8b0000
darksalmon e9967a darkseagreen 8fbc8f darkslateblue 483d8b darkslategray 2f4f4f
darkslategrey 2f4f4f darkturquoise 00ced1 darkviolet 9400d3 deeppink ff1493
deepskyblue 00bfff dimgray 696969 dimgrey 696969 dodgerblue 1e90ff firebrick b22222
floralwhite fffaf0 forestgreen 228b22 fuchsia ff00ff gainsboro dcdcdc ghostwhite f8f8ff
gold ffd700 goldenrod daa520 gray 808080 green 008000 greenyellow adff2f grey 808080
honeydew f0fff0 hotpink ff69b4 indianred cd5c5c indigo 4b0082 ivory fffff0 khaki f0e68c
lavender e6e6fa lavenderblush fff0f5 lawngreen 7cfc00 lemonchiffon fffacd
lightblue add8e6 lightcoral f08080 lightcyan e0ffff lightgoldenrodyellow fafad2
lightgray d3d3d3 lightgreen 90ee90 lightgrey d3d3d3 lightpink ffb6c1 lightsalmon ffa07a
lightseagreen 20b2aa lightskyblue 87cefa lightslategray 778899 lightslategrey 778899
lightsteelblue b0c4de lightyellow ffffe0 lime 00ff00 limegreen 32cd32 linen faf0e6
magenta ff00ff maroon 800000 mediumaquamarine 66cdaa mediumblue 0000cd
mediumorchid ba55d3 mediumpurple 9370db mediumseagreen 3cb371 mediumslateblue 7b68ee
mediumspringgreen 00fa9a mediumturquoise 48d1cc mediumvioletred c71585
midnightblue 191970 mintcream f5fffa mistyrose ffe4e1 moccasin ffe4b5
navajowhite ffdead navy 000080 oldlace fdf5e6 olive 808000 olivedrab 6b8e23
orange ffa500 orangered ff4500 orchid da70d6 palegoldenrod eee8aa palegreen 98fb98
paleturquoise afeeee palevioletred db7093 papayawhip ffefd5 peachpuff ffdab9
peru cd853f pink ffc0cb plum dda0dd powderblue b0e0e6 purple 800080
rebeccapurple 663399 red ff0000 rosybrown bc8f8f royalblue 4169e1 saddlebrown 8b4513
salmon fa8072 sandybrown f4a460 seagreen 2e8b57 seashell fff5ee sienna a0522d
silver c0c0c0 skyblue 87ceeb slateblue 6a5acd slategray 708090 slategrey 708090
snow fffafa springgreen 00ff7f steelblue 4682b4 tan d2b48c teal 008080 thistle d8bfd8
tomato ff6347 turquoise 40e0d0 violet ee82ee wheat f5deb3 white ffffff
whitesmoke f5f5f5 yellow ffff00 yellowgreen 9acd32
"""


def _rgb_from_hex(digits: str) -> tuple[int, int, int]:
    return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)


def _load_css_colours() -> dict[str, tuple[int, int, int]]:
    words = _CSS_COLOUR_TABLE.split()
    return {
        name: _rgb_from_hex(digits) for name, digits in zip(words[::2], words[1::2], strict=True)
    }


CSS_COLOURS: Final[Mapping[str, tuple[int, int, int]]] = MappingProxyType(_load_css_colours())
"""CSS named colours, lower-case name -> (r, g, b)."""

_HEX_COLOUR_RE: Final = re.compile(r"#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
_RGB_COLOUR_RE: Final = re.compile(
    r"rgb\( *([0-9]{1,3}) *, *([0-9]{1,3}) *, *([0-9]{1,3}) *\)", re.IGNORECASE
)
_COLOUR_HINT: Final = (
    'expected a CSS colour name (e.g. "red"), "#rgb", "#rrggbb" or "rgb(r, g, b)" '
    "with components 0..255"
)


def parse_color(text: str) -> tuple[int, int, int]:
    """Parse a colour into (r, g, b), each 0..255.

    Forms: a CSS named colour ("red", "RebeccaPurple"; case-insensitive), "#rgb", "#rrggbb"
    (hex digits in either case) or "rgb(255, 0, 0)" (spaces optional, components 0..255).
    """
    # isascii() first: str.lower() maps some non-ASCII letters (e.g. KELVIN SIGN) to ASCII ones.
    if text.isascii():
        named = CSS_COLOURS.get(text.lower())
        if named is not None:
            return named
    m = _HEX_COLOUR_RE.fullmatch(text)
    if m is not None:
        digits = m.group(1)
        if len(digits) == 3:
            digits = "".join(d * 2 for d in digits)
        return _rgb_from_hex(digits)
    m = _RGB_COLOUR_RE.fullmatch(text)
    if m is not None:
        r, g, b = (int(c) for c in m.groups())
        if max(r, g, b) > 255:
            raise ValueError(f"invalid colour {_show(text)}: rgb() components must be 0..255")
        return r, g, b
    raise ValueError(f"invalid colour {_show(text)}: {_COLOUR_HINT}")


# --------------------------------------------------------------------------------------------
# MAC addresses

_MAC_RE: Final = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}")
_MAC_HINT: Final = 'expected six hex pairs separated by ":", e.g. "02:00:00:00:00:01"'


def parse_mac(text: str) -> bytes:
    """Parse "aa:bb:cc:dd:ee:ff" (hex, either case) into six bytes."""
    if _MAC_RE.fullmatch(text) is None:
        if "-" in text:
            raise ValueError(f'invalid MAC address {_show(text)}: use ":" between pairs, not "-"')
        raise ValueError(f"invalid MAC address {_show(text)}: {_MAC_HINT}")
    return bytes.fromhex(text.replace(":", ""))


def _check_mac_bytes(mac: bytes) -> None:
    if len(mac) != 6:
        raise ValueError(f"a MAC address is 6 bytes, got {len(mac)}")


def is_unicast(mac: bytes) -> bool:
    """True when the I/G (multicast) bit, 0x01 of the first byte, is clear."""
    _check_mac_bytes(mac)
    return not mac[0] & 0x01


def format_mac(mac: bytes) -> str:
    """Format six bytes as lower-case "aa:bb:cc:dd:ee:ff"."""
    _check_mac_bytes(mac)
    return ":".join(f"{b:02x}" for b in mac)


@functools.lru_cache(maxsize=65536)  # the rules, the planner and the identity each derive it
def derive_mac(vm: str, interface: str) -> str:
    """Derive a stable MAC address for a VM's network interface.

    Derivation (keep it exactly like this: changing it changes every guest's MAC):

    1. ``digest = SHA1(("<vm>-<interface>").encode("utf-8"))``, e.g. for vm "work" and
       interface "eth0" the hashed text is ``work-eth0``;
    2. take ``digest[0:6]``;
    3. in the first byte, set bit 0x02 (locally administered) and clear bit 0x01 (multicast),
       i.e. ``b0 = (b0 | 0x02) & 0xFE``;
    4. format as lower-case colon-separated hex.

    The result is always a unicast, locally administered address.
    """
    try:
        data = f"{vm}-{interface}".encode()
    except UnicodeEncodeError:
        raise ValueError("VM and interface names must be valid Unicode text") from None
    raw = bytearray(hashlib.sha1(data).digest()[:6])
    raw[0] = (raw[0] | 0x02) & 0xFE
    return format_mac(bytes(raw))


# --------------------------------------------------------------------------------------------
# IP addresses

_EXAMPLE_INTERFACE: Final = {4: "10.0.0.1/24", 6: "fd00::1/64"}
_EXAMPLE_NETWORK: Final = {4: "0.0.0.0/0 or 10.0.0.0/24", 6: "::/0 or fd00::/64"}
_EXAMPLE_ADDRESS: Final = {4: "10.0.0.1", 6: "fd00::1"}
_PREFIX_RE: Final = re.compile(r"[0-9]{1,3}")


def _check_family(family: int) -> None:
    if family not in (4, 6):
        raise ValueError(f"IP family must be 4 or 6, not {family!r}")


def _split_prefix(text: str) -> tuple[str, str | None]:
    """Split "addr/prefix", insisting the prefix is a decimal length (not a netmask)."""
    addr, slash, prefix = text.partition("/")
    if not slash:
        return addr, None
    if _PREFIX_RE.fullmatch(prefix) is None:
        raise ValueError(f"invalid prefix length {_show(prefix)}: expected a number, e.g. /24")
    return addr, prefix


def _check_no_zone(text: str) -> None:
    if "%" in text:
        raise ValueError(f"invalid address {_show(text)}: zone (scope) ids are not supported")


# The form a configuration nearly always holds ("10.0.0.1", no leading zeros): read directly,
# at half the cost of ipaddress's parser; anything else takes ipaddress's way and its errors.
_PLAIN_IPV4: Final = re.compile(r"(?:0|[1-9][0-9]{0,2})(?:\.(?:0|[1-9][0-9]{0,2})){3}")


def _plain_ipv4(text: str) -> int | None:
    """The address as an integer when ``text`` is a canonical dotted quad, else None."""
    if _PLAIN_IPV4.fullmatch(text) is None:
        return None
    a, b, c, d = (int(o) for o in text.split("."))
    if a > 255 or b > 255 or c > 255 or d > 255:
        return None
    return (a << 24) | (b << 16) | (c << 8) | d


@functools.lru_cache(maxsize=65536)  # the rules and planners parse each address several times
def parse_interface_address(
    text: str, family: int
) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """Parse an interface address with its prefix length, e.g. "10.0.0.1/24" or "fd00::1/64".

    ``family`` is 4 or 6; an address of the other family, or one without "/prefix", is rejected.
    """
    _check_family(family)
    hint = f"expected an IPv{family} address with prefix, e.g. {_EXAMPLE_INTERFACE[family]}"
    _check_no_zone(text)
    addr, prefix = _split_prefix(text)
    if prefix is None:
        raise ValueError(f"{_show(text)} has no prefix length: {hint}")
    plain = _plain_ipv4(addr) if family == 4 else None
    if plain is not None and int(prefix) <= 32:
        return ipaddress.IPv4Interface((plain, int(prefix)))
    try:
        iface = ipaddress.ip_interface(f"{addr}/{prefix}")
    except ValueError:
        raise ValueError(f"invalid address {_show(text)}: {hint}") from None
    if iface.version != family:
        raise ValueError(f"{_show(text)} is an IPv{iface.version} address: {hint}")
    return iface


@functools.lru_cache(maxsize=65536)  # the rules and planners parse each address several times
def parse_network(text: str, family: int) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """Parse a route destination such as "0.0.0.0/0", "10.0.0.0/8" or "::/0".

    Without "/prefix" it is a host route (/32 or /128). Host bits must be clear: "10.0.0.1/24"
    is rejected with a hint naming the network it probably meant.
    """
    _check_family(family)
    hint = f"expected an IPv{family} network, e.g. {_EXAMPLE_NETWORK[family]}"
    _check_no_zone(text)
    addr, prefix = _split_prefix(text)
    spec = addr if prefix is None else f"{addr}/{prefix}"
    try:
        loose = ipaddress.ip_network(spec, strict=False)
    except ValueError:
        raise ValueError(f"invalid network {_show(text)}: {hint}") from None
    if loose.version != family:
        raise ValueError(f"{_show(text)} is an IPv{loose.version} network: {hint}")
    if loose.network_address != ipaddress.ip_address(addr):
        raise ValueError(f"{_show(text)} has host bits set; did you mean {loose}?")
    return loose


@functools.lru_cache(maxsize=65536)  # the rules and planners parse each address several times
def parse_ip(text: str, family: int | None = None) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """Parse a bare IP address (a gateway or nameserver), optionally requiring a family."""
    if family is not None:
        _check_family(family)
        hint = f"expected an IPv{family} address, e.g. {_EXAMPLE_ADDRESS[family]}"
    else:
        hint = "expected an IPv4 or IPv6 address, e.g. 10.0.0.1 or fd00::1"
    _check_no_zone(text)
    if "/" in text:
        raise ValueError(f"{_show(text)} has a prefix length; {hint}")
    plain = _plain_ipv4(text) if family != 6 else None
    if plain is not None:
        return ipaddress.IPv4Address(plain)
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(f"invalid address {_show(text)}: {hint}") from None
    if family is not None and addr.version != family:
        raise ValueError(f"{_show(text)} is an IPv{addr.version} address: {hint}")
    return addr


# --------------------------------------------------------------------------------------------
# PCI addresses

_SYSFS_PCI_DEVICES: Final = "/sys/bus/pci/devices/"
_BDF_RE: Final = re.compile(
    r"(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-9a-fA-F])"
)
_BDF_HINT: Final = 'expected a PCI address like "01:00.0" or "0000:01:00.0"'


def normalise_bdf(text: str) -> str:
    """Normalise a PCI address to lower-case "dddd:bb:dd.f".

    Accepts "bb:dd.f", "dddd:bb:dd.f" (hex, either case) and the sysfs path
    "/sys/bus/pci/devices/dddd:bb:dd.f". The device must be <= 0x1f and the function 0-7.
    """
    bdf = text.removeprefix(_SYSFS_PCI_DEVICES)
    m = _BDF_RE.fullmatch(bdf)
    if m is None:
        raise ValueError(f"invalid PCI address {_show(text)}: {_BDF_HINT}")
    domain, bus, device, function = m.group(1) or "0000", m.group(2), m.group(3), m.group(4)
    if int(device, 16) > 0x1F:
        raise ValueError(f"invalid PCI address {_show(text)}: device must be 00-1f")
    if int(function, 16) > 7:
        raise ValueError(f"invalid PCI address {_show(text)}: function must be 0-7")
    return f"{domain}:{bus}:{device}.{function}".lower()


def sysfs_path(bdf: str) -> str:
    """The sysfs directory of a PCI device, e.g. "/sys/bus/pci/devices/0000:01:00.0"."""
    return _SYSFS_PCI_DEVICES + normalise_bdf(bdf)


# --------------------------------------------------------------------------------------------
# Names

# A VM name ends up in systemd unit names ("vmsilo-<name>-....service", limit 255 bytes), in file
# names (limit 255 bytes) and as the prefix of network interface names (limit 15 bytes). No
# prefix-based scheme fits interface names anyway for long names, so whoever builds interface
# names must shorten or hash; 32 leaves plenty of room for unit/file prefixes and suffixes while
# keeping names readable in `systemctl` and `ip link` output.
UNIT_NAME_MAX: Final = 32
_UNIT_NAME_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def check_unit_name(text: str) -> None:
    """Check a VM name: 1..32 ASCII letters, digits, '-' or '_', starting with a letter/digit."""
    if not text:
        raise ValueError("name must not be empty")
    if _UNIT_NAME_RE.fullmatch(text) is None:
        raise ValueError(
            f"invalid name {_show(text)}: use ASCII letters, digits, '-' and '_', "
            "starting with a letter or digit"
        )
    if len(text) > UNIT_NAME_MAX:
        raise ValueError(f"name {_show(text)} is longer than {UNIT_NAME_MAX} characters")


# IFNAMSIZ is 16 including the terminating NUL.
INTERFACE_NAME_MAX: Final = 15
# Interface names reach root shell scripts (NixOS's NAT and firewall rules, the TAP scripts),
# systemd-networkd files and `ip` command lines, so only characters none of them treats
# specially are allowed. The patterns below are also POSIX extended regular expressions, which
# the NixOS module matches with builtins.match (see ``nix_name_rules``).
INTERFACE_NAME_CHARS: Final = "A-Za-z0-9._-"
_INTERFACE_NAME_RE: Final = re.compile(f"[{INTERFACE_NAME_CHARS}]+")


def check_interface_name(text: str) -> None:
    """Check a Linux network interface name.

    1..15 (IFNAMSIZ - 1) ASCII letters, digits, '.', '_' and '-'; not "." or ".." and not all
    digits (the kernel refuses the first two, and a number reads as an interface index). That is
    stricter than the kernel's dev_valid_name, which allows shell metacharacters.
    """
    if not text:
        raise ValueError("interface name must not be empty")
    if len(text) > INTERFACE_NAME_MAX:
        raise ValueError(
            f"interface name {_show(text)} is longer than {INTERFACE_NAME_MAX} characters"
        )
    if text in (".", ".."):
        raise ValueError(f"interface name must not be {text!r}")
    if _INTERFACE_NAME_RE.fullmatch(text) is None:
        bad = sorted({c for c in text if _INTERFACE_NAME_RE.fullmatch(c) is None})
        shown = ", ".join(repr(c) for c in bad[:5])
        raise ValueError(
            f"invalid interface name {_show(text)}: must not contain {shown} "
            "(only ASCII letters, digits, '.', '_' and '-')"
        )
    if text.isdigit():
        raise ValueError(f"interface name {_show(text)} must not be all digits")


# NixOS refuses user names longer than 31 characters and those outside this pattern (shadow's
# is_valid_name, in nixos/modules/config/users-groups.nix). A number would be read by systemd's
# User= as a UID, so all-digit names are refused too; and the VMs never run as root.
USER_NAME_MAX: Final = 31
_USER_NAME_RE: Final = re.compile(r"[a-zA-Z0-9_.][a-zA-Z0-9_.-]*")


def check_user_name(text: str) -> None:
    """Check the host account that runs the VMs: a name NixOS accepts, not root, not a number."""
    if not text.strip():
        raise ValueError("must name the account that runs the VMs")
    if _USER_NAME_RE.fullmatch(text) is None or text in (".", ".."):
        raise ValueError(
            f"invalid user name {_show(text)}: NixOS accepts ASCII letters, digits, '_', '.' "
            "and '-' (not first)"
        )
    if len(text) > USER_NAME_MAX:
        raise ValueError(f"user name {_show(text)} is longer than {USER_NAME_MAX} characters")
    if text.isdigit():
        raise ValueError(f"user name {_show(text)} is a number, which systemd reads as a UID")
    if text == "root":
        raise ValueError("the VMs must not run as root; name an unprivileged account")


def nix_name_rules() -> dict[str, dict[str, object]]:
    """The name rules above as data for the NixOS module (nix/names.json), which checks the
    values it hands to NixOS options itself, at evaluation time, before anything renders them.
    Each rule: ``pattern`` the whole name must match (POSIX ERE, as builtins.match reads it),
    ``refused`` patterns it must not match, and ``hint`` for the assertion message."""
    return {
        "interface": {
            "pattern": f"[{INTERFACE_NAME_CHARS}]{{1,{INTERFACE_NAME_MAX}}}",
            "refused": ["[.]", "[.][.]", "[0-9]+"],
            "hint": (
                f"must be 1 to {INTERFACE_NAME_MAX} ASCII letters, digits, '.', '_' and '-' "
                "(not '.', '..' or all digits)"
            ),
        },
        "user": {
            "pattern": f"[a-zA-Z0-9_.][a-zA-Z0-9_.-]{{0,{USER_NAME_MAX - 1}}}",
            "refused": ["root", "[.]", "[.][.]", "[0-9]+"],
            "hint": (
                "must be a user name NixOS accepts (ASCII letters, digits, '_', '.' and '-', "
                f"at most {USER_NAME_MAX}), not a number and not root"
            ),
        },
        "vm": {
            "pattern": f"[A-Za-z0-9][A-Za-z0-9_-]{{0,{UNIT_NAME_MAX - 1}}}",
            "refused": [],
            "hint": (
                f"must be 1 to {UNIT_NAME_MAX} ASCII letters, digits, '-' and '_', starting "
                "with a letter or digit"
            ),
        },
        "pci": {
            "pattern": (
                "(/sys/bus/pci/devices/)?([0-9a-fA-F]{4}:)?[0-9a-fA-F]{2}:[0-9a-fA-F]{2}[.][0-7]"
            ),
            "refused": [],
            "hint": 'must be a PCI address like "01:00.0" or "0000:01:00.0"',
        },
    }


# --------------------------------------------------------------------------------------------
# Kernel command line

# x86 COMMAND_LINE_SIZE is 2048 including the terminating NUL.
KERNEL_CMDLINE_MAX: Final = 2047


_NOT_PRINTABLE_ASCII: Final = re.compile(r"[^ -~]")


def check_kernel_param(text: str) -> None:
    """Check one kernel command-line parameter, e.g. "console=hvc0" or 'foo="a b"'.

    Printable ASCII only (0x20..0x7e), not blank, not starting with '-' (crosvm would read it
    as one of its own flags), balanced double quotes (an unbalanced quote would swallow the rest
    of the command line) and no longer than the whole command line.
    """
    if not text.strip(" "):
        raise ValueError("kernel parameter must not be empty")
    if text.startswith("-"):
        raise ValueError(
            f"kernel parameter {_show(text)} starts with '-', which crosvm reads as a flag"
        )
    bad = sorted(set(_NOT_PRINTABLE_ASCII.findall(text)))
    if bad:
        shown = ", ".join(repr(c) for c in bad[:5])
        raise ValueError(
            f"kernel parameter {_show(text)} contains {shown}: only printable ASCII is allowed"
        )
    if text.count('"') % 2:
        raise ValueError(f"kernel parameter {_show(text)} has an unbalanced double quote")
    if len(text) > KERNEL_CMDLINE_MAX:
        raise ValueError(
            f"kernel parameter is longer than the whole command line ({KERNEL_CMDLINE_MAX} bytes)"
        )
