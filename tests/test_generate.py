"""The generated tree: every file checked by the real tools, deterministic, written whole."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vmsilo_nix.config.artifacts import Artifacts, load_artifacts
from vmsilo_nix.facts import MANIFEST
from vmsilo_nix.pipeline import check
from vmsilo_nix.plan.host import plan
from vmsilo_nix.render.generate import build_tree
from vmsilo_nix.render.tree import File, Link, TreeError, read_tree, write_tree

from .conftest import EXAMPLES, ROOT, Result

ARTIFACTS = load_artifacts(json.loads((ROOT / "tests/golden/desktop-artifacts.json").read_text()))
FIREFOX = """[Desktop Entry]
Type=Application
Name=Firefox
Name[de]=Firefox Webbrowser
GenericName=Web Browser
Exec=firefox --name firefox %U
Icon=firefox
Categories=Network;WebBrowser;
MimeType=text/html;
"""


def guest_package(root: Path) -> str:
    pkg = root / "nix-store" / "abc-firefox-140"
    if pkg.exists():
        return str(pkg)
    (pkg / "share/applications").mkdir(parents=True)
    (pkg / "share/applications/firefox.desktop").write_text(FIREFOX)
    (pkg / "share/icons/hicolor/scalable/apps").mkdir(parents=True)
    (pkg / "share/icons/hicolor/scalable/apps/firefox.svg").write_text("<svg/>")
    (pkg / "bin").mkdir()
    (pkg / "bin/firefox").write_text("#!/bin/sh\n")
    return str(pkg)


def desktop_config(tmp: Path, user: str = "alice") -> Any:
    raw = json.loads((EXAMPLES / "desktop.json").read_text())
    raw["user"] = user
    raw["nixosVms"][0]["guestPrograms"] = [guest_package(tmp)]
    return check(raw)


def tree_for(
    tmp: Path, artifacts: Artifacts = ARTIFACTS, user: str = "alice"
) -> dict[str, File | Link]:
    config = desktop_config(tmp, user)
    return dict(build_tree(config, plan(config, artifacts), artifacts))


def test_layout(tmp_path: Path) -> None:
    tree = tree_for(tmp_path)
    assert sorted(p for p in tree if p.startswith("bin/")) == [
        "bin/vm-run",
        "bin/vm-shell",
        "bin/vm-start",
        "bin/vm-status",
        "bin/vm-stop",
    ]
    for vm in ("banking", "work", "vault", "net"):
        assert f"libexec/vmsilo/{vm}/launch" in tree
    # only VMs whose GPU carries Wayland have a proxy
    assert sorted(p for p in tree if p.endswith("wayland-proxy")) == [
        "libexec/vmsilo/banking/wayland-proxy",
        "libexec/vmsilo/work/wayland-proxy",
    ]
    assert "share/applications/vmsilo-banking-firefox.desktop" in tree
    assert tree["share/bash-completion/completions/vm-stop"] == Link("vm-run")
    assert "share/vmsilo/guest/banking/network/10-vmsilo-wan.network" in tree
    for path, entry in tree.items():
        if isinstance(entry, File):
            executable = path.startswith(("bin/", "libexec/"))
            assert entry.mode == (0o755 if executable else 0o644), path


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_every_script_passes_shellcheck_and_bash_n(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_tree(out, tree_for(tmp_path))
    scripts = sorted(str(p) for p in (out / "bin").iterdir()) + sorted(
        str(p) for p in (out / "libexec").rglob("*") if p.is_file()
    )
    scripts.append(str(out / "share/bash-completion/completions/vm-run"))
    # 5 commands, 4 launchers, 2 Wayland proxies, 3 VMs' taps-up and taps-down, 2 daemons,
    # the completion
    assert len(scripts) == 5 + 4 + 2 + 3 * 2 + 2 + 1
    for script in scripts:
        subprocess.run(["bash", "-n", script], check=True)
    result = subprocess.run(
        ["shellcheck", "-s", "bash", *scripts], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout


@pytest.mark.skipif(
    shutil.which("desktop-file-validate") is None, reason="desktop-file-utils not installed"
)
def test_desktop_files_validate(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_tree(out, tree_for(tmp_path))
    files = sorted((out / "share/applications").iterdir())
    assert [f.name for f in files] == ["vmsilo-banking-firefox.desktop"]
    result = subprocess.run(
        ["desktop-file-validate", *map(str, files)], check=False, capture_output=True, text=True
    )
    assert result.returncode == 0 and result.stdout == "", result.stdout
    text = files[0].read_text()
    assert "Exec=vm-run banking firefox --name firefox\n" in text
    assert "Name=Firefox (banking)\n" in text


def test_generation_is_deterministic_and_unchanged_writes_nothing(tmp_path: Path) -> None:
    first, second = tree_for(tmp_path), tree_for(tmp_path)
    assert first == second
    out = tmp_path / "out"
    assert write_tree(out, first) is True
    before = {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in out.rglob("*")}
    assert write_tree(out, second) is False
    after = {p: (p.stat().st_mtime_ns, p.stat().st_ino) for p in out.rglob("*")}
    assert before == after
    assert read_tree(out) == first


def test_changed_config_replaces_the_tree(tmp_path: Path) -> None:
    out = tmp_path / "out"
    write_tree(out, {"a": File(b"1"), "old/b": File(b"2")})
    assert write_tree(out, {"a": File(b"3", 0o755)}) is True
    assert read_tree(out) == {"a": File(b"3", 0o755)}
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "out"]  # nothing else


CRASH = """
import os, signal, sys
from pathlib import Path
from vmsilo_nix.render import tree
written = 0
real_open = os.open
def dying_open(*args, **kwargs):
    global written
    written += 1
    if written == int(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)   # a crash, not an exception: no cleanup runs
    return real_open(*args, **kwargs)
os.open = dying_open
if sys.argv[3] == "no-exchange":
    tree._exchange = lambda a, b: False
    real_rename = os.rename
    def dying_rename(a, b):
        real_rename(a, b)
        if ".old-" in str(b):
            os.kill(os.getpid(), signal.SIGKILL)  # between the two renames of the fallback
    os.rename = dying_rename
    os.open = real_open
tree.write_tree(Path(sys.argv[1]), {f"f{i}": tree.File(b"new") for i in range(50)})
"""


@pytest.mark.parametrize("how", ["exchange", "no-exchange"])
def test_a_crash_midway_leaves_the_previous_tree(tmp_path: Path, how: str) -> None:
    out = tmp_path / "out"
    previous = {f"f{i}": File(b"old") for i in range(10)}
    write_tree(out, previous)
    proc = subprocess.run(
        [sys.executable, "-c", CRASH, str(out), "20", how],
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == -9
    if how == "exchange":
        assert read_tree(out) == previous
    # the next run recovers whatever the crash left, and succeeds
    new = {"g": File(b"x")}
    assert write_tree(out, new) is True
    assert read_tree(out) == new
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "out"]


def test_fallback_recovery_restores_the_previous_tree(tmp_path: Path) -> None:
    out = tmp_path / "out"
    previous = {"f": File(b"old")}
    write_tree(out, previous)
    proc = subprocess.run(
        [sys.executable, "-c", CRASH, str(out), "0", "no-exchange"],
        check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == -9
    assert not out.exists()  # killed between moving the old tree aside and moving the new in
    assert write_tree(out, previous) is False  # recovery puts the old tree back: nothing to do
    assert read_tree(out) == previous


def test_refuses_a_non_directory(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(TreeError, match="is not a directory"):
        write_tree(target, {})


def test_refuses_a_directory_it_did_not_write_and_names_its_files(tmp_path: Path) -> None:
    out = tmp_path / "home"
    out.mkdir()
    (out / "thesis.tex").write_text("years of work")
    (out / "photos").mkdir()
    with pytest.raises(TreeError, match=r"holds no share/vmsilo/manifest.json") as caught:
        write_tree(out, tree_for(tmp_path), marker=MANIFEST)
    assert "found photos/, thesis.tex" in str(caught.value)
    assert (out / "thesis.tex").read_text() == "years of work"
    assert sorted(p.name for p in out.iterdir()) == ["photos", "thesis.tex"]


def test_replaces_an_empty_directory_and_its_own_tree(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    first = tree_for(tmp_path)
    assert write_tree(out, first, marker=MANIFEST) is True
    (out / "stray").write_text("x")  # beside a manifest: the tree is ours, stray files go
    assert write_tree(out, first, marker=MANIFEST) is True
    assert read_tree(out) == first


def test_cli_refuses_a_foreign_directory(tmp_path: Path, run: Callable[..., Result]) -> None:
    out = tmp_path / "docs"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    r = run("generate", "--file", str(EXAMPLES / "desktop.json"), "--out", str(out))
    assert r.code == 5  # the output's code, not 3 (the configuration could not be read)
    assert "refusing to replace it (found notes.txt)" in r.err
    assert "wrote" not in r.out
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def read_only(directory: Path, *argv: str) -> list[str]:
    """``argv`` run where ``directory`` cannot be written: its mode says so, and root (whom
    modes do not stop) gets a private mount namespace with ``directory`` bind-mounted read-only."""
    directory.chmod(0o555)
    if os.geteuid() != 0:
        return list(argv)
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        script,
        str(directory),
        *argv,
    ]


@pytest.mark.skipif(
    os.geteuid() == 0 and shutil.which("unshare") is None, reason="root needs unshare (util-linux)"
)
@pytest.mark.parametrize("command", ["generate", "options", "facts"])
def test_a_write_failure_exits_5_and_says_what_it_could_not_write(
    tmp_path: Path, command: str
) -> None:
    parent = tmp_path / "locked"
    parent.mkdir()
    out = parent / "out"
    words = {
        "generate": ["generate", "--file", str(EXAMPLES / "desktop.json"), "--out", str(out)],
        "options": ["options", "--format", "nix", "-o", str(out)],
        "facts": ["facts", "-o", str(out)],
    }[command]
    argv = read_only(
        parent, sys.executable, "-m", "vmsilo_nix", "--option", "substituters", "", *words
    )
    try:
        proc = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=120)
    finally:
        parent.chmod(0o755)
    assert proc.returncode == 5, proc.stderr
    assert f"error: cannot write {out}" in proc.stderr
    assert "Read-only file system" in proc.stderr or "Permission denied" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert list(parent.iterdir()) == []  # nothing half-written: no lock, no temporary


# Writes a tree of many files, each write slowed down, so that concurrent runs overlap.
SLOW_WRITER = """
import sys, time
from pathlib import Path
from vmsilo_nix.render import tree
real_write = tree._write
def slow_write(root, entries):
    print("writing", flush=True)
    time.sleep(float(sys.argv[3]))
    real_write(root, entries)
tree._write = slow_write
files = {f"bin/f{i}": tree.File(sys.argv[2].encode()) for i in range(30)}
files["share/vmsilo/manifest.json"] = tree.File(b"{}")
waited = []
changed = tree.write_tree(Path(sys.argv[1]), files, marker="share/vmsilo/manifest.json",
                          on_wait=lambda: waited.append(1))
print("waited" if waited else "first", changed, flush=True)
"""


def _writer(out: Path, content: str, delay: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, str(out), content, str(delay)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_concurrent_runs_take_turns_and_leave_a_whole_tree(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = _writer(out, "one", 1.0)
    assert first.stdout is not None
    assert first.stdout.readline() == "writing\n"  # holds the lock now
    second = _writer(out, "two", 0.0)
    out_first, _ = first.communicate(timeout=30)
    out_second, _ = second.communicate(timeout=30)
    assert (first.returncode, second.returncode) == (0, 0)
    assert out_first.splitlines() == ["first True"]
    assert out_second.splitlines() == ["writing", "waited True"]  # it waited, then wrote
    on_disk = read_tree(out)
    assert sorted(on_disk) == sorted([f"bin/f{i}" for i in range(30)] + [MANIFEST])
    assert all(e == File(b"two") for p, e in on_disk.items() if p.startswith("bin/"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "out"]


def test_many_concurrent_runs_never_leave_a_partial_tree(tmp_path: Path) -> None:
    out = tmp_path / "out"
    writers = [_writer(out, f"run{i}", 0.05) for i in range(6)]
    outputs = [w.communicate(timeout=60)[0] for w in writers]
    assert [w.returncode for w in writers] == [0] * 6, outputs
    on_disk = read_tree(out)
    assert sorted(on_disk) == sorted([f"bin/f{i}" for i in range(30)] + [MANIFEST])
    contents = {
        e.content for p, e in on_disk.items() if isinstance(e, File) and p.startswith("bin/")
    }
    assert len(contents) == 1  # one run's tree, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.lock", "out"]


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and iproute2 for a private network namespace",
)
def test_taps_scripts_in_a_network_namespace(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # the real ip from PATH, not the golden artifacts' store path
    packages = {k: v for k, v in ARTIFACTS.packages.items() if k != "ip"}
    artifacts = Artifacts(packages=packages, vms=ARTIFACTS.vms)
    write_tree(out, tree_for(tmp_path, artifacts, user="nobody"))  # a user this host has
    ns = f"vmsilo-gen-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:

        def in_ns(*argv: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                ["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, check=False
            )

        up = str(out / "libexec/vmsilo/banking/taps-up")
        for _ in range(2):  # a second run (a leftover TAP after a crash) must work too
            result = in_ns("bash", up)
            assert result.returncode == 0, result.stderr
        links = json.loads(in_ns("ip", "-j", "-d", "addr", "show", "dev", "banking-0").stdout)
        assert links[0]["linkinfo"]["info_data"]["type"] == "tap"
        assert [a["local"] for a in links[0]["addr_info"]] == ["10.10.1.254"]
        assert links[0]["linkinfo"]["info_data"]["user"] == "nobody"
        assert in_ns("bash", str(out / "libexec/vmsilo/banking/taps-down")).returncode == 0
        assert in_ns("ip", "link", "show", "dev", "banking-0").returncode != 0
    finally:
        subprocess.run(["ip", "netns", "delete", ns], check=False)
