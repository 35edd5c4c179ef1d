"""Attacks on the release side, replayed through the real CLI: a tree (or input) an attacker
altered must end the release with a clear error, the tree exactly as it was, and nothing signed.

Figures (time, peak RSS) are measured by :func:`run_measured` and printed with ``-s``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from pyi_selfupdate.errors import ReleaseError
from pyi_selfupdate.release import hookimpl, release as release_api
from pyi_selfupdate.release.keys import generate_private_key
from pyi_selfupdate.settings import LIMITS

from _installed import python_env

PLAT = "linux-amd64"


def cli(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyi_selfupdate", *args], capture_output=True,
                          env=python_env(), cwd=cwd)


def run_measured(*args, cwd: Path):
    """Run the CLI in a child that reports its own peak RSS (diff workers included): (proc, seconds, MiB)."""
    code = ("import resource, sys\n"
            "from pyi_selfupdate._cli import main\n"
            "try:\n    rc = main(sys.argv[1:])\nexcept SystemExit as e:\n    rc = e.code\n"
            # VmHWM, not RUSAGE_SELF: Linux keeps ru_maxrss across exec, so a child of a big
            # test process would report the test process's size.
            "hwm = [int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
            "peak = max(hwm, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
            "print(f'PEAK_KIB={peak}', file=sys.stderr)\nsys.exit(rc)\n")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=python_env(), cwd=cwd)
    seconds = time.monotonic() - started
    peak = int(proc.stderr.rsplit("PEAK_KIB=", 1)[1].split()[0]) / 1024
    return proc, seconds, peak


def err(proc) -> str:
    text = proc.stderr
    return text.decode("utf-8", "replace") if isinstance(text, bytes) else text


def snapshot(root: Path) -> dict:
    """Every path under ``root`` (links not followed) with its bytes, or its link target."""
    if not root.exists():
        return {}
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_file():
                out[rel] = p.read_bytes()
            else:
                out[rel] = "dir"
    return out


@pytest.fixture
def work(tmp_path: Path) -> Path:
    proc = cli("keygen", "release.key", cwd=tmp_path)
    assert proc.returncode == 0, err(proc)
    for version in ("1.0", "2.0", "3.0"):
        exe = tmp_path / "builds" / version / "myapp"
        exe.parent.mkdir(parents=True)
        exe.write_bytes(hashlib.sha256(b"x").digest() * 2000 + version.encode() * 500)
    return tmp_path


def release(work: Path, version: str, *extra: str):
    return cli("release", "-o", "public", "--platform", PLAT, *extra, f"builds/{version}/myapp", version,
               cwd=work)


def signed(work: Path, *versions: str) -> None:
    for v in versions:
        proc = release(work, v, "--sign-key", "release.key")
        assert proc.returncode == 0, err(proc)


def manifest_doc(work: Path) -> dict:
    return json.loads((work / "public" / "myapp" / f"{PLAT}.json").read_bytes())


# ----------------------------------------------------- rollback of a planted .gz


def test_rollback_refuses_a_planted_gz_and_signs_nothing(work):
    signed(work, "1.0", "2.0")
    gz = work / "public" / "myapp" / "1.0" / f"{PLAT}.gz"
    gz.write_bytes(gzip.compress(b"\x7fELF the attacker's binary" * 100))  # same name, other bytes
    before = snapshot(work / "public")
    proc = cli("rollback", "-o", "public", "--cmd-name", "myapp", "--sign-key", "release.key", "1.0", cwd=work)
    assert proc.returncode == 2
    assert "does not hash to the SHA-256" in err(proc) and "restore it from a backup" in err(proc)
    assert snapshot(work / "public") == before


def test_rollback_to_a_version_no_signed_manifest_names_is_refused(work):
    signed(work, "1.0")
    planted = work / "public" / "myapp" / "0.9" / f"{PLAT}.gz"
    planted.parent.mkdir()
    planted.write_bytes(gzip.compress(b"\x7fELF planted" * 100))
    before = snapshot(work / "public")
    proc = cli("rollback", "-o", "public", "--cmd-name", "myapp", "--sign-key", "release.key", "0.9", cwd=work)
    assert proc.returncode == 2
    assert "no manifest signed by the given key(s) names the hash of myapp 0.9" in err(proc)
    assert "pyi-selfupdate release PATH 0.9" in err(proc)
    assert snapshot(work / "public") == before


def test_a_signed_release_keeps_a_signed_record_that_lets_rollback_verify(work):
    signed(work, "1.0", "2.0")
    record = json.loads((work / "public" / "myapp" / "1.0" / f"{PLAT}.json").read_bytes())
    assert record["Version"] == "1.0" and record["Serial"] == 1 and record["Signatures"]
    proc = cli("rollback", "-o", "public", "--cmd-name", "myapp", "--sign-key", "release.key", "1.0", cwd=work)
    assert proc.returncode == 0, err(proc)
    assert (manifest_doc(work)["Version"], manifest_doc(work)["Serial"]) == ("1.0", 3)


# --------------------------------------------- a serial from an unverified manifest


def test_a_stripped_manifest_does_not_restart_the_serials(work):
    signed(work, "1.0", "2.0")
    path = work / "public" / "myapp" / f"{PLAT}.json"
    doc = manifest_doc(work)
    path.write_text(json.dumps({"Version": doc["Version"], "Sha256": doc["Sha256"]}))  # signature stripped
    before = snapshot(work / "public")
    proc = release(work, "3.0", "--sign-key", "release.key")
    assert proc.returncode == 2
    assert "cannot be trusted" in err(proc) and "--serial N" in err(proc) and "restore it" in err(proc)
    assert snapshot(work / "public") == before
    # The publisher checked the tree: an explicit serial above the last one goes through.
    proc = release(work, "3.0", "--sign-key", "release.key", "--serial", "3")
    assert proc.returncode == 0, err(proc)
    assert manifest_doc(work)["Serial"] == 3


def test_a_manifest_signed_by_another_key_is_not_trusted_for_the_serial(work):
    assert cli("keygen", "other.key", cwd=work).returncode == 0
    assert release(work, "1.0", "--sign-key", "other.key", "--serial", "50").returncode == 0
    before = snapshot(work / "public")
    proc = release(work, "2.0", "--sign-key", "release.key")
    assert proc.returncode == 2 and "none of which this app trusts" in err(proc)
    assert snapshot(work / "public") == before


def test_a_deleted_manifest_with_earlier_releases_is_refused(work):
    signed(work, "1.0", "2.0")
    (work / "public" / "myapp" / f"{PLAT}.json").unlink()
    before = snapshot(work / "public")
    proc = release(work, "3.0", "--sign-key", "release.key")
    assert proc.returncode == 2
    assert "is missing, though myapp 1.0, 2.0 are released" in err(proc)
    assert snapshot(work / "public") == before


def test_the_first_signed_release_over_an_unsigned_tree_needs_an_explicit_serial(work):
    assert release(work, "1.0").returncode == 0
    proc = release(work, "2.0", "--sign-key", "release.key")
    assert proc.returncode == 2 and "--serial N" in err(proc)
    proc = release(work, "2.0", "--sign-key", "release.key", "--serial", "1")
    assert proc.returncode == 0, err(proc)
    assert manifest_doc(work)["Serial"] == 1


def test_a_release_killed_before_its_manifest_never_shares_its_serial(work):
    key = generate_private_key()
    out = work / "public"
    build = work / "builds"

    class KilledBeforeTheManifest:
        @hookimpl
        def release_write_file(self, context, relpath, data):
            if relpath == f"myapp/{PLAT}.json":
                raise ReleaseError("killed")
            return None

    release_api(build / "1.0" / "myapp", "1.0", out, platform=PLAT, options={"sign_keys": [key]})
    with pytest.raises(ReleaseError, match="killed"):  # 2.0's record (serial 2) is written, not its manifest
        release_api(build / "2.0" / "myapp", "2.0", out, platform=PLAT, options={"sign_keys": [key]},
                    plugins=[KilledBeforeTheManifest()])
    assert manifest_doc(work)["Version"] == "1.0"
    release_api(build / "3.0" / "myapp", "3.0", out, platform=PLAT, options={"sign_keys": [key]})
    assert (manifest_doc(work)["Version"], manifest_doc(work)["Serial"]) == ("3.0", 3)


# ------------------------------------------------------- diffing from the tree


def test_a_diff_source_that_does_not_match_its_signed_record_is_refused(work):
    signed(work, "1.0", "2.0")
    (work / "public" / "myapp" / "1.0" / f"{PLAT}.gz").write_bytes(gzip.compress(b"\x7fELF swapped" * 100))
    proc = release(work, "3.0", "--sign-key", "release.key")
    assert proc.returncode == 2 and "does not hash to the SHA-256" in err(proc)
    assert manifest_doc(work)["Version"] == "2.0"  # nothing published


def _gzip_bomb(path: Path, size: int) -> None:
    """A gzip file of ``size`` zero bytes (about 1/1000 of it on disk), written as a stream."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    with open(path, "wb") as fh:
        for _ in range(size >> 20):
            fh.write(comp.compress(block))
        fh.write(comp.flush())


@pytest.mark.parametrize("signing", [False, True], ids=["unsigned", "signed"])
def test_a_gzip_bomb_in_the_tree_stops_at_its_bound(work, signing):
    keys = ("--sign-key", "release.key") if signing else ()
    assert release(work, "1.0", *keys).returncode == 0
    bomb = work / "public" / "myapp" / "1.0" / f"{PLAT}.gz"
    _gzip_bomb(bomb, 1100 << 20)  # 1.1 GB of zeros in ~1 MB
    proc, seconds, peak_mib = run_measured("release", "-o", "public", "--platform", PLAT, *keys,
                                           "builds/2.0/myapp", "2.0", cwd=work)
    print(f"\ngzip bomb ({bomb.stat().st_size} bytes -> 1.1 GB), {'signed' if signing else 'unsigned'} "
          f"tree: refused in {seconds:.2f} s, peak RSS {peak_mib:.0f} MiB")
    assert proc.returncode == 2, proc.stderr
    assert "decompresses to more than" in proc.stderr and f"public/myapp/1.0/{PLAT}.gz" in proc.stderr
    assert ("its signed manifest gives" if signing else "LIMITS.release_base_slack") in proc.stderr
    assert peak_mib < 250  # the bound is the new size + 64 MiB, or the signed size (tiny here)
    assert seconds < 60
    assert manifest_doc(work)["Version"] == "1.0"


# --------------------------------------------------------------- symlinks


def test_an_input_link_to_a_secret_outside_is_refused_and_nothing_written(work):
    secret = work / "id_ed25519"
    secret.write_bytes(b"-----BEGIN OPENSSH PRIVATE KEY-----\n" * 50)
    secret.chmod(0o600)
    dist = work / "dist"
    dist.mkdir()
    (dist / PLAT).symlink_to(secret)
    proc = cli("release", "-o", "public", "--cmd-name", "myapp", "dist", "1.0", cwd=work)
    assert proc.returncode == 2
    assert "outside the input folder" in err(proc) and str(secret) in err(proc)
    assert not (work / "public").exists()


def test_a_link_inside_the_input_folder_is_followed(work):
    dist = work / "dist"
    dist.mkdir()
    (dist / ".myapp-build").write_bytes((work / "builds" / "1.0" / "myapp").read_bytes())  # hidden: not an entry
    (dist / PLAT).symlink_to(".myapp-build")
    proc = cli("release", "-o", "public", "--cmd-name", "myapp", "dist", "1.0", cwd=work)
    assert proc.returncode == 0, err(proc)


@pytest.mark.parametrize("where", ["cmd folder", "version folder", "manifest"])
def test_a_link_in_the_output_tree_is_never_followed(work, tmp_path, where):
    signed(work, "1.0")
    elsewhere = tmp_path / "elsewhere"
    app = work / "public" / "myapp"
    if where == "cmd folder":
        app.rename(elsewhere)
        app.symlink_to(elsewhere)
    elif where == "version folder":
        (app / "1.0").rename(elsewhere)
        (app / "1.0").symlink_to(elsewhere)
    else:
        elsewhere.write_bytes((app / f"{PLAT}.json").read_bytes())
        (app / f"{PLAT}.json").unlink()
        (app / f"{PLAT}.json").symlink_to(elsewhere)
    def outside():
        return snapshot(elsewhere) if elsewhere.is_dir() else elsewhere.read_bytes()

    before, outside_before = snapshot(work / "public"), outside()
    proc = release(work, "2.0", "--sign-key", "release.key")
    assert proc.returncode == 2
    assert "is a symbolic link: the release tool never follows links" in err(proc)
    assert snapshot(work / "public") == before
    assert outside() == outside_before


# ----------------------------------------------------------------- options


@pytest.mark.parametrize("days", ["nan", "inf", "1e12", "0", "-3", "4000"])
def test_an_expiry_out_of_range_is_refused_before_anything_is_written(work, days):
    proc = release(work, "1.0", "--sign-key", "release.key", "--expires", days)
    limit = LIMITS.expires_days_max
    assert proc.returncode == 2 and f"--expires must be a number of days above 0 and at most {limit}" in err(proc)
    assert "Traceback" not in err(proc)
    assert not (work / "public").exists()


@pytest.mark.parametrize("flags", [("--expires", "30"), ("--serial", "4")])
def test_signing_options_without_a_key_are_refused(work, flags):
    proc = release(work, "1.0", *flags)
    assert proc.returncode == 2
    assert f"{flags[0]} only apply to a signed release" in err(proc) and "--sign-key" in err(proc)
    assert not (work / "public").exists()


@pytest.mark.parametrize("version, problem", [
    (b"1.0-\xff", "not valid UTF-8"),
    ("1.0 beta", "contains a space"),
    ("C:evil", "Windows cannot hold it"),
    ("CON", "a Windows device name"),
    ("1.0.", "ends with a dot"),
    ("linux-amd64.json", "ends like a file of the tree"),
], ids=["not-utf8", "space", "drive", "device", "trailing-dot", "file-suffix"])
def test_versions_no_client_could_fetch_or_verify_are_refused(work, version, problem):
    proc = cli(b"release", b"-o", b"public", b"--platform", PLAT.encode(), b"--sign-key", b"release.key",
               b"builds/1.0/myapp", os.fsencode(version) if isinstance(version, str) else version, cwd=work)
    assert proc.returncode == 2 and problem in err(proc), err(proc)
    assert not (work / "public").exists()


def test_a_cmd_name_naming_a_windows_drive_is_refused(work):
    proc = release(work, "1.0", "--cmd-name", "C:evil")
    assert proc.returncode == 2 and "Windows cannot hold it" in err(proc)
    assert not (work / "public").exists()


# ------------------------------------------------------------- plugin fields


def test_plugin_fields_are_refused_in_a_signed_release(work):
    class Channel:
        @hookimpl
        def release_manifest_fields(self, context, artifact, manifest):
            return {"Channel": "stable"}

    out = work / "public"
    key = generate_private_key()
    with pytest.raises(ReleaseError, match="'Channel', which the signature does not cover"):
        release_api(work / "builds" / "1.0" / "myapp", "1.0", out, platform=PLAT, plugins=[Channel()],
                    options={"sign_keys": [key]})
    assert not (out / "myapp" / f"{PLAT}.json").exists()
    release_api(work / "builds" / "1.0" / "myapp", "1.0", out, platform=PLAT, plugins=[Channel()])
    assert manifest_doc(work)["Channel"] == "stable"  # unsigned releases keep them, as Go clients do


def test_a_signed_rollback_of_a_folder_release_takes_its_kind_from_the_signed_record(tmp_path):
    from pyi_selfupdate.release._rollback import rollback

    key = generate_private_key()
    out = tmp_path / "public"
    for version in ("1.0", "1.1"):
        app = tmp_path / "builds" / version / "myapp"
        (app / "_internal").mkdir(parents=True)
        (app / "myapp").write_bytes(b"\x7fELF launcher " + version.encode() * 300)
        (app / "myapp").chmod(0o755)
        (app / "_internal" / "lib.so").write_bytes(os.urandom(2000))
        release_api(app, version, out, platform=PLAT, options={"sign_keys": [key]})
    rollback(out, "myapp", "1.0", options={"sign_keys": [key]})
    doc = json.loads((out / "myapp" / f"{PLAT}.json").read_bytes())
    assert (doc["Version"], doc["Kind"], doc["Serial"]) == ("1.0", "folder", 3)
