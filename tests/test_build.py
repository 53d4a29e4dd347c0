"""`vmsilo build`: real nix builds of the fixture flake's /bin/sh guest systems, Nix's recorded
internal-json logs, and a stand-in nix-eval-jobs that speaks its line format."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from tests.conftest import OFFLINE, EvalJobs, Result, needs_nix
from vmsilo_nix.build import display, planner
from vmsilo_nix.build.progress import Counts, Event, Progress
from vmsilo_nix.cli import app as cli
from vmsilo_nix.nixeval.nix import Drv, strip_ansi

FIXTURE = Path(__file__).parent / "fixtures" / "build-flake"
LOGS = Path(__file__).parent / "fixtures" / "nix-logs"


def feed_log(name: str) -> tuple[Progress, list[Event]]:
    progress = Progress()
    events = []
    for line in (LOGS / name).read_text().splitlines():
        event = progress.feed(line)
        if event is not None:
            events.append(event)
    return progress, events


# --- the progress parser, on recorded logs ----------------------------------------------------


def test_progress_of_a_partly_failed_build() -> None:
    # Recorded from Nix 2.8 building the fixture with banking, vault on "base", net on
    # "office" and work on "broken": one kernel fails, everything else builds.
    progress, events = feed_log("partial-failure.log")
    [failed] = progress.failed
    assert failed.endswith("-linux-broken.drv")
    assert list(progress.tails[failed]) == ["compiling the kernel of broken", "cc1: out of memory"]
    started = [e.text for e in events if e.kind == "build"]
    assert len(started) == len(set(started)) == 9  # 4 per good set, the broken kernel
    assert progress.builds.failed == 1
    assert not progress.running and not progress.remote
    assert all(e.kind != "message" for e in events)  # errors are reported per VM, at the end


def test_progress_of_remote_builds_and_substitutions() -> None:
    progress, events = feed_log("remote-and-substitute.log")
    assert progress.remote == {"ssh://builder.example"}
    assert progress.builds == Counts(2, 2, 0, 0)
    assert progress.substitutions == Counts(1, 1, 0, 0)
    assert progress.substituted_paths == {
        "/nix/store/00000000000000000000000000000001-vmsilo-fw-1.0"
    }
    kernel = "/nix/store/00000000000000000000000000000002-linux-6.12.drv"
    assert list(progress.tails[kernel]) == ["CC      kernel/fork.o", "LD      vmlinux"]
    assert Event("build", kernel, "ssh://builder.example") in events
    assert Event("message", "warning: ignoring untrusted substituter") in events


def test_progress_midway_shows_running_builds_and_their_last_line() -> None:
    progress = Progress()
    lines = (LOGS / "remote-and-substitute.log").read_text().splitlines()
    for line in lines[:13]:
        progress.feed(line)
    [build] = progress.running.values()
    assert (build.machine, build.last_line) == ("ssh://builder.example", "LD      vmlinux")
    plan = planner.BuildPlan({})
    console = Console(record=True, width=100)
    console.print(display.render(progress, plan))
    text = console.export_text()
    assert "built 0/2, 1 running; fetched 1/1; remote builders: ssh://builder.example" in text
    assert "linux-6.12 on ssh://builder.example" in text and "LD      vmlinux" in text


@given(st.lists(st.text(max_size=80) | st.builds(lambda s: "@nix " + s, st.text(max_size=80))))
def test_progress_survives_any_line(lines: list[str]) -> None:
    progress = Progress()
    for line in lines:
        progress.feed(line)


@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "action": st.sampled_from(["start", "stop", "result", "msg"]),
                "id": st.integers(0, 3) | st.text(max_size=3),
                "type": st.sampled_from([101, 103, 104, 105, 108, 0, "x"]),
                "fields": st.lists(st.integers() | st.text(max_size=5) | st.none(), max_size=5),
                "level": st.integers(-1, 5),
                "msg": st.text(max_size=20) | st.integers(),
            }
        )
    )
)
def test_progress_survives_any_shaped_record(records: list[dict[str, Any]]) -> None:
    progress = Progress()
    for record in records:
        progress.feed("@nix " + json.dumps(record))


# --- the fixture flake, built for real --------------------------------------------------------


class Flake:
    """The fixture flake copied out, with its VMs (name -> software set) and a fresh salt."""

    def __init__(self, tmp: Path, vms: dict[str, str]) -> None:
        self.dir = tmp / "flake"
        shutil.copytree(FIXTURE, self.dir)
        self.salt = uuid.uuid4().hex
        self.set_vms(vms)

    def set_vms(self, vms: dict[str, str], salt: str | None = None) -> None:
        self.salt = salt or self.salt
        (self.dir / "vms.json").write_text(json.dumps({"salt": self.salt, "vms": vms}))

    @property
    def host(self) -> str:
        return f"path:{self.dir}#host"


@pytest.fixture
def flake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Flake:
    monkeypatch.chdir(tmp_path)
    return Flake(tmp_path, {"banking": "browser", "work": "office", "vault": "", "net": "browser"})


def artifacts(path: Path = Path("vmsilo-artifacts.json")) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


SYSTEM = ["initrd", "kernel", "rootImage", "toplevel"]
IMAGE = ["programImage", "programs"]
ROOTS = Path("vmsilo-artifacts.gcroots")


def store_path(path: str) -> str:
    return "/".join(path.split("/")[:4])


@needs_nix
def test_build_builds_the_base_once_and_each_program_image_once(flake: Flake, run: Any) -> None:
    result: Result = run("build", "--flake", flake.host, "--json")
    assert result.code == 0, result.err
    report = result.json()
    assert set(report) == {"ok", "artifacts", "gcRoots", "seconds", "units", "vms"}
    assert (report["ok"], report["artifacts"]) == (True, "vmsilo-artifacts.json")
    assert report["gcRoots"] == "vmsilo-artifacts.gcroots"
    units = {u["id"]: u for u in report["units"]}
    assert [(u["id"], u["kind"], u["vms"]) for u in report["units"]] == [
        ("base-main", "base", ["banking", "net", "vault", "work"]),
        ("programs-browser", "program-image", ["banking", "net"]),
        ("programs-office", "program-image", ["work"]),
        ("package-crosvm", "package", []),
        ("package-virtiofsd", "package", []),
    ]
    for unit in report["units"]:
        assert set(unit) == {
            "id", "kind", "vms", "status", "drvPaths", "outPaths", "seconds", "failed", "error"
        }  # fmt: skip
        assert (unit["status"], unit["failed"], unit["error"]) == ("built", [], None)
        assert sorted(unit["drvPaths"]) == sorted(unit["outPaths"])
        assert all(Path(p).exists() for p in unit["outPaths"].values())
    base, browser = units["base-main"], units["programs-browser"]
    assert sorted(base["drvPaths"]) == SYSTEM and sorted(browser["drvPaths"]) == IMAGE
    assert browser["outPaths"]["programImage"].endswith("-vmsilo-programs-browser.img")
    assert units["package-crosvm"]["outPaths"] == {
        "package": units["package-crosvm"]["outPaths"]["package"]
    }
    # Each derivation was built once: the base's four for all VMs, two per software set.
    started = [line for line in result.err.splitlines() if line.startswith("building ")]
    assert started[0] == "building for 4 VMs: 1 base system, 2 program images, 2 host packages"
    assert len(started) == 1 + 4 + 2 * 2 + 2, result.err
    assert "building linux-base (base system of banking, net, vault, work)" in started
    assert "building vmsilo-programs-browser.img (program image of banking, net)" in started
    assert "building crosvm (host package)" in started
    vms = report["vms"]
    assert set(vms) == {"banking", "work", "vault", "net"}
    for name, vm in vms.items():
        assert set(vm) == {
            "status", "units", "system", "platform", "drvPaths", "outPaths", "seconds",
            "failed", "error",
        }  # fmt: skip
        image = {
            "banking": "programs-browser",
            "net": "programs-browser",
            "work": "programs-office",
        }
        assert vm["units"] == ["base-main", *([image[name]] if name in image else [])]
        mine = [units[u] for u in vm["units"]]
        assert vm["drvPaths"] == {p: d for u in mine for p, d in u["drvPaths"].items()}
        assert vm["outPaths"] == {p: o for u in mine for p, o in u["outPaths"].items()}
        assert (vm["status"], vm["failed"], vm["error"]) == ("built", [], None)
        assert vm["system"] == base["outPaths"]["toplevel"] and vm["platform"] == "x86_64-linux"
    doc = artifacts()
    assert doc["packages"] == {
        "crosvm": units["package-crosvm"]["outPaths"]["package"],
        "virtiofsd": units["package-virtiofsd"]["outPaths"]["package"],
    }
    for name, vm in vms.items():
        entry = doc["vms"][name]
        assert entry == vm["outPaths"]
        assert Path(entry["kernel"]).read_text() == "kernel\n"
        assert Path(entry["initrd"]).read_text() == "initrd\n"
        assert Path(entry["rootImage"]).read_text() == entry["toplevel"] + "\n"
    assert (
        Path(doc["vms"]["work"]["programImage"]).read_text()
        == doc["vms"]["work"]["programs"] + "\n"
    )
    assert "programImage" not in doc["vms"]["vault"]
    # Built again: nothing to do, every unit is already present.
    again = run("build", "--flake", flake.host, "--json")
    assert {u["status"] for u in again.json()["units"]} == {"present"}
    assert {v["status"] for v in again.json()["vms"].values()} == {"present"}
    assert [line for line in again.err.splitlines() if line.startswith("building ")] == [started[0]]


@needs_nix
def test_built_artifacts_make_launchers_that_start(flake: Flake, run: Any, tmp_path: Path) -> None:
    assert run("build", "--flake", flake.host).code == 0
    config = tmp_path / "config.json"
    config.write_text(
        json.dumps({"user": "alice", "nixosVms": [{"name": n} for n in ("banking", "work")]})
    )
    before = run("generate", "--file", str(config), "--out", "unbuilt")
    assert "not built yet" in before.err
    result = run(
        "generate", "--file", str(config), "--artifacts", "vmsilo-artifacts.json", "--out", "tree"
    )
    assert result.code == 0, result.err
    assert "not built" not in result.err
    manifest = json.loads(Path("tree/share/vmsilo/manifest.json").read_text())
    assert manifest["vms"]["work"]["unbuilt"] == []
    work = artifacts()["vms"]["work"]
    # the program image too: vmsilo status reports the VM not built when it is collected
    expected = {p: work[p] for p in [*SYSTEM, "programImage"]}
    assert manifest["vms"]["work"]["artifacts"] == expected
    launcher = Path("tree/libexec/vmsilo/work/launch").read_text()
    assert work["kernel"] in launcher and work["programImage"] in launcher
    # The host packages the build made are what the launcher runs.
    assert f"{artifacts()['packages']['crosvm']}/bin/crosvm" in launcher


@needs_nix
def test_generate_build_does_both(flake: Flake, run: Any) -> None:
    result = run("generate", "--build", "--flake", flake.host, "--out", "tree", "--json")
    assert result.code == 0, result.err
    assert result.json()["vms"] == ["banking", "net", "vault", "work"]
    manifest = json.loads(Path("tree/share/vmsilo/manifest.json").read_text())
    assert all(v["unbuilt"] == [] for v in manifest["vms"].values())
    assert (ROOTS / "base-main-rootImage").is_symlink()


@needs_nix
def test_a_failed_program_image_fails_exactly_the_vms_of_its_set(flake: Flake, run: Any) -> None:
    flake.set_vms({"banking": "browser", "work": "broken", "vault": "broken", "net": ""})
    result = run("build", "--flake", flake.host, "--json")
    assert result.code == 1
    report = result.json()
    assert report["ok"] is False
    statuses = {u["id"]: u["status"] for u in report["units"]}
    assert statuses == {
        "base-main": "built",
        "programs-broken": "failed",
        "programs-browser": "built",
        "package-crosvm": "built",
        "package-virtiofsd": "built",
    }
    [broken] = [u for u in report["units"] if u["id"] == "programs-broken"]
    [failure] = broken["failed"]
    assert failure["drvPath"].endswith("-vmsilo-programs-broken.img.drv")
    assert failure["log"] == [
        "packing the programs of broken",
        "mksquashfs: no space left on device",
    ]
    vms = report["vms"]
    assert {n: v["status"] for n, v in vms.items()} == {
        "banking": "built",
        "work": "failed",
        "vault": "failed",
        "net": "built",
    }
    assert vms["work"]["failed"] == vms["vault"]["failed"] == [failure]
    # Partial artifacts: the VMs that built, with the base and their image; the roots too.
    doc = artifacts()
    assert set(doc["vms"]) == {"banking", "net"}
    assert doc["vms"]["net"]["rootImage"] == doc["vms"]["banking"]["rootImage"]
    assert sorted(p.name for p in ROOTS.iterdir() if "broken" in p.name) == []
    for vm in ("work", "vault"):
        assert f"error: VM {vm} was not built: {failure['drvPath']} failed to build" in result.err
    assert "banking was not built" not in result.err and "net was not built" not in result.err
    assert "    mksquashfs: no space left on device" in result.err
    assert "Traceback" not in result.err


@needs_nix
def test_a_failed_own_system_names_its_vm(flake: Flake, run: Any) -> None:
    flake.set_vms({"banking": "browser", "work": "own:broken", "net": ""})
    result = run("build", "--flake", flake.host, "--json")
    assert result.code == 1
    report = result.json()
    assert [(u["id"], u["kind"], u["vms"], u["status"]) for u in report["units"]][:3] == [
        ("base-main", "base", ["banking", "net"], "built"),
        ("vm-work", "guest-system", ["work"], "failed"),
        ("programs-browser", "program-image", ["banking"], "built"),
    ]
    [failure] = report["vms"]["work"]["failed"]
    assert failure["drvPath"].endswith("-linux-broken.drv")
    assert failure["log"] == ["compiling the kernel of broken", "cc1: out of memory"]
    assert set(artifacts()["vms"]) == {"banking", "net"}
    assert f"error: VM work was not built: {failure['drvPath']} failed to build" in result.err


@needs_nix
def test_a_failed_package_fails_the_build_but_no_vm(flake: Flake, run: Any) -> None:
    spec = json.loads((flake.dir / "vms.json").read_text())
    (flake.dir / "vms.json").write_text(json.dumps({**spec, "brokenPackage": True}))
    result = run("build", "--flake", flake.host, "--json")
    assert result.code == 1
    report = result.json()
    assert report["ok"] is False
    assert {u["id"]: u["status"] for u in report["units"]}["package-crosvm"] == "failed"
    assert {v["status"] for v in report["vms"].values()} == {"built"}
    [crosvm] = [u for u in report["units"] if u["id"] == "package-crosvm"]
    [failure] = crosvm["failed"]
    assert failure["log"] == ["error: linking crosvm failed"]
    doc = artifacts()
    assert list(doc["packages"]) == ["virtiofsd"] and set(doc["vms"]) == set(report["vms"])
    assert (
        f"error: package crosvm was not built: {failure['drvPath']} failed to build; "
        "launchers run crosvm from PATH"
    ) in result.err


@needs_nix
def test_building_some_vms_keeps_the_others_artifacts(flake: Flake, run: Any) -> None:
    assert run("build", "--flake", flake.host).code == 0
    first = artifacts()["vms"]
    flake.set_vms({"banking": "browser", "work": "office", "vault": "", "net": "browser"}, "new")
    result = run("build", "--flake", flake.host, "work")
    assert result.code == 0, result.err
    doc = artifacts()["vms"]
    assert doc["banking"] == first["banking"]
    assert doc["work"] != first["work"]


@needs_nix
@pytest.mark.parametrize(
    ("spec", "where", "message"),
    [
        (
            "own:bad-eval",
            "programs.vmsilo.nixosVms[1] (work).guestConfig does not evaluate: rootImage:",
            "guestConfig of the bad-eval software set does not evaluate",
        ),
        (
            "bad-eval",
            "programs.vmsilo.nixosVms[1] (work).guestPrograms does not evaluate: programImage:",
            "guestPrograms of the bad-eval set do not evaluate",
        ),
    ],
)
def test_a_unit_that_does_not_evaluate(
    flake: Flake, run: Any, spec: str, where: str, message: str
) -> None:
    flake.set_vms({"banking": "browser", "work": spec})
    result = run("build", "--flake", flake.host)
    assert result.code == 1
    assert f"error: VM work was not built: {where}" in result.err
    assert message in result.err
    assert "banking was not built" not in result.err
    assert set(artifacts()["vms"]) == {"banking"}
    dry = run("build", "--dry-run", "--flake", flake.host)
    assert dry.code == 1 and f"VM work: {where}" in dry.err


@needs_nix
def test_built_outputs_survive_garbage_collection(flake: Flake, run: Any) -> None:
    """Each built output has a root, so Nix's collector refuses to delete it; built with
    --no-out-link, the same outputs are collected (what the roots prevent)."""
    report = run("build", "--flake", flake.host, "--json").json()
    outs = {
        f"{u['id']}-{p}" if u["kind"] != "package" else u["id"]: store_path(o)
        for u in report["units"]
        for p, o in u["outPaths"].items()
    }
    assert {p.name: os.readlink(p) for p in ROOTS.iterdir()} == outs
    collect = subprocess.run(
        ["nix-store", "--delete", *outs.values()], capture_output=True, text=True, check=False
    )
    assert collect.returncode != 0 and "since it is still alive" in collect.stderr
    assert all(Path(p).exists() for p in outs.values())
    # Rebuilt from new derivations: the links are replaced and the old outputs are free.
    flake.set_vms({"banking": "browser", "work": "", "vault": "", "net": "browser"}, "second")
    again = run("build", "--flake", flake.host, "--json").json()
    links = {p.name: os.readlink(p) for p in ROOTS.iterdir()}
    assert not any(n.startswith("programs-office") for n in links)  # work has no image now
    assert set(links.values()).isdisjoint(outs.values())
    assert {store_path(o) for u in again["units"] for o in u["outPaths"].values()} == set(
        links.values()
    )
    freed = subprocess.run(
        ["nix-store", "--delete", *outs.values()], capture_output=True, text=True, check=False
    )
    assert freed.returncode == 0, freed.stderr
    assert not any(Path(p).exists() for p in outs.values())
    # Without roots, the collector takes what was just built.
    shutil.rmtree(ROOTS)
    flake.set_vms({"banking": "browser"}, "third")
    bare = run("build", "--no-out-link", "--flake", flake.host, "--json").json()
    assert bare["gcRoots"] is None and not ROOTS.exists()
    paths = {store_path(o) for u in bare["units"] for o in u["outPaths"].values()}
    assert all(Path(p).exists() for p in paths)
    gone = subprocess.run(
        ["nix-store", "--delete", *paths], capture_output=True, text=True, check=False
    )
    assert gone.returncode == 0, gone.stderr
    assert not any(Path(p).exists() for p in paths)


@needs_nix
def test_out_link_names_the_roots_directory(flake: Flake, run: Any) -> None:
    result = run("build", "--flake", flake.host, "--out-link", "roots", "--artifacts-out", "a.json")
    assert result.code == 0, result.err
    assert not ROOTS.exists() and Path("a.json").exists()
    assert (
        os.readlink("roots/base-main-toplevel")
        == artifacts(Path("a.json"))["vms"]["net"]["toplevel"]
    )
    default = run("build", "--flake", flake.host, "--artifacts-out", "b.json")
    assert default.code == 0 and Path("b.gcroots/base-main-toplevel").is_symlink()


@needs_nix
@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--flake", "{ref}#nohost"], 3, "has no NixOS host 'nohost' (hosts: bare, host)"),
        (["--flake", "{ref}#bare"], 3, "does not use vmsilo's NixOS module"),
        (["--flake", "{ref}#host", "wrok"], 2, "no VM is named 'wrok'; did you mean 'work'?"),
        (["--flake", "{ref}"], 3, "--flake expects REF#HOST"),
        (["--file", "vms.nix"], 2, "--file needs --nixpkgs PATH"),
        (["--file", "vms.json", "--nixpkgs", "."], 2, "building needs a .nix file"),
        (["--file", "vms.nix", "--nixpkgs", "."], 3, "--nixpkgs .: not a nixpkgs tree"),
        (["--flake", "{ref}#host", "--nixpkgs", "."], 2, "--nixpkgs goes with --file"),
    ],
)
def test_bad_input_is_one_error_and_writes_nothing(
    flake: Flake, run: Any, args: list[str], code: int, message: str
) -> None:
    ref = flake.host.removesuffix("#host")
    result = run("build", *(a.format(ref=ref) for a in args))
    assert result.code == code, result.err
    assert message in result.err
    assert "Traceback" not in result.err
    assert not Path("vmsilo-artifacts.json").exists() and not ROOTS.exists()


@needs_nix
def test_dry_run_lists_and_builds_nothing(flake: Flake, run: Any) -> None:
    result = run("build", "--dry-run", "--flake", flake.host)
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert [line.split("\t")[:3] for line in lines[:-1]] == [
        ["base", "base-main", "banking,net,vault,work"],
        ["program-image", "programs-browser", "banking,net"],
        ["program-image", "programs-office", "work"],
        ["package", "package-crosvm", "-"],
        ["package", "package-virtiofsd", "-"],
    ]
    assert lines[0].endswith("-nixos-system-base.drv")
    assert lines[1].endswith("-vmsilo-programs-browser.img.drv")
    assert lines[-1] == (
        "would build 10 derivations for 4 VMs: 1 base system, 2 program images, 2 host packages"
    )
    plan = run("build", "--dry-run", "--flake", flake.host, "--json").json()
    assert set(plan) == {"units", "vms", "drvPaths"}
    assert len(plan["drvPaths"]) == 10
    assert [u["id"] for u in plan["units"]] == [line.split("\t")[1] for line in lines[:-1]]
    for unit in plan["units"]:
        assert (unit["status"], unit["error"]) == ("planned", None)
        assert not any(Path(p).exists() for p in unit["outPaths"].values())
    assert plan["vms"]["work"]["units"] == ["base-main", "programs-office"]
    assert sorted(plan["vms"]["work"]["drvPaths"]) == sorted(SYSTEM + IMAGE)
    assert plan["vms"]["vault"]["units"] == ["base-main"]
    assert set(plan["drvPaths"]) == {d for u in plan["units"] for d in u["drvPaths"].values()}
    assert not Path("vmsilo-artifacts.json").exists() and not ROOTS.exists()


# --- nix-eval-jobs, as a stand-in speaking its line format ------------------------------------


def eval_jobs_lines(flake: Flake, run: Any) -> list[dict[str, Any]]:
    """What nix-eval-jobs would print for the flake: the real derivations, as its records."""
    plan = run("build", "--dry-run", "--no-eval-jobs", "--flake", flake.host, "--json").json()
    records = []
    for unit in plan["units"]:
        for part, drv in unit["drvPaths"].items():
            out = unit["outPaths"][part]
            if unit["kind"] == "package":
                path = ["package", unit["id"].removeprefix("package-")]
            else:
                path = [unit["kind"], unit["id"], ",".join(unit["vms"]), part]
            if part in ("kernel", "initrd"):
                out, file = out.rsplit("/", 1)
                path.append(file)
            records.append(
                {
                    "attr": ".".join(path),
                    "attrPath": path,
                    "name": part,
                    "system": "x86_64-linux",
                    "drvPath": drv,
                    "outputs": {"out": out},
                }
            )
    return records[::-1]  # completion order is not our order


@needs_nix
def test_build_with_nix_eval_jobs(flake: Flake, run: Any, eval_jobs: EvalJobs) -> None:
    records = eval_jobs_lines(flake, run)
    eval_jobs.answer(json.dumps(r) for r in records)
    result = run(
        "build", "--flake", flake.host, "--workers", "3", "--max-memory-size", "1024", "--json"
    )
    assert result.code == 0, result.err
    argv = eval_jobs.argv()
    assert argv[:4] == ["--workers", "3", "--max-memory-size", "1024"]
    assert argv[-3:-1] == ["--impure", "--expr"]
    assert "builtins.getFlake ref" in argv[-1]
    assert f"path:{flake.dir}" in argv[-1]
    assert set(artifacts()["vms"]) == {"banking", "work", "vault", "net"}


@needs_nix
def test_nix_eval_jobs_errors_crashes_and_garbage(
    flake: Flake, run: Any, eval_jobs: EvalJobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    records = eval_jobs_lines(flake, run)
    # An evaluation error of one attribute fails that VM only.
    image = ["program-image", "programs-office", "work", "programImage"]
    bad = {
        "attr": ".".join(image),
        "attrPath": image,
        "error": "\x1b[31;1merror:\x1b[0m guestPrograms of work: undefined variable 'firefx'",
    }
    kept = [r for r in records if r["attrPath"] != image]
    eval_jobs.answer(json.dumps(r) for r in [*kept, bad])
    result = run("build", "--flake", flake.host)
    assert result.code == 1
    expected = "programImage: error: guestPrograms of work: undefined variable 'firefx'"
    where = "programs.vmsilo.nixosVms[3] (work).guestPrograms does not evaluate"
    assert f"VM work was not built: {where}: {expected}" in result.err
    assert set(artifacts()["vms"]) == {"banking", "vault", "net"}
    Path("vmsilo-artifacts.json").unlink()
    # A crash midway: nothing is built, nothing written.
    eval_jobs.answer(json.dumps(r) for r in records[:5])
    with monkeypatch.context() as m:
        m.setenv("EVAL_JOBS_STATUS", "134")
        m.setenv("EVAL_JOBS_STDERR", "error: worker died\n")
        result = run("build", "--flake", flake.host)
    assert result.code == 3 and "worker died" in result.err
    assert not Path("vmsilo-artifacts.json").exists()
    # A malformed line.
    eval_jobs.answer([json.dumps(records[0]), "{not json"])
    result = run("build", "--flake", flake.host)
    assert result.code == 3
    assert "nix-eval-jobs printed a line that is not JSON (line 2)" in result.err
    assert "Traceback" not in result.err and not Path("vmsilo-artifacts.json").exists()


@needs_nix
def test_ctrl_c_stops_nix_and_its_builders(flake: Flake) -> None:
    # The builder runs as a build user: it needs a directory it can write to.
    shared = Path(tempfile.mkdtemp(prefix="vmsilo-13-builder-"))
    shared.chmod(0o1777)
    pid_file = shared / "builder.pid"
    flake.set_vms({"banking": "own:slow"})
    spec = json.loads((flake.dir / "vms.json").read_text())
    (flake.dir / "vms.json").write_text(json.dumps({**spec, "pidFile": str(pid_file)}))
    argv = [sys.executable, "-m", "vmsilo_nix", *OFFLINE, "build", "--flake", flake.host]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not pid_file.exists() or not pid_file.read_text().strip():
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.1)
    builder = int(pid_file.read_text())
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    deadline = time.monotonic() + 10
    while _alive(builder):
        assert time.monotonic() < deadline, f"builder {builder} outlived vmsilo build"
        time.sleep(0.1)
    assert not Path("vmsilo-artifacts.json").exists()
    shutil.rmtree(shared)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_live_display_on_a_terminal_follows_the_log() -> None:
    """The live display redraws from the same progress; on a terminal nothing is printed per
    event (only warnings), and it is gone when the build ends."""
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    kernel = "/nix/store/00000000000000000000000000000002-linux-6.12.drv"
    plan = planner.plan_builds(
        {
            path: Drv(path, path[3], "x86_64-linux", drv, {"out": f"/nix/store/x-{path[3]}"})
            for path, drv in {
                ("base", "base-1", "work", "kernel", "bzImage"): kernel,
                ("base", "base-1", "work", "initrd", "initrd"): "/nix/store/i-initrd.drv",
                ("base", "base-1", "work", "rootImage"): "/nix/store/r-squashfs.drv",
                ("base", "base-1", "work", "toplevel"): "/nix/store/t-nixos-system.drv",
            }.items()
        }
    )
    progress = Progress()
    with display.show(console, plan) as update:
        for line in (LOGS / "remote-and-substitute.log").read_text().splitlines()[:14]:
            update(progress.feed(line), progress)
        console.print(display.render(progress, plan))
    text = strip_ansi(out.getvalue())
    assert "linux-6.12 (base system of work) on ssh://builder.example LD      vmlinux" in text
    assert "base building" in text
    assert "warning: ignoring untrusted substituter" in text
    assert "building linux-6.12" not in text  # that is the plain display's line


def test_the_live_display_runs_on_the_commands_own_console() -> None:
    """`vmsilo build` on a terminal: the CLI's console (made on first use) drives rich's Live."""
    _, err = cli._consoles()
    progress = Progress()
    with display.show(err, planner.BuildPlan({}), live=True) as update:
        for line in (LOGS / "remote-and-substitute.log").read_text().splitlines()[:14]:
            update(progress.feed(line), progress)
