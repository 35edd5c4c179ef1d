"""What `pyi-selfupdate release` refuses to publish, and each refusal's override, as a user runs it.

The PyInstaller apps here are real PyInstaller archives (written with
PyInstaller's own CArchiveWriter, the format `release` reads back), without
the minutes a real build costs: one with pyi-selfupdate's embedded settings,
one without (an app that forgot `import pyi_selfupdate`). tests/build covers
real builds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import List, Optional

import pytest

from pyi_selfupdate.protocol import decode_manifest

from _installed import python_env

PLAT = "linux-amd64"
BASE = os.urandom(20000)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyi_selfupdate", *args], capture_output=True, text=True,
                          env=python_env(), cwd=cwd, timeout=120)


def error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.startswith("pyi-selfupdate: error: ")]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def pyinstaller_app(path: Path, version: str, *, embedded: bool = True,
                    public_keys: Optional[List[str]] = None, sep: str = "/") -> Path:
    """A PyInstaller onefile-style executable: an ELF stub with a CArchive appended."""
    from PyInstaller.archive.writers import CArchiveWriter

    work = path.parent / f".{path.name}.parts"
    work.mkdir(parents=True, exist_ok=True)
    (work / "app.py").write_text(f"print({version!r})\n")
    entries = [("app", str(work / "app.py"), False, "s")]
    if embedded:
        config = {"current_version": version, "cmd_name": path.name, "public_keys": public_keys or [],
                  "api_url": "http://127.0.0.1:9/"}
        (work / "config.json").write_text(json.dumps(config))
        entries.append((f"pyi_selfupdate{sep}_embedded_config.json", str(work / "config.json"), False, "x"))
    CArchiveWriter(str(work / "pkg"), entries, "libpython3.so")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x7fELF\x02\x01\x01" + BASE + version.encode() * 50 + (work / "pkg").read_bytes())
    return path


def plain_binary(path: Path, version: str) -> Path:
    """A binary that is not a PyInstaller app (a Go program, say)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x7fELF\x02\x01\x01" + BASE + version.encode() * 50)
    return path


def release(work: Path, exe: Path, version: str, *args: str) -> subprocess.CompletedProcess:
    return cli("release", "-o", "public", "--platform", PLAT, str(exe), version, *args, cwd=work)


def current(work: Path, cmd: str = "myapp") -> str:
    return decode_manifest((work / "public" / cmd / f"{PLAT}.json").read_bytes()).version


def files(work: Path) -> set:
    root = work / "public"
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} if root.exists() else set()


# ---------------------------------------------------------------- no updater


def test_a_pyinstaller_app_without_the_updater_is_refused_unless_allowed(tmp_path):
    exe = pyinstaller_app(tmp_path / "b" / "myapp", "1.0", embedded=False)
    line = error_line(release(tmp_path, exe, "1.0"))
    assert "built without pyi-selfupdate" in line and "could never update again" in line
    assert "import pyi_selfupdate" in line and "--hidden-import pyi_selfupdate" in line
    assert "--allow-no-updater" in line
    assert files(tmp_path) == set()  # refused before anything is written
    proc = release(tmp_path, exe, "1.0", "--allow-no-updater")
    assert proc.returncode == 0, proc.stderr
    assert current(tmp_path) == "1.0"


def test_an_app_built_on_windows_is_read_with_its_backslash_names(tmp_path):
    """PyInstaller on Windows names archive entries with backslashes: such an app, released from
    Linux (a CI job releasing a Windows artifact), is read, checked and released."""
    exe = pyinstaller_app(tmp_path / "b" / "myapp", "1.0", sep="\\")
    proc = release(tmp_path, exe, "1.0")
    assert proc.returncode == 0, proc.stderr
    proc = release(tmp_path, pyinstaller_app(tmp_path / "c" / "myapp", "1.1", sep="\\"), "1.2")
    assert "1.1" in error_line(proc) and "1.2" in error_line(proc)  # its embedded version is read


def test_apps_with_the_updater_and_other_binaries_release_as_before(tmp_path):
    proc = release(tmp_path, pyinstaller_app(tmp_path / "b" / "myapp", "1.0"), "1.0")
    assert proc.returncode == 0, proc.stderr
    proc = release(tmp_path, plain_binary(tmp_path / "go" / "gotool", "1.0"), "1.0")
    assert proc.returncode == 0, proc.stderr  # a Go binary is welcome
    assert current(tmp_path, "gotool") == "1.0"


# ------------------------------------------------------------------ version order


def test_an_older_version_is_refused_naming_rollback_and_the_override(tmp_path):
    for v in ("1.9", "1.10"):  # PEP 440: 1.10 is newer than 1.9 (as strings it is not)
        proc = release(tmp_path, plain_binary(tmp_path / v / "myapp", v), v)
        assert proc.returncode == 0, proc.stderr
    before = files(tmp_path)
    line = error_line(release(tmp_path, plain_binary(tmp_path / "1.2" / "myapp", "1.2"), "1.2"))
    assert "myapp 1.2 is older than 1.10" in line and "downgrade" in line
    assert "pyi-selfupdate rollback" in line and "--allow-older" in line
    assert files(tmp_path) == before and current(tmp_path) == "1.10"
    # pre-releases order as PEP 440 says: 2.0rc1 comes before 2.0
    assert release(tmp_path, plain_binary(tmp_path / "2.0" / "myapp", "2.0"), "2.0").returncode == 0
    line = error_line(release(tmp_path, plain_binary(tmp_path / "2.0rc1" / "myapp", "2.0rc1"), "2.0rc1"))
    assert "older than 2.0" in line
    proc = release(tmp_path, tmp_path / "1.2" / "myapp", "1.2", "--allow-older")
    assert proc.returncode == 0, proc.stderr
    assert current(tmp_path) == "1.2"


def test_versions_without_an_order_are_not_refused(tmp_path):
    for v in ("nightly-b", "nightly-a"):  # not PEP 440: no order to enforce
        proc = release(tmp_path, plain_binary(tmp_path / v / "myapp", v), v)
        assert proc.returncode == 0, proc.stderr
    assert current(tmp_path) == "nightly-a"


# --------------------------------------------------------------------- keys


@pytest.fixture
def keys(tmp_path: Path) -> dict:
    found = {}
    for name in ("a", "b"):
        proc = cli("keygen", f"{name}.key", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        found[name] = proc.stdout.strip().splitlines()[-1]
    return found


def test_a_key_the_app_does_not_embed_is_refused_unless_allowed(tmp_path, keys):
    exe = pyinstaller_app(tmp_path / "b" / "myapp", "1.0", public_keys=[keys["a"]])
    line = error_line(release(tmp_path, exe, "1.0", "--sign-key", "b.key"))
    assert "trusts the key(s)" in line and "every installed copy would refuse this release" in line
    assert keys["b"] in line  # the public_keys line to rebuild with
    assert "--allow-untrusted-key" in line
    assert files(tmp_path) == set()
    proc = release(tmp_path, exe, "1.0", "--sign-key", "b.key", "--allow-untrusted-key")
    assert proc.returncode == 0, proc.stderr
    assert "trusts none of the signing keys" in proc.stderr


@pytest.mark.parametrize("signers", [["a.key"], ["a.key", "b.key"]], ids=["trusted", "rotation"])
def test_a_trusted_key_signs_without_a_word(tmp_path, keys, signers):
    exe = pyinstaller_app(tmp_path / "b" / "myapp", "1.0", public_keys=[keys["a"]])
    args = [x for key in signers for x in ("--sign-key", key)]
    proc = release(tmp_path, exe, "1.0", *args)
    assert proc.returncode == 0, proc.stderr
    assert "WARNING" not in proc.stderr
    m = json.loads((tmp_path / "public" / "myapp" / f"{PLAT}.json").read_bytes())
    assert len(m["Signatures"]) == len(signers)


def test_signing_an_app_that_embeds_no_key_is_warned_about(tmp_path, keys):
    exe = pyinstaller_app(tmp_path / "b" / "myapp", "1.0", public_keys=[])
    proc = release(tmp_path, exe, "1.0", "--sign-key", "a.key")
    assert proc.returncode == 0, proc.stderr
    assert "embeds no public_keys" in proc.stderr and keys["a"] in proc.stderr


# ------------------------------------------------------------- patches-from


def _release_series(work: Path, versions: List[str], *args: str) -> subprocess.CompletedProcess:
    proc = None
    for v in versions:
        proc = release(work, plain_binary(work / "b" / v / "myapp", v), v, *args)
        assert proc.returncode == 0, proc.stderr
    return proc


def _patches_to(work: Path, version: str) -> List[str]:
    app = work / "public" / "myapp"
    return sorted(p.name for p in app.iterdir() if (p / version / PLAT).is_file())


def test_patches_come_from_the_last_five_releases_by_default(tmp_path):
    versions = [f"1.{i}" for i in range(8)]  # 1.0 ... 1.7
    proc = _release_series(tmp_path, versions)
    assert _patches_to(tmp_path, "1.7") == ["1.2", "1.3", "1.4", "1.5", "1.6"]
    assert "no patch from 2 older release(s)" in proc.stderr and "1.0, 1.1 take the .gz" in proc.stderr
    proc = release(tmp_path, plain_binary(tmp_path / "b" / "1.10" / "myapp", "1.10"), "1.10", "--patches-from", "2")
    assert proc.returncode == 0, proc.stderr
    assert _patches_to(tmp_path, "1.10") == ["1.6", "1.7"]  # the newest by version, not by name
    proc = release(tmp_path, plain_binary(tmp_path / "b" / "1.11" / "myapp", "1.11"), "1.11", "--patches-from", "all")
    assert proc.returncode == 0, proc.stderr
    assert _patches_to(tmp_path, "1.11") == sorted(versions + ["1.10"])
    proc = release(tmp_path, tmp_path / "b" / "1.11" / "myapp", "1.11", "--patches-from", "-1")
    assert proc.returncode == 2 and "argument --patches-from: '-1' is not a number of releases" in proc.stderr
