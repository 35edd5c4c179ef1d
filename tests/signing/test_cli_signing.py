"""`pyi-selfupdate release --sign-key/--expires/--serial` and `pyi-selfupdate rollback`, as a publisher runs them."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pyi_selfupdate import signing
from pyi_selfupdate.protocol import decode_manifest

from _installed import python_env

PLAT = "linux-amd64"


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = python_env()
    return subprocess.run([sys.executable, "-m", "pyi_selfupdate", *args], capture_output=True,
                          text=True, env=env, cwd=cwd)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    proc = cli("keygen", "release.key", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (tmp_path / "pub.txt").write_text(proc.stdout.strip().splitlines()[-1])
    for version in ("1.0", "2.0"):
        exe = tmp_path / "builds" / version / "myapp"
        exe.parent.mkdir(parents=True)
        exe.write_bytes(os.urandom(4096) + version.encode() * 500)
    return tmp_path


def manifest(work: Path) -> dict:
    return json.loads((work / "public" / "myapp" / f"{PLAT}.json").read_bytes())


def verify(work: Path, **kw):
    m = decode_manifest((work / "public" / "myapp" / f"{PLAT}.json").read_bytes())
    return signing.verify_manifest(m, cmd_name="myapp", platform=PLAT,
                                   public_keys=[(work / "pub.txt").read_text()], **kw)


def release(work: Path, version: str, *extra: str) -> subprocess.CompletedProcess:
    return cli("release", "-o", "public", "--platform", PLAT, *extra,
               f"builds/{version}/myapp", version, cwd=work)


def test_release_signs_with_growing_serials_and_an_expiry(work):
    proc = release(work, "1.0", "--sign-key", "release.key")
    assert proc.returncode == 0, proc.stderr
    assert "signed myapp 1.0 linux-amd64: serial 1" in proc.stderr
    assert manifest(work)["Serial"] == 1 and "Expires" not in manifest(work)
    proc = release(work, "2.0", "--sign-key", "release.key", "--expires", "30")
    assert proc.returncode == 0, proc.stderr
    doc = manifest(work)
    assert (doc["Version"], doc["Serial"], doc["Size"]) == ("2.0", 2, (work / "builds/2.0/myapp").stat().st_size)
    info = verify(work, min_serial=1, min_serial_version="1.0")
    days = (info.expires - dt.datetime.now(dt.timezone.utc)).days
    assert 28 <= days <= 30


def test_rollback_republishes_an_old_version_with_a_higher_serial(work):
    assert release(work, "1.0", "--sign-key", "release.key").returncode == 0
    assert release(work, "2.0", "--sign-key", "release.key").returncode == 0
    proc = cli("rollback", "-o", "public", "--cmd-name", "myapp", "--sign-key", "release.key",
               "1.0", cwd=work)
    assert proc.returncode == 0, proc.stderr
    doc = manifest(work)
    assert (doc["Version"], doc["Serial"]) == ("1.0", 3)
    assert verify(work, min_serial=2, min_serial_version="2.0").serial == 3
    # clients on 2.0 get a patch to the rolled-back version
    assert (work / "public" / "myapp" / "2.0" / "1.0" / PLAT).is_file()


def test_rollback_to_a_version_never_released_is_a_clear_error(work):
    assert release(work, "1.0", "--sign-key", "release.key").returncode == 0
    proc = cli("rollback", "-o", "public", "--cmd-name", "myapp", "--sign-key", "release.key",
               "0.9", cwd=work)
    assert proc.returncode == 2
    assert "0.9 was never released" in proc.stderr and "1.0" in proc.stderr


def test_an_unsigned_release_over_a_signed_tree_is_refused_and_nothing_written(work):
    assert release(work, "1.0", "--sign-key", "release.key").returncode == 0
    before = manifest(work)
    proc = release(work, "2.0")
    assert proc.returncode == 2
    assert "pass --sign-key" in proc.stderr
    assert manifest(work) == before
    assert not (work / "public" / "myapp" / "2.0").exists()


def test_a_serial_that_goes_backwards_is_refused(work):
    assert release(work, "1.0", "--sign-key", "release.key", "--serial", "10").returncode == 0
    assert manifest(work)["Serial"] == 10
    proc = release(work, "2.0", "--sign-key", "release.key", "--serial", "10")
    assert proc.returncode == 2 and "--serial 11" in proc.stderr
    assert manifest(work)["Version"] == "1.0"


def test_a_missing_key_file_is_refused_before_anything_is_written(work):
    proc = release(work, "1.0", "--sign-key", "missing.key")
    assert proc.returncode == 2 and "pyi-selfupdate keygen missing.key" in proc.stderr
    assert not (work / "public").exists()


def test_release_without_keys_stays_go_compatible(work):
    assert release(work, "1.0").returncode == 0
    assert list(manifest(work)) == ["Version", "Sha256"]
