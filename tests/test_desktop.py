"""Desktop entries: guest `.desktop` files read as a menu reads them, host copies that run the
program in its VM and that the real desktop-file-validate accepts."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmsilo_nix.render.desktop import find_entries, find_icon, render_host_entry
from vmsilo_nix.render.desktop_entry import (
    DesktopEntry,
    exec_argv,
    parse_desktop_entry,
    quote_exec,
    split_exec,
    split_list,
    unescape_string,
)

VM_RUN = "/nix/store/0000000000000000000000000000000a-vmsilo/bin/vm-run"

FIREFOX = r"""[Desktop Entry]
Version=1.0
Name=Firefox
Name[de]=Firefox-Browser
Name[pt_BR]=Navegador Firefox
GenericName=Web Browser
GenericName[de]=Webbrowser
Comment=Browse the World Wide Web
Comment[de]=Im Internet surfen
Keywords=Internet;WWW;Browser;Web;Explorer
Keywords[de]=Internet;WWW;Browser;Web;Explorer;Webseite;Site;surfen;online;
Exec=firefox --name firefox %U
Icon=firefox
Terminal=false
X-MultipleArgs=false
Type=Application
MimeType=text/html;text/xml;application/xhtml+xml;x-scheme-handler/http;x-scheme-handler/https;
StartupNotify=true
Categories=Network;WebBrowser;
StartupWMClass=firefox
Actions=new-window;new-private-window;profile-manager-window;

[Desktop Action new-window]
Name=Open a New Window
Name[de]=Neues Fenster
Exec=firefox --new-window %U

[Desktop Action new-private-window]
Name=Open a New Private Window
Exec=firefox --private-window %U
Type=Link
NoDisplay=true
"""

FIREFOX_ENTRY = DesktopEntry(
    name="Firefox",
    exec_line="firefox --name firefox %U",
    argv=("firefox", "--name", "firefox"),
    names={"de": "Firefox-Browser", "pt_BR": "Navegador Firefox"},
    generic_name="Web Browser",
    generic_names={"de": "Webbrowser"},
    comment="Browse the World Wide Web",
    comments={"de": "Im Internet surfen"},
    icon="firefox",
    categories=("Network", "WebBrowser"),
    keywords=("Internet", "WWW", "Browser", "Web", "Explorer"),
    localized_keywords={
        "de": (
            "Internet",
            "WWW",
            "Browser",
            "Web",
            "Explorer",
            "Webseite",
            "Site",
            "surfen",
            "online",
        )
    },
    terminal=False,
    mime_types=(
        "text/html",
        "text/xml",
        "application/xhtml+xml",
        "x-scheme-handler/http",
        "x-scheme-handler/https",
    ),
    startup_wm_class="firefox",
)


def entry_text(*lines: str) -> str:
    return "\n".join(["[Desktop Entry]", *lines]) + "\n"


def app(*lines: str) -> DesktopEntry:
    entry = parse_desktop_entry(entry_text("Type=Application", "Name=App", *lines))
    assert entry is not None
    return entry


# --- parsing -------------------------------------------------------------------------------


def test_firefox_entry_other_groups_ignored() -> None:
    assert parse_desktop_entry(FIREFOX) == FIREFOX_ENTRY


def test_groups_before_and_comments_blanks_bom_crlf() -> None:
    text = (
        "\ufeff# a comment\r\n[Desktop Action x]\r\nName=Not me\r\n\r\n"
        "[Desktop Entry]\r\n  Name = Spaced  \r\n# Name=commented\r\nType=Application\r\n"
        "Exec=app\r\nnot a key value line\r\n"
    )
    entry = parse_desktop_entry(text)
    assert entry is not None
    assert (entry.name, entry.argv) == ("Spaced", ("app",))


@pytest.mark.parametrize(
    ("exec_value", "argv"),
    [
        ("firefox %U", ("firefox",)),
        ("app %f %F %u %U %d %D %n %N %i %c %k %v %m", ("app",)),
        ("app --icon %i --caption %c", ("app", "--icon", "--caption")),
        ("app 100%% %%f", ("app", "100%", "%f")),
        ("app --url=%u x%fy", ("app", "--url=", "xy")),
        ('app "%f" "" x', ("app", "", "x")),
        ("app 50%", ("app", "50%")),
        # Quoting: spaces, escaped quotes, a literal backslash and dollar (the file holds
        # "\\\\" and "\\$": string unescaping comes first, then the Exec rules).
        (
            r'"/opt/My App/bin/app" --title "Say \\"hi\\"" --dir "C:\\\\Temp" "\\$HOME" a"b c"d',
            ("/opt/My App/bin/app", "--title", 'Say "hi"', "--dir", "C:\\Temp", "$HOME", "ab cd"),
        ),
        # What GLib (shell rules) also reads: single quotes and backslashes outside quotes.
        (
            r"sh -c 'exec app \"$1\"' sh my\\ file",
            ("sh", "-c", 'exec app \\"$1\\"', "sh", "my file"),
        ),
        ("  app   a\\tb  ", ("app", "a", "b")),
    ],
)
def test_exec_split_and_field_codes(exec_value: str, argv: tuple[str, ...]) -> None:
    entry = app(f"Exec={exec_value}")
    assert entry.argv == argv
    assert entry.exec_line == unescape_string(exec_value.strip())


@pytest.mark.parametrize(
    "lines",
    [
        ("Type=Application", "Name=A", "Exec=a", "NoDisplay=true"),
        ("Type=Application", "Name=A", "Exec=a", "Hidden=true"),
        ("Type=Application", "Name=A", "Exec=a", "NoDisplay=1"),
        ("Type=Link", "Name=A", "URL=https://example.org/"),
        ("Type=Link", "Name=A", "Exec=a"),
        ("Type=Directory", "Name=A"),
        ("Name=A", "Exec=a"),  # no Type
        ("Type=Application", "Name=A"),  # no Exec
        ("Type=Application", "Name=A", "Exec="),
        ("Type=Application", "Name=A", "Exec=%U"),  # nothing left to run
        ("Type=Application", "Name=A", 'Exec=a "unclosed'),
        ("Type=Application", "Exec=a"),  # no Name
    ],
)
def test_entries_a_menu_must_not_show(lines: tuple[str, ...]) -> None:
    assert parse_desktop_entry(entry_text(*lines)) is None


def test_not_a_desktop_entry() -> None:
    assert parse_desktop_entry("") is None
    assert parse_desktop_entry("[Desktop Action a]\nType=Application\nName=A\nExec=a\n") is None


def test_shown_when_flags_are_false() -> None:
    entry = app("Exec=a", "NoDisplay=false", "Hidden=false", "Terminal=true")
    assert entry.terminal is True


def test_escape_sequences_and_lists() -> None:
    entry = app(
        "Exec=a",
        r"Comment=\sTwo\nlines\tand\ra \\ backslash\x",
        r"GenericName[de]=Ein\sName",
        r"Keywords=a\;b;c\\;;d\s;",
        r"Categories=Office;Viewer",
        "StartupWMClass=org.example.App",
        "Icon=/opt/app/icon.png",
    )
    assert entry.comment == " Two\nlines\tand\ra \\ backslash\\x"
    assert entry.generic_names == {"de": "Ein Name"}
    assert entry.keywords == ("a;b", "c\\", "d ")
    assert entry.categories == ("Office", "Viewer")
    assert (entry.startup_wm_class, entry.icon) == ("org.example.App", "/opt/app/icon.png")
    assert split_list("") == ()
    assert split_list(";;") == ()


# --- writing -------------------------------------------------------------------------------


def test_firefox_host_entry() -> None:
    icon = "/nix/store/1111111111111111111111111111111a-firefox/share/icons/firefox.svg"
    name, text = render_host_entry("banking", "firefox.desktop", FIREFOX_ENTRY, VM_RUN, icon)
    assert name == "vmsilo-banking-firefox.desktop"
    assert text == (
        "[Desktop Entry]\n"
        "Type=Application\n"
        "Name=Firefox (banking)\n"
        "Name[de]=Firefox-Browser (banking)\n"
        "Name[pt_BR]=Navegador Firefox (banking)\n"
        "GenericName=Web Browser\n"
        "GenericName[de]=Webbrowser\n"
        "Comment=Browse the World Wide Web\n"
        "Comment[de]=Im Internet surfen\n"
        "Keywords=Internet;WWW;Browser;Web;Explorer;banking;\n"
        "Keywords[de]=Internet;WWW;Browser;Web;Explorer;Webseite;Site;surfen;online;banking;\n"
        f"Icon={icon}\n"
        f"Exec={VM_RUN} banking firefox --name firefox\n"
        "Terminal=false\n"
        "Categories=Network;WebBrowser;\n"
        "StartupWMClass=firefox\n"
        "X-Vmsilo-VM=banking\n"
    )


NASTY_ARGV = (
    "/opt/My App/bin/app",
    "",
    "100%",
    "%f",
    'say "hi"',
    "it's",
    "C:\\Temp\\",
    "$HOME",
    "`id`",
    "a;b|c&d>e<f~g*h?i#j(k)l",
    "tab\there",
    "new\nline",
    "cr\rhere",
    "ünïcödé ✓",
    "--opt=value",
)

# NASTY_ARGV as the host entry's Exec writes it: quoted where a reserved character or nothing
# is, `"`, `` ` ``, `$`, `\` escaped inside quotes, `%` doubled, then string escapes.
NASTY_EXEC = (
    '"/opt/My App/bin/app"',
    '""',
    "100%%",
    "%%f",
    r'"say \\"hi\\""',
    '"it\'s"',
    r'"C:\\\\Temp\\\\"',
    r'"\\$HOME"',
    r'"\\`id\\`"',
    '"a;b|c&d>e<f~g*h?i#j(k)l"',
    r'"tab\there"',
    r'"new\nline"',
    r"cr\rhere",
    '"ünïcödé ✓"',
    "--opt=value",
)


def test_exec_quoting_whole_text() -> None:
    entry = app(
        r"Comment=\sleading and trailing\s",
        "Exec=" + " ".join(NASTY_EXEC),
        "Categories=Utility;Screensaver;NotACategory;X-Custom;Utility;",
        "Keywords=one;work;",
        "Terminal=true",
        "MimeType=text/plain;",
        "TryExec=/run/current-system/sw/bin/app",
    )
    assert entry.argv == NASTY_ARGV
    name, text = render_host_entry("work", "org.example.App.desktop", entry, VM_RUN, None)
    assert name == "vmsilo-work-org.example.App.desktop"
    assert text == (
        "[Desktop Entry]\n"
        "Type=Application\n"
        "Name=App (work)\n"
        r"Comment=\sleading and trailing\s"
        "\n"
        "Keywords=one;work;\n"
        f"Exec={VM_RUN} work {' '.join(NASTY_EXEC)}\n"
        "Terminal=true\n"
        "Categories=Utility;X-Custom;\n"
        "X-Vmsilo-VM=work\n"
    )


def test_icon_falls_back_to_the_theme_name() -> None:
    _, text = render_host_entry("vault", "a.desktop", app("Exec=a", "Icon=keepassxc"), VM_RUN, None)
    assert "\nIcon=keepassxc\n" in text
    _, text = render_host_entry("vault", "a.desktop", app("Exec=a"), VM_RUN, None)
    assert "Icon=" not in text


def test_comment_equal_to_generic_name_is_dropped() -> None:
    entry = app("Exec=a", "GenericName=Editor", "Comment=editor", "Comment[de]=Bearbeiten")
    _, text = render_host_entry("work", "a.desktop", entry, VM_RUN, None)
    assert "\nComment=" not in text
    assert "\nComment[de]=Bearbeiten\n" in text


def test_host_file_name() -> None:
    name, _ = render_host_entry("work", "app", app("Exec=a"), VM_RUN, None)
    assert name == "vmsilo-work-app.desktop"
    with pytest.raises(ValueError, match="not a file name"):
        render_host_entry("work", "../x.desktop", app("Exec=a"), VM_RUN, None)


def test_rendering_is_deterministic() -> None:
    again = parse_desktop_entry(FIREFOX)
    assert again is not None
    first = render_host_entry("banking", "firefox.desktop", FIREFOX_ENTRY, VM_RUN, None)
    assert render_host_entry("banking", "firefox.desktop", again, VM_RUN, None) == first


ARG = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12)


@given(argv=st.lists(ARG, min_size=1, max_size=6), name=ARG.filter(str.strip))
def test_host_entries_run_exactly_the_guest_argv(argv: list[str], name: str) -> None:
    assert exec_argv(quote_exec(argv)) == tuple(argv)
    guest = DesktopEntry(name=name, exec_line="", argv=tuple(argv))
    _, text = render_host_entry("work", "a.desktop", guest, VM_RUN, None)
    host = parse_desktop_entry(text)
    assert host is not None
    assert host.argv == (VM_RUN, "work", *argv)
    assert host.name == f"{name} (work)"
    assert split_exec(host.exec_line)[:2] == [VM_RUN, "work"]


# --- the real desktop-file-validate ----------------------------------------------------------


def validate(paths: list[Path]) -> str:
    tool = shutil.which("desktop-file-validate")
    if tool is None:
        pytest.skip("desktop-file-validate is not installed (apt-get install desktop-file-utils)")
    result = subprocess.run([tool, *map(str, paths)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_rendered_entries_pass_desktop_file_validate(tmp_path: Path) -> None:
    entries = [
        ("firefox.desktop", FIREFOX_ENTRY),
        (
            "nasty.desktop",
            app(
                "Exec=" + " ".join(NASTY_EXEC),
                "Categories=Screensaver;NotACategory;Applet;",
                r"Name[sr@latin]=\s\\ ; \n",
                r"Comment=\sx\s",
                "Keywords=a\\;b;",
                "Terminal=true",
                "StartupWMClass=a b",
            ),
        ),
        ("plain", app("Exec=a")),
    ]
    paths = []
    for vm, icon in (("banking", "/nix/store/x/share/pixmaps/a.png"), ("net-2_x", None)):
        for file_name, entry in entries:
            name, text = render_host_entry(vm, file_name, entry, VM_RUN, icon)
            path = tmp_path / name
            path.write_text(text, encoding="utf-8")
            paths.append(path)
    # Not even a warning or a hint.
    assert validate(paths) == ""


# --- a package tree --------------------------------------------------------------------------


def touch(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_find_entries(tmp_path: Path) -> None:
    apps = tmp_path / "share" / "applications"
    touch(apps / "z-firefox.desktop", FIREFOX)
    touch(apps / "a-tool.desktop", entry_text("Type=Application", "Name=Tool", "Exec=tool %f"))
    touch(
        apps / "hidden.desktop", entry_text("Type=Application", "Name=H", "Exec=h", "Hidden=true")
    )
    touch(apps / "link.desktop", entry_text("Type=Link", "Name=L", "URL=https://example.org"))
    touch(apps / "notes.txt", entry_text("Type=Application", "Name=N", "Exec=n"))
    (apps / "latin1.desktop").write_bytes(b"[Desktop Entry]\nType=Application\nName=\xe9\nExec=x\n")
    (apps / "dir.desktop").mkdir()
    (apps / "dangling.desktop").symlink_to(tmp_path / "nowhere")
    (apps / "linked.desktop").symlink_to(apps / "a-tool.desktop")
    found = find_entries(tmp_path)
    assert [name for name, _ in found] == ["a-tool.desktop", "linked.desktop", "z-firefox.desktop"]
    assert found[0][1].argv == ("tool",)
    assert found[2][1] == FIREFOX_ENTRY
    assert find_entries(tmp_path / "no-such-package") == []
    assert find_entries(str(tmp_path / "share")) == []


def test_find_icon(tmp_path: Path) -> None:
    hicolor = tmp_path / "share" / "icons" / "hicolor"
    for size in ("16x16", "48x48", "256x256", "128x128@2", "32x32"):
        touch(hicolor / size / "apps" / "app.png")
    touch(hicolor / "256x256" / "apps" / "app.svg")
    touch(hicolor / "512x512" / "mimetypes" / "app.png")  # not an application icon
    touch(hicolor / "symbolic" / "apps" / "app.svg")  # not a size
    # 128x128@2 is 256 pixels; at equal size, SVG beats PNG and the plain directory wins.
    assert find_icon(tmp_path, "app") == str(hicolor / "256x256" / "apps" / "app.svg")
    touch(hicolor / "scalable" / "apps" / "app.svg")
    assert find_icon(tmp_path, "app") == str(hicolor / "scalable" / "apps" / "app.svg")
    assert find_icon(tmp_path, "app.png") == str(hicolor / "scalable" / "apps" / "app.svg")

    touch(hicolor / "16x16" / "apps" / "small.png")
    touch(hicolor / "24x24" / "apps" / "small.png")
    assert find_icon(tmp_path, "small") == str(hicolor / "24x24" / "apps" / "small.png")

    pixmaps = tmp_path / "share" / "pixmaps"
    touch(pixmaps / "old.xpm")
    touch(pixmaps / "old.png")
    touch(pixmaps / "old.extra.png")
    touch(pixmaps / "older.svg")
    assert find_icon(tmp_path, "old") == str(pixmaps / "old.png")
    touch(pixmaps / "gif.gif")
    assert find_icon(tmp_path, "gif") == str(pixmaps / "gif.gif")

    assert find_icon(tmp_path, "/usr/share/pixmaps/x.png") == "/usr/share/pixmaps/x.png"
    assert find_icon(tmp_path, "missing") is None
    assert find_icon(tmp_path, None) is None
    assert find_icon(tmp_path, "") is None
    assert find_icon(tmp_path, "../../../etc/passwd") is None
    assert find_icon(tmp_path / "no-such-package", "app") is None
