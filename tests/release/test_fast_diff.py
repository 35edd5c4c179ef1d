"""The fast patch generator (``--diff fast``, the default): BSDIFF40 patches that rebuild the exact
new bytes with every applier, stay within 1.25x of ``bsdiff4.diff``'s size, and hold bounded memory."""

from __future__ import annotations

import gzip
import random
import subprocess
import sys
import zlib

import bsdiff4
import pytest

from pyi_selfupdate._patch import patch_stream
from pyi_selfupdate.errors import ReleaseError
from pyi_selfupdate.release import release
from pyi_selfupdate.release._syncdiff import SMALL, diff

from _installed import python_env

PLAT = "linux-amd64"


def _members(seed: int, count: int) -> list:
    """``count`` archive-like members: text compressed one by one, and binary blobs."""
    rng = random.Random(seed)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz_ ") for _ in range(rng.randint(2, 9)))
             for _ in range(3000)]
    out = []
    for i in range(count):
        if i % 5 == 4:
            out.append(rng.randbytes(rng.randint(20_000, 200_000)))  # a shared library
        else:
            text = b" ".join(rng.choice(words) for _ in range(rng.randint(500, 8000)))
            out.append(zlib.compress(text + b"\n", 9))
    return out


def _app(members: list) -> bytes:
    return b"\x7fELF" + bytes(60) + b"".join(members)


@pytest.fixture(scope="module")
def versions():
    """Two builds of an app of ~6 MB: members edited, one added, one removed, one moved."""
    members = _members(1, 150)
    old = _app(members)
    new_members = list(members)
    rng = random.Random(2)
    for i in (3, 40, 77):  # edited sources (recompressed: every byte after the edit differs)
        new_members[i] = zlib.compress(zlib.decompress(members[i]) + b"# edited\n", 9)
    new_members.insert(60, rng.randbytes(150_000))  # a new library
    del new_members[90]  # a removed module
    new_members.append(new_members.pop(10))  # a member moved to the end
    new = _app(new_members)
    assert len(old) > SMALL and len(new) > SMALL
    return old, new


def test_fast_patches_rebuild_the_new_bytes_and_stay_within_1_25x_of_bsdiff4(versions):
    old, new = versions
    patch = diff(old, new)
    assert patch[:8] == b"BSDIFF40"
    assert bsdiff4.patch(old, patch) == new  # the reference applier
    out = bytearray()
    patch_stream(lambda at, n: old[at:at + n], len(old), patch, out.extend, max_new_size=len(new))
    assert bytes(out) == new  # the streaming client
    reference = bsdiff4.diff(old, new)
    assert len(patch) <= 1.25 * len(reference), (len(patch), len(reference))


def test_unrelated_inputs_still_rebuild_exactly():
    # no run in common: every gap goes to bsdiff4 in bounded pieces
    rng = random.Random(3)
    old, new = rng.randbytes(SMALL + 300_000), rng.randbytes(2 * SMALL + 123)
    assert bsdiff4.patch(old, diff(old, new)) == new


def test_runs_of_zeros_and_repeats_rebuild_exactly():
    rng = random.Random(4)
    block = rng.randbytes(70_000)
    old = bytes(SMALL) + block * 8 + bytes(100_000)
    new = bytes(SMALL + 5) + block * 5 + b"x" + block * 4 + bytes(3)
    assert bsdiff4.patch(old, diff(old, new)) == new


def _bspatch() -> str:
    """Debian's bspatch, installed with apt-get (as root) when missing; the test fails without it."""
    import os
    import shutil

    if shutil.which("bspatch") is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for args in (["apt-get", "install", "-y", "-q", "--no-install-recommends", "bsdiff"],
                     ["apt-get", "update", "-q"],
                     ["apt-get", "install", "-y", "-q", "--no-install-recommends", "bsdiff"]):
            subprocess.run(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
            if shutil.which("bspatch"):
                break
    bspatch = shutil.which("bspatch")
    if bspatch is None:
        pytest.fail("Debian's bspatch is needed to check that fast patches apply with it: "
                    "apt-get install bsdiff (as root)")
    return bspatch


def test_debian_bspatch_applies_fast_patches(tmp_path, versions):
    bspatch = _bspatch()
    old, new = versions
    (tmp_path / "old").write_bytes(old)
    (tmp_path / "patch").write_bytes(diff(old, new))
    subprocess.run([bspatch, str(tmp_path / "old"), str(tmp_path / "new"), str(tmp_path / "patch")], check=True)
    assert (tmp_path / "new").read_bytes() == new


@pytest.mark.parametrize("workers", [1, 2])
def test_release_reports_bytes_matched_and_writes_verified_patches(tmp_path, versions, workers):
    old, new = versions
    out = tmp_path / "public"
    lines = []
    for v, data in (("1.0", old), ("1.1", old[:-1000]), ("2.0", new)):
        (tmp_path / v).write_bytes(data)
        release(tmp_path / v, v, out=out, cmd_name="app", platform=PLAT, progress=lines.append,
                options={"diff_workers": workers})
    total = f"{len(new) / 1e6:.1f} MB"
    for old_version in ("1.0", "1.1"):
        assert f"diffing {old_version} -> 2.0: {total} of {total} matched (100%)" in lines
    for old_version, data in (("1.0", old), ("1.1", old[:-1000])):
        patch = (out / "app" / old_version / "2.0" / PLAT).read_bytes()
        assert bsdiff4.patch(data, patch) == new


def test_bsdiff4_generator_writes_the_reference_patch(tmp_path, versions):
    old, new = versions
    out = tmp_path / "public"
    for v, data in (("1.0", old[:SMALL + 10]), ("2.0", old[:SMALL + 5000] + b"tail")):
        (tmp_path / v).write_bytes(data)
        release(tmp_path / v, v, out=out, cmd_name="app", platform=PLAT, options={"diff": "bsdiff4"})
    assert (out / "app" / "1.0" / "2.0" / PLAT).read_bytes() == \
        bsdiff4.diff(old[:SMALL + 10], old[:SMALL + 5000] + b"tail")


def test_an_unknown_generator_is_refused_before_anything_is_written(tmp_path):
    (tmp_path / "app").write_bytes(b"\x7fELF" + bytes(100))
    with pytest.raises(ReleaseError, match=r"no patch generator 'quick'; use --diff fast or --diff bsdiff4"):
        release(tmp_path / "app", "1.0", out=tmp_path / "public", platform=PLAT, options={"diff": "quick"})
    assert not (tmp_path / "public").exists()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyi_selfupdate", *args], env=python_env(),
                          capture_output=True, text=True, timeout=120)


def test_cli_jobs_and_verbose_memory_plan(tmp_path, go_vectors):
    out = tmp_path / "public"
    single = go_vectors / "payloads" / "single"
    for v in ("1.0", "1.1", "1.2"):
        proc = _cli("-v", "release", str(single / v), v, "-o", str(out), "--platform", PLAT,
                    "--cmd-name", "myapp", "--jobs", "1")
        assert proc.returncode == 0, proc.stderr
    assert "diff memory plan: 2 patch(es) with fast, 1 at once; the new release (" in proc.stderr
    assert "so about " in proc.stderr and " in all (--jobs N changes how many run at once)" in proc.stderr
    # small inputs: the fast generator's patch is the reference one
    for rel in ("myapp/1.0/1.2/linux-amd64", "myapp/1.1/1.2/linux-amd64"):
        assert (out / rel).read_bytes() == (go_vectors / "public" / rel).read_bytes()
    assert gzip.decompress((out / "myapp" / "1.2" / "linux-amd64.gz").read_bytes()) == (single / "1.2").read_bytes()


@pytest.mark.parametrize("args, message", [
    (["--jobs", "0"], "'0' is not a number of jobs from 1 to 64"),
    (["--diff", "quick"], "invalid choice: 'quick'"),
])
def test_cli_refuses_bad_diff_options(tmp_path, go_vectors, args, message):
    proc = _cli("release", str(go_vectors / "payloads" / "single" / "1.0"), "1.0", "-o", str(tmp_path / "o"),
                *args)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert not (tmp_path / "o").exists()


def test_a_patch_that_does_not_rebuild_the_release_is_never_published(tmp_path, versions, monkeypatch):
    # a generator bug: the patch rebuilds other bytes; clients would fetch it, fail the hash and
    # fetch the full .gz. It is applied once before it is written, and refused.
    from pyi_selfupdate.protocol import decode_manifest
    from pyi_selfupdate.release import _syncdiff

    old, new = versions
    out = tmp_path / "public"
    (tmp_path / "1.0").write_bytes(old)
    (tmp_path / "2.0").write_bytes(new)
    release(tmp_path / "1.0", "1.0", out=out, cmd_name="app", platform=PLAT)
    monkeypatch.setattr(_syncdiff, "diff", lambda a, b, progress=None, check=None: bsdiff4.diff(a[0:len(a)], b[:-1] + b"?"))
    with pytest.raises(ReleaseError, match="does not rebuild the new release; release again with --diff bsdiff4"):
        release(tmp_path / "2.0", "2.0", out=out, cmd_name="app", platform=PLAT, options={"diff_workers": 1})
    assert not (out / "app" / "1.0" / "2.0" / PLAT).exists()
    assert decode_manifest((out / "app" / f"{PLAT}.json").read_bytes()).version == "1.0"


def test_the_gz_is_one_member_of_pieces_that_every_gunzip_reads(tmp_path, monkeypatch):
    # compressed a piece at a time on every core (incompressible pieces stored), joined into one
    # ordinary gzip member: Python's gzip, the client's reader and gzip(1) all read it
    from pyi_selfupdate._patch import gunzip_to
    from pyi_selfupdate.release._builtin import compress

    rng = random.Random(5)
    noise = rng.randbytes(3 << 20)  # like a onefile app's already-compressed payload
    text = b"".join(b"def f%d(x):\n    return x * %d  # %s\n" % (i, i % 97, b"ab" * (i % 13))
                    for i in range(120_000))
    data = noise + text + b"tail"
    (tmp_path / "app").write_bytes(data)
    release(tmp_path / "app", "1.0", out=tmp_path / "public", platform=PLAT)
    gz = (tmp_path / "public" / "app" / "1.0" / f"{PLAT}.gz").read_bytes()
    assert gz.count(b"\x1f\x8b\x08\x00\x00\x00\x00\x00") == 1  # one member, zero timestamp
    assert gzip.decompress(gz) == data
    out = bytearray()
    view = memoryview(gz)
    pos = [0]

    def read(n: int) -> bytes:
        chunk = bytes(view[pos[0]:pos[0] + n])
        pos[0] += len(chunk)
        return chunk

    size, _ = gunzip_to(read, out.extend, max_size=len(data), source="the .gz")  # the client's reader
    assert size == len(data) and bytes(out) == data
    system = subprocess.run(["gzip", "-dc"], input=gz, capture_output=True, check=True).stdout
    assert system == data
    # the noise is stored (a few bytes per 64 KiB block), the text about as small as in one pass
    whole = len(zlib.compress(text, compress.LEVEL))
    assert len(gz) <= len(noise) + 5 * (len(noise) // 65535 + 2) + whole * 1.01 + 64
    # the same bytes whatever the number of cores
    monkeypatch.setattr(compress.os, "cpu_count", lambda: 1)
    assert compress.gzip_bytes(data) == gz
    assert gzip.decompress(compress.gzip_bytes(b"")) == b""


def test_the_old_release_read_from_a_file_gives_the_same_patch(tmp_path, versions):
    # the release tool reads an earlier release where the diff looks (a FileView over a temporary
    # file), never whole: the patch is the one the same bytes in memory give
    from pyi_selfupdate.release._syncdiff import FileView

    old, new = versions
    (tmp_path / "old").write_bytes(old)
    with open(tmp_path / "old", "rb") as fh:
        view = FileView(fh.fileno(), len(old))
        assert len(view) == len(old) and view[len(old) - 1] == old[-1] and view[-1] == old[-1]
        assert view[5:70000] == old[5:70000] and view[len(old) - 10:len(old) + 10] == old[-10:]
        patch = diff(view, new)
    assert patch == diff(old, new)
    assert bsdiff4.patch(old, patch) == new


def test_the_file_view_reads_the_same_without_pread(tmp_path, versions, monkeypatch):
    # Windows has no os.pread: the view seeks and reads instead
    from pyi_selfupdate.release import _syncdiff

    old, new = versions
    (tmp_path / "old").write_bytes(old)
    monkeypatch.setattr(_syncdiff, "_PREAD", None)
    with open(tmp_path / "old", "rb") as fh:
        view = _syncdiff.FileView(fh.fileno(), len(old))
        assert view[100:200_000] == old[100:200_000] and view[-1] == old[-1]
        assert diff(view, new) == diff(old, new)


@pytest.mark.parametrize("at, n", [(200_000, 64_513), (200_000, 65_000), (200_000, 65_535), (10, 65_500),
                                   (1_000, 64_600), (0, 65_536), (len(b"") + 300, 1)])
def test_the_file_view_returns_every_byte_asked_for(tmp_path, at, n):
    # reads just under the window size, and reads near the start, once came back short
    from pyi_selfupdate.release._syncdiff import FileView

    data = random.Random(3).randbytes(1 << 20)
    (tmp_path / "f").write_bytes(data)
    with open(tmp_path / "f", "rb") as fh:
        view = FileView(fh.fileno(), len(data))
        view[at + 5000:at + 5001]  # a window somewhere else first
        assert view[at:at + n] == data[at:at + n]
        assert view[at:at + n] == data[at:at + n]  # and from the window it left


def test_a_patch_check_reads_old_bytes_in_any_batch_size(tmp_path, versions):
    # the patch check reads the old release through the view in the client's batch sizes
    from pyi_selfupdate.release._builtin.diff import _verify
    from pyi_selfupdate.release._syncdiff import FileView
    import hashlib

    old, _ = versions
    new = old[100_000:165_000] + old[:SMALL]
    (tmp_path / "old").write_bytes(old)
    with open(tmp_path / "old", "rb") as fh:
        _verify(FileView(fh.fileno(), len(old)), bsdiff4.diff(old, new), hashlib.sha256(new).digest(), len(new))


def test_stopping_the_release_stops_its_diff_threads(tmp_path):
    # an error or Ctrl-C in the release's own thread (say, while it compresses) stops the diffs
    # running in threads at their next check instead of waiting for them to finish
    import threading
    import time as _time

    from pyi_selfupdate.release._builtin.diff import _Pool, _Progress
    from pyi_selfupdate.release._model import PatchJob

    class _Context:
        lines: list = []

        def report(self, line):
            self.lines.append(line)

    progress = _Progress(_Context())
    started = threading.Event()

    def endless(job):
        started.set()
        while True:
            progress("1.0 -> 2.0", 1, 2)
            progress.check()
            _time.sleep(0.01)

    jobs = [PatchJob(v, tmp_path / "x.gz", tmp_path / "new", b"", f"app/{v}/2.0/{PLAT}") for v in ("1.0", "1.1", "1.2")]
    pool = _Pool(2, jobs, endless, progress)
    assert started.wait(10)
    t0 = _time.monotonic()
    pool.close()
    assert _time.monotonic() - t0 < 2
    assert not [t for t in threading.enumerate() if t.name.startswith("pyi-selfupdate-diff")]
    assert _Context.lines and _Context.lines[0].startswith("diffing 1.0 -> 2.0:")  # reported here
