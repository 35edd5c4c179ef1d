"""Publishing to S3 as a user does it: the CLI against a real S3 protocol server (moto, server mode)
on 127.0.0.1, driven by boto3 as against AWS, and apps reading the bucket over HTTP."""

from __future__ import annotations

import gzip
import os
import random
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Dict, List

import pytest
import requests

from pyi_selfupdate import Updater
from pyi_selfupdate.protocol import decode_manifest
from pyi_selfupdate.release import hookimpl, publish, release
from pyi_selfupdate.release.keys import generate_private_key, write_private_key

from _installed import python_env

PLAT = "linux-amd64"


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyi_selfupdate", *args], env=python_env(),
                          capture_output=True, text=True, timeout=300)


@pytest.fixture
def single(go_vectors: Path) -> Path:
    return go_vectors / "payloads" / "single"


def _release(single: Path, out: Path, version: str, *extra: str) -> subprocess.CompletedProcess:
    proc = _cli("release", str(single / version), version, "-o", str(out), "--platform", PLAT,
                "--cmd-name", "myapp", *extra)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture
def key(tmp_path: Path):
    k = generate_private_key()
    path = tmp_path / "release.key"
    write_private_key(str(path), k)
    return path, k.public_key_text


def test_publish_a_release_and_an_app_updates_from_the_bucket(tmp_path, single, moto_s3):
    bucket = moto_s3.new_bucket()
    dest, ep = f"s3://{bucket}/updates", ("--endpoint-url", moto_s3.endpoint)
    out = tmp_path / "public"
    for v in ("1.0", "1.1"):
        _release(single, out, v)
    first = _cli("publish", str(out), dest, *ep)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().endswith(f"0 unchanged, to {dest}")
    proc = _release(single, out, "1.2", "--publish", dest, *ep)
    # progress: each upload in order, the manifest last; then the summary
    uploads = [line.split()[3] for line in proc.stderr.splitlines() if "uploaded " in line and "/" in line]
    assert uploads == ["myapp/1.0/1.2/linux-amd64", "myapp/1.1/1.2/linux-amd64", "myapp/1.2/linux-amd64.gz",
                       "myapp/linux-amd64.json"]
    assert "uploaded 4 file(s)" in proc.stdout and "3 unchanged" in proc.stdout

    base = f"{moto_s3.endpoint}/{bucket}/updates/"
    head = requests.get(base + "myapp/linux-amd64.json", timeout=10)
    assert head.headers["Cache-Control"] == "no-cache"
    assert head.headers["Content-Type"] == "application/json"
    gz = requests.get(base + "myapp/1.2/linux-amd64.gz", timeout=10)
    assert "immutable" in gz.headers["Cache-Control"] and gz.headers["Content-Type"] == "application/gzip"
    assert "Content-Encoding" not in gz.headers
    assert gzip.decompress(gz.content) == (single / "1.2").read_bytes()
    patch = requests.get(base + "myapp/1.0/1.2/linux-amd64", timeout=10)
    assert "immutable" in patch.headers["Cache-Control"]

    # an installed 1.0 updates from the bucket over plain HTTP, through the patch
    app = tmp_path / "app" / "myapp"
    app.parent.mkdir()
    app.write_bytes((single / "1.0").read_bytes())
    result = Updater(current_version="1.0", api_url=base, cmd_name="myapp", platform=PLAT, target=app).update()
    assert (result.to_version, result.method) == ("1.2", "patch")
    assert app.read_bytes() == (single / "1.2").read_bytes()

    # publishing again uploads nothing
    again = _cli("publish", str(out), dest, *ep)
    assert again.returncode == 0, again.stderr
    assert "uploaded 0 file(s) (0 B), 7 unchanged" in again.stdout


def test_dry_run_prints_the_order_and_uploads_nothing(tmp_path, single, moto_s3, key):
    bucket = moto_s3.new_bucket()
    out = tmp_path / "public"
    for v in ("1.0", "1.1"):
        _release(single, out, v, "--sign-key", str(key[0]))
    proc = _cli("publish", str(out), f"s3://{bucket}", "--endpoint-url", moto_s3.endpoint, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    order = [line.split()[3] for line in lines if line.startswith("would upload ") and "file(s)" not in line]
    assert order == [
        "myapp/1.0/1.1/linux-amd64", "myapp/1.0/linux-amd64.gz", "myapp/1.1/linux-amd64.gz",  # files
        "myapp/1.0/linux-amd64.json", "myapp/1.1/linux-amd64.json",  # signed records
        "myapp/linux-amd64.json",  # the manifest, last
    ]
    assert lines[-1].startswith("would upload 6 file(s)")
    assert moto_s3.keys(bucket) == {}


def test_a_released_file_with_other_bytes_in_the_bucket_is_refused_and_nothing_is_uploaded(
        tmp_path, single, moto_s3):
    bucket = moto_s3.new_bucket()
    dest, ep = f"s3://{bucket}/p", ("--endpoint-url", moto_s3.endpoint)
    out = tmp_path / "public"
    _release(single, out, "1.0")
    assert _cli("publish", str(out), dest, *ep).returncode == 0
    other = gzip.compress(b"another build released as 1.0")
    moto_s3.client().put_object(Bucket=bucket, Key="p/myapp/1.0/linux-amd64.gz", Body=other)
    _release(single, out, "1.1")
    proc = _cli("publish", str(out), dest, *ep)
    assert proc.returncode == 2
    assert "already holds myapp/1.0/linux-amd64.gz with other bytes" in proc.stderr
    assert "nothing was uploaded" in proc.stderr
    held = moto_s3.keys(bucket)
    assert "p/myapp/1.1/linux-amd64.gz" not in held
    assert decode_manifest(held["p/myapp/linux-amd64.json"]).version == "1.0"


def test_an_older_tree_never_takes_the_bucket_back(tmp_path, single, moto_s3):
    bucket = moto_s3.new_bucket()
    dest, ep = f"s3://{bucket}", ("--endpoint-url", moto_s3.endpoint)
    old, new = tmp_path / "old", tmp_path / "new"
    _release(single, old, "1.0")
    shutil.copytree(old, new)
    _release(single, new, "1.1")
    assert _cli("publish", str(new), dest, *ep).returncode == 0
    proc = _cli("publish", str(old), dest, *ep)
    assert proc.returncode == 2
    assert "names version 1.1, which" in proc.stderr and "take clients back to 1.0" in proc.stderr
    assert decode_manifest(moto_s3.keys(bucket)["myapp/linux-amd64.json"]).version == "1.1"


def _signed_bucket(tmp_path, single, moto_s3, key):
    """Signed 1.0 and 1.1 released into ``tmp_path/local`` and published to a new bucket:
    ``(bucket, dest, endpoint args, sign args, local tree)``."""
    bucket = moto_s3.new_bucket()
    dest, ep = f"s3://{bucket}/u", ("--endpoint-url", moto_s3.endpoint)
    sign = ("--sign-key", str(key[0]))
    local = tmp_path / "local"
    for v in ("1.0", "1.1"):
        _release(single, local, v, *sign)
    assert _cli("publish", str(local), dest, *ep).returncode == 0
    return bucket, dest, ep, sign, local


def test_release_from_the_bucket_makes_the_same_patches_as_a_local_tree(tmp_path, single, moto_s3, key):
    bucket, dest, ep, sign, local = _signed_bucket(tmp_path, single, moto_s3, key)
    ci = tmp_path / "ci"  # a fresh CI machine: nothing but the bucket
    proc = _release(single, ci, "1.2", *sign, "--from", dest, "--publish", dest, *ep)
    _release(single, local, "1.2", *sign)
    for old in ("1.0", "1.1"):
        rel = f"myapp/{old}/1.2/{PLAT}"
        assert (ci / rel).read_bytes() == (local / rel).read_bytes()
    same_serial = [decode_manifest((t / "myapp" / f"{PLAT}.json").read_bytes()).extra["Serial"]
                   for t in (ci, local)]
    assert same_serial == [3, 3]
    # only what the diff needs came back: no patch between earlier releases
    assert not (ci / "myapp" / "1.0" / "1.1").exists()
    assert "fetched myapp/1.1/linux-amd64.gz" in proc.stderr
    held = moto_s3.keys(bucket)
    assert decode_manifest(held["u/myapp/linux-amd64.json"]).version == "1.2"


def test_a_planted_gz_in_the_bucket_is_refused_when_signing_is_on(tmp_path, single, moto_s3, key):
    bucket, dest, ep, sign, local = _signed_bucket(tmp_path, single, moto_s3, key)
    planted = gzip.compress(b"\x7fELF a binary the publisher never built" * 100, mtime=0)
    moto_s3.client().put_object(Bucket=bucket, Key="u/myapp/1.1/linux-amd64.gz", Body=planted)
    ci = tmp_path / "ci"
    proc = _cli("release", str(single / "1.2"), "1.2", "-o", str(ci), "--platform", PLAT, "--cmd-name", "myapp",
                *sign, "--from", dest, "--publish", dest, *ep)
    assert proc.returncode == 2
    error = proc.stderr.strip().splitlines()[-1]
    assert "linux-amd64.gz" in error and "does not hash to the SHA-256" in error
    held = moto_s3.keys(bucket)  # nothing of 1.2 reached the bucket
    assert decode_manifest(held["u/myapp/linux-amd64.json"]).version == "1.1"
    assert not [k for k in held if "1.2" in k]


def test_an_unknown_destination_is_a_clear_error(tmp_path, single):
    out = tmp_path / "public"
    _release(single, out, "1.0")
    proc = _cli("publish", str(out), "ftp://example.com/x")
    assert proc.returncode == 2
    assert "no publisher takes 'ftp://example.com/x'" in proc.stderr
    proc = _cli("release", str(single / "1.1"), "1.1", "-o", str(out), "--platform", PLAT, "--dry-run")
    assert proc.returncode == 2 and "--dry-run applies to --publish DEST" in proc.stderr
    assert not (out / "myapp" / "1.1").exists()


def test_a_third_party_publisher_gets_the_files_in_order(tmp_path, single):
    """The README's example shape: a plugin taking its own scheme through release_publish."""
    from pyi_selfupdate.release import PublishSummary

    class CopyPublisher:
        @hookimpl
        def release_publish(self, publication):
            if not publication.destination.startswith("copy://"):
                return None
            target = Path(publication.destination[len("copy://"):])
            summary = PublishSummary(publication.destination)
            for relpath in publication.files:  # in order: manifests last
                path = target / relpath
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(publication.read(relpath))
                summary.uploaded.append(relpath)
            return summary

    out = tmp_path / "public"
    _release(single, out, "1.0")
    _release(single, out, "1.1")
    mirror = tmp_path / "mirror"
    summary = publish(out, f"copy://{mirror}", plugins=[CopyPublisher()])
    assert summary.uploaded[-1] == "myapp/linux-amd64.json"
    assert (mirror / "myapp" / "1.0" / "1.1" / PLAT).read_bytes() == (out / "myapp" / "1.0" / "1.1" / PLAT).read_bytes()


# ------------------------------------------------------------- kill -9 trials

def _builds(root: Path, versions: List[str], plats: List[str]) -> Dict[str, Path]:
    """``<os>-<arch>`` folders of 600 kB builds differing a little between versions."""
    rng = random.Random(7)
    base = {p: bytearray(rng.randbytes(600_000)) for p in plats}
    folders = {}
    for i, v in enumerate(versions):
        folder = root / v
        folder.mkdir(parents=True)
        for p in plats:
            data = bytearray(base[p])
            data[1000 * (i + 1): 1000 * (i + 1) + 16] = v.encode().ljust(16, b"-")
            (folder / p).write_bytes(bytes(data))
        folders[v] = folder
    return folders


@pytest.mark.e2e
def test_kill_9_mid_publish_leaves_a_complete_release_and_the_rerun_completes_it(tmp_path, moto_s3, key):
    """Real SIGKILLs of `pyi-selfupdate publish` at random points: an app reading the bucket over
    HTTP always gets a complete 1.1 or a complete 1.2, and the same command then completes it."""
    plats = ["linux-amd64", "windows-amd64", "darwin-arm64"]
    builds = _builds(tmp_path / "builds", ["1.0", "1.1", "1.2"], plats)
    keyfile, public = key
    old, new = tmp_path / "old", tmp_path / "new"
    for v in ("1.0", "1.1"):
        release(builds[v], v, old, cmd_name="app", options={"sign_keys": [str(keyfile)]})
    shutil.copytree(old, new)
    release(builds["1.2"], "1.2", new, cmd_name="app", options={"sign_keys": [str(keyfile)]})
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    seen = {"1.1": 0, "1.2": 0}
    completed_by_rerun = []
    for trial in range(20):
        bucket = moto_s3.new_bucket()
        dest = f"s3://{bucket}/rel"
        publish(old, dest, options={"endpoint_url": moto_s3.endpoint})
        kill_after = rng.randrange(0, 16)  # 15 uploads: 3 .gz, 6 patches, 3 records, 3 manifests
        proc = subprocess.Popen([sys.executable, "-m", "pyi_selfupdate", "publish", str(new), dest,
                                 "--endpoint-url", moto_s3.endpoint], env=python_env(),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        uploaded = 0
        while uploaded < kill_after:
            line = proc.stderr.readline()
            if not line:
                break
            uploaded += "uploaded " in line
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        base = f"{moto_s3.endpoint}/{bucket}/rel/"
        for i, plat in enumerate(plats):
            start = "1.0" if i == 0 else "1.1"
            app = tmp_path / f"t{trial}" / plat / "app"
            app.parent.mkdir(parents=True)
            app.write_bytes((builds[start] / plat).read_bytes())
            up = Updater(current_version=start, api_url=base, cmd_name="app", platform=plat, target=app,
                         public_keys=[public])
            result = up.update()
            got = result.to_version if result else start
            assert got in ("1.1", "1.2"), f"seed {seed} trial {trial}: {plat} at {got}"
            assert app.read_bytes() == (builds[got] / plat).read_bytes(), f"seed {seed} trial {trial}"
            if got == "1.2":
                assert result.method == "patch", f"seed {seed} trial {trial}: the patch was missing"
            seen[got] += 1
        rerun = _cli("publish", str(new), dest, "--endpoint-url", moto_s3.endpoint)
        assert rerun.returncode == 0, rerun.stderr
        completed_by_rerun.append(int(rerun.stdout.split("uploaded ")[1].split()[0]))
        for plat in plats:
            m = decode_manifest(requests.get(f"{base}app/{plat}.json", timeout=10).content)
            assert m.version == "1.2"
    # the kills landed before, during and after the manifests
    assert seen["1.1"] and seen["1.2"], seen
    assert any(0 < n < 15 for n in completed_by_rerun), completed_by_rerun
    print(f"seed {seed}: apps saw {seen}; re-runs uploaded {completed_by_rerun}")


def test_a_missing_bucket_and_missing_credentials_are_clear_errors(tmp_path, single, moto_s3):
    out = tmp_path / "public"
    _release(single, out, "1.0")
    proc = _cli("publish", str(out), "s3://no-such-bucket-here/x", "--endpoint-url", moto_s3.endpoint)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "pyi-selfupdate: error: the bucket 'no-such-bucket-here' does not exist (s3://no-such-bucket-here/x); "
        "create it, or check its name and --endpoint-url")
    env = {k: v for k, v in python_env().items() if not k.startswith("AWS_ACCESS") and k != "AWS_SECRET_ACCESS_KEY"}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    bucket = moto_s3.new_bucket()
    proc = subprocess.run([sys.executable, "-m", "pyi_selfupdate", "publish", str(out), f"s3://{bucket}",
                           "--endpoint-url", moto_s3.endpoint], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "no AWS credentials were found" in proc.stderr and "AWS_PROFILE" in proc.stderr
    assert moto_s3.keys(bucket) == {}


def test_the_readme_rsync_publisher_runs_its_two_passes_files_first(tmp_path, single, monkeypatch):
    """The README's example, as printed, against an `rsync` stand-in that records how it is called."""
    import re
    import types

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    code = re.search(r"An rsync publisher:\n\n```python\n(.*?)```", readme, re.S).group(1)
    module = types.ModuleType("rsync_publisher")
    exec(compile(code, "README.md", "exec"), module.__dict__)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    (bin_dir / "rsync").write_text(f"#!{sys.executable}\nimport sys\n"
                                   f"open({str(calls)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')\n")
    (bin_dir / "rsync").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "public"
    _release(single, out, "1.0")
    _release(single, out, "1.1")
    summary = publish(out, "rsync:host:/srv/www/updates", plugins=[module])
    assert summary.uploaded[-1] == "myapp/linux-amd64.json"
    first, second = calls.read_text().splitlines()
    assert "--exclude=*.json" in first.split() and "--exclude=*.json" not in second.split()
    assert first.endswith(f"{out}/ host:/srv/www/updates") and second.endswith(f"{out}/ host:/srv/www/updates")
    with pytest.raises(Exception, match="no publisher takes"):
        publish(out, "sftp://host/x", plugins=[module])
