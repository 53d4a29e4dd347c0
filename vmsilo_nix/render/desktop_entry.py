"""The Desktop Entry Specification as vmsilo reads and writes it: syntax only, no policy.

Reading: only the `[Desktop Entry]` group; string values unescape `\\s \\n \\t \\r \\\\`; lists
are `;`-separated with `\\;` for a literal semicolon. Exec is unquoted as GLib does it (the
spec's double quotes, plus the shell's single quotes and backslashes, which real entries use).
Writing is strict: only what `desktop-file-validate` accepts, and the same entry always gives
the same bytes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

import attrs

from vmsilo_nix.assignments import split_assignment

GROUP = "Desktop Entry"
SUFFIX = ".desktop"

# `Key` or `Key[locale]`; the locale is lang_COUNTRY.ENCODING@MODIFIER, any part optional.
_KEY = re.compile(r"([A-Za-z0-9-]+)(?:\[([A-Za-z0-9_.@-]+)\])?")
_STRING_ESCAPES = {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}
_BLANK = " \t\r"
_ESCAPE = re.compile(r"\\(.?)", re.DOTALL)
_LIST_TOKEN = re.compile(r"\\(.?)|;|[^\\;]+", re.DOTALL)
# Characters that oblige an Exec argument to be quoted; inside double quotes the last four
# must be escaped with a backslash.
_EXEC_RESERVED = frozenset(" \t\n\"'\\><~|&;$*?#()`")
_EXEC_ESCAPED_IN_QUOTES = frozenset('"`$\\')

# Categories desktop-file-validate (0.26, Desktop Menu Specification 1.1) accepts without
# OnlyShowIn; anything else, except X- extensions, is an error there, so it is not copied.
_CATEGORY_NAMES = """
    AudioVideo Audio Video Development Education Game Graphics Network Office Science Settings
    System Utility Building Debugger IDE GUIDesigner Profiling RevisionControl Translation
    Calendar ContactManagement Database Dictionary Chart Email Finance FlowChart PDA
    ProjectManagement Presentation Spreadsheet WordProcessor 2DGraphics VectorGraphics
    RasterGraphics 3DGraphics Scanning OCR Photography Publishing Viewer TextTools
    DesktopSettings HardwareSettings Printing PackageManager Dialup InstantMessaging Chat
    IRCClient Feed FileTransfer HamRadio News P2P RemoteAccess Telephony TelephonyTools
    VideoConference WebBrowser WebDevelopment Midi Mixer Sequencer Tuner TV AudioVideoEditing
    Player Recorder DiscBurning ActionGame AdventureGame ArcadeGame BoardGame BlocksGame
    CardGame KidsGame LogicGame RolePlaying Shooter Simulation SportsGame StrategyGame Art
    Construction Music Languages ArtificialIntelligence Astronomy Biology Chemistry
    ComputerScience DataVisualization Economy Electricity Geography Geology Geoscience History
    Humanities ImageProcessing Literature Maps Math NumericalAnalysis MedicalSoftware Physics
    Robotics Spirituality Sports ParallelComputing Amusement Archiving Compression Electronics
    Emulator Engineering FileTools FileManager TerminalEmulator Filesystem Monitor Security
    Accessibility Calculator Clock TextEditor Documentation Adult Core KDE GNOME XFCE GTK Qt
    Motif Java ConsoleOnly
"""
REGISTERED_CATEGORIES = frozenset(_CATEGORY_NAMES.split())


class ExecSyntaxError(ValueError):
    """An Exec value that cannot be split into arguments (an unclosed quote)."""


@attrs.frozen(kw_only=True)
class DesktopEntry:
    """The parts of an application's `[Desktop Entry]` group that matter to a host menu.

    Localized values are keyed by the locale written in the key (`Name[pt_BR]` -> "pt_BR").
    """

    name: str
    exec_line: str  # the Exec value, unescaped, with its quoting and field codes
    argv: tuple[str, ...]  # Exec split into arguments, field codes dropped; never empty
    names: Mapping[str, str] = attrs.field(factory=dict)
    generic_name: str | None = None
    generic_names: Mapping[str, str] = attrs.field(factory=dict)
    comment: str | None = None
    comments: Mapping[str, str] = attrs.field(factory=dict)
    icon: str | None = None
    categories: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    localized_keywords: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)
    terminal: bool = False
    mime_types: tuple[str, ...] = ()
    startup_wm_class: str | None = None


# --- reading -------------------------------------------------------------------------------


def parse_groups(text: str) -> dict[str, dict[str, str]]:
    """Raw key=value pairs by group. Comments, blank lines, lines outside a group and lines
    that are not `key=value` are skipped; a repeated group adds to the first, a repeated key
    keeps its last value."""
    groups: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    # Lines end at "\n" only: other line breaks (U+2028, ...) may be part of a value.
    for raw in text.removeprefix("\ufeff").split("\n"):
        line = raw.strip(_BLANK)
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = groups.setdefault(line[1:-1], {})
            continue
        key, value = split_assignment(line)
        if current is not None and value is not None:
            current[key.rstrip(_BLANK)] = value.lstrip(_BLANK)
    return groups


def unescape_string(value: str) -> str:
    """A string value with `\\s \\n \\t \\r \\\\` replaced; other backslashes are kept."""
    if "\\" not in value:
        return value
    return _ESCAPE.sub(lambda m: _STRING_ESCAPES.get(m[1], m[0]), value)


def split_list(value: str) -> tuple[str, ...]:
    """A `;`-separated list value (trailing `;` optional, `\\;` a literal `;`), unescaped;
    empty items are dropped."""
    items: list[str] = []
    current: list[str] = []
    for m in _LIST_TOKEN.finditer(value):
        token = m[0]
        if token == ";":
            items.append("".join(current))
            current = []
        elif token.startswith("\\"):
            current.append(";" if m[1] == ";" else _STRING_ESCAPES.get(m[1], token))
        else:
            current.append(token)
    items.append("".join(current))
    return tuple(item for item in items if item)


def split_exec(value: str) -> list[str]:
    """The arguments of an (unescaped) Exec value, quoting removed, field codes untouched.

    Double quotes as the spec has them (a backslash escapes `"`, `` ` ``, `$` and `\\`
    inside); like GLib, also single quotes and a backslash outside quotes, as in the shell.
    """
    args: list[str] = []
    current: list[str] = []
    in_arg = False
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if c in " \t\n":
            if in_arg:
                args.append("".join(current))
                current, in_arg = [], False
        elif c in "\"'":
            in_arg = True
            end = i + 1
            while end < n and value[end] != c:
                if c == '"' and value[end] == "\\" and value[end + 1 : end + 2] != "":
                    nxt = value[end + 1]
                    current.append(nxt if nxt in _EXEC_ESCAPED_IN_QUOTES else "\\" + nxt)
                    end += 2
                    continue
                current.append(value[end])
                end += 1
            if end >= n:
                raise ExecSyntaxError(f"unclosed {c} quote in Exec value {value!r}")
            i = end
        elif c == "\\" and i + 1 < n:
            in_arg = True
            current.append(value[i + 1])
            i += 1
        else:
            in_arg = True
            current.append(c)
        i += 1
    if in_arg:
        args.append("".join(current))
    return args


def strip_field_codes(args: Iterable[str]) -> tuple[str, ...]:
    """Arguments with every field code (`%f`, `%U`, `%i`, ...) removed and `%%` made `%`.

    An argument that field codes alone made up (`%U`) disappears, as when a launcher starts
    the program with no files; one with other text keeps it (`--name=%c` -> `--name=`).
    """
    out: list[str] = []
    for arg in args:
        if "%" not in arg:
            out.append(arg)
            continue
        text: list[str] = []
        had_code = False
        i = 0
        while i < len(arg):
            if arg[i] == "%" and i + 1 < len(arg):
                if arg[i + 1] == "%":
                    text.append("%")
                else:
                    had_code = True
                i += 2
            else:
                text.append(arg[i])
                i += 1
        if text or not had_code:
            out.append("".join(text))
    return tuple(out)


def exec_argv(value: str) -> tuple[str, ...]:
    """An (unescaped) Exec value as the argv a launcher given no files would run."""
    return strip_field_codes(split_exec(value))


def _boolean(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("true", "1")


def parse_desktop_entry(text: str) -> DesktopEntry | None:
    """The application a `.desktop` file describes, or None when a menu must not show it:
    no `[Desktop Entry]` group, a Type other than Application, NoDisplay or Hidden set, no
    Name, or no runnable Exec (missing, empty or badly quoted)."""
    group = parse_groups(text).get(GROUP)
    if group is None:
        return None
    plain: dict[str, str] = {}
    localized: dict[str, dict[str, str]] = {}
    for key, value in group.items():
        m = _KEY.fullmatch(key)
        if m is None:
            continue
        if m[2] is None:
            plain[m[1]] = value
        else:
            localized.setdefault(m[1], {})[m[2]] = value
    if plain.get("Type") != "Application":
        return None
    if _boolean(plain.get("NoDisplay")) or _boolean(plain.get("Hidden")):
        return None
    name = unescape_string(plain.get("Name", ""))
    exec_line = unescape_string(plain.get("Exec", ""))
    try:
        argv = exec_argv(exec_line)
    except ExecSyntaxError:
        return None
    if not name or not argv:
        return None

    def opt(key: str) -> str | None:
        value = plain.get(key)
        return unescape_string(value) if value else None

    def loc(key: str) -> dict[str, str]:
        found = localized.get(key, {})
        return {lang: unescape_string(v) for lang, v in sorted(found.items()) if v}

    return DesktopEntry(
        name=name,
        exec_line=exec_line,
        argv=argv,
        names=loc("Name"),
        generic_name=opt("GenericName"),
        generic_names=loc("GenericName"),
        comment=opt("Comment"),
        comments=loc("Comment"),
        icon=opt("Icon"),
        categories=split_list(plain.get("Categories", "")),
        keywords=split_list(plain.get("Keywords", "")),
        localized_keywords={
            lang: split_list(v) for lang, v in sorted(localized.get("Keywords", {}).items())
        },
        terminal=_boolean(plain.get("Terminal")),
        mime_types=split_list(plain.get("MimeType", "")),
        startup_wm_class=opt("StartupWMClass"),
    )


# --- writing -------------------------------------------------------------------------------


def escape_string(value: str) -> str:
    """A string as a Desktop Entry value: backslash, newline, tab and carriage return escaped,
    and a leading or trailing space written `\\s` (readers strip blanks around values)."""
    out = value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    if out.startswith(" "):
        out = "\\s" + out[1:]
    if out.endswith(" "):
        out = out[:-1] + "\\s"
    return out


def escape_list(items: Iterable[str]) -> str:
    """A list value: each item escaped, `;` in an item as `\\;`, each item ended by `;`."""
    return "".join(escape_string(item).replace(";", "\\;") + ";" for item in items)


def quote_exec_arg(arg: str) -> str:
    """One Exec argument per the spec's quoting rules (before string escaping): double quotes
    around an empty argument or one with a reserved character, a backslash before `"`, `` ` ``,
    `$` and `\\` inside them, and every `%` doubled so that none is read as a field code."""
    if arg and not any(c in _EXEC_RESERVED for c in arg):
        return arg.replace("%", "%%")
    inner = "".join("\\" + c if c in _EXEC_ESCAPED_IN_QUOTES else c for c in arg)
    return '"' + inner.replace("%", "%%") + '"'


def quote_exec(argv: Sequence[str]) -> str:
    """An Exec value (before string escaping) that runs exactly `argv`: the inverse of
    `exec_argv`."""
    return " ".join(quote_exec_arg(arg) for arg in argv)
