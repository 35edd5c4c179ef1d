"""The canonical archive of an app folder (pyi_selfupdate.archive) and the streaming patch."""

from __future__ import annotations

import io
import os
import random
import subprocess
import tarfile
from pathlib import Path

import bsdiff4
import pytest

from pyi_selfupdate._patch import patch_stream
from pyi_selfupdate.archive import ArchiveError, FolderArchive, Unpacker
from pyi_selfupdate.errors import PatchError


def make_bundle(root: Path) -> Path:
    """A folder shaped like a onedir app and a macOS bundle at once: files, modes, links, long names."""
    (root / "_internal" / "sub" / "empty").mkdir(parents=True)
    (root / "app").write_bytes(os.urandom(5000))
    (root / "app").chmod(0o700)
    (root / "_internal" / "base_library.zip").write_bytes(os.urandom(20000))
    (root / "_internal" / "data.txt").write_text("hello")
    deep = root / "_internal" / ("x" * 90) / ("y" * 95)
    deep.mkdir(parents=True)
    (deep / ("z" * 99)).write_text("split into prefix and name")
    (root / "_internal" / ("q" * 120)).mkdir()
    (root / "_internal" / ("q" * 120) / "w").write_text("needs a pax header")
    (root / "_internal" / "ünïcode.txt").write_text("utf-8 names")
    frameworks = root / "Contents" / "Frameworks" / "Py.framework"
    (frameworks / "Versions" / "A").mkdir(parents=True)
    (frameworks / "Versions" / "A" / "Py").write_bytes(b"\x7fMACHO")
    (frameworks / "Versions" / "Current").symlink_to("A")
    (frameworks / "Py").symlink_to("Versions/Current/Py")
    return root


def archive_bytes(root: Path) -> bytes:
    with FolderArchive(root) as archive:
        data = b"".join(archive.stream(chunk=4099))
        assert len(data) == archive.size
    return data


def test_archive_is_plain_tar_with_normalized_metadata(tmp_path):
    data = archive_bytes(make_bundle(tmp_path / "app"))
    members = tarfile.open(fileobj=io.BytesIO(data)).getmembers()
    names = [m.name for m in members]
    assert names == sorted(names, key=lambda n: n.encode())
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 and not m.uname for m in members)
    modes = {m.name: (m.type, m.mode) for m in members}
    assert modes["app"] == (tarfile.REGTYPE, 0o755)
    assert modes["_internal/data.txt"] == (tarfile.REGTYPE, 0o644)
    assert modes["_internal/sub/empty"] == (tarfile.DIRTYPE, 0o755)
    link = next(m for m in members if m.name.endswith("Versions/Current"))
    assert link.issym() and link.linkname == "A"
    assert f"_internal/{'q' * 120}/w" in names  # a pax header carried the long name
    listing = subprocess.run(["tar", "-tf", "-"], input=data, capture_output=True, check=True).stdout
    assert len(listing.splitlines()) == len(members)  # GNU tar reads it too


def test_archive_depends_on_contents_only(tmp_path):
    first = archive_bytes(make_bundle(tmp_path / "a"))
    other = tmp_path / "b"
    other.mkdir()
    unpacker = Unpacker(other / "app")
    for i in range(0, len(first), 1000):
        unpacker.write(first[i:i + 1000])
    unpacker.close()
    os.utime(other / "app" / "app", (1, 1))
    (other / "app" / "_internal" / "data.txt").chmod(0o600)
    assert archive_bytes(other / "app") == first
    (other / "app" / "_internal" / "data.txt").chmod(0o700)  # an execute bit is content
    assert archive_bytes(other / "app") != first


def test_random_reads_match_the_stream(tmp_path):
    root = make_bundle(tmp_path / "app")
    data = archive_bytes(root)
    rng = random.Random(7)
    with FolderArchive(root) as archive:
        for _ in range(300):
            offset, n = rng.randrange(len(data)), rng.randrange(6000)
            assert archive.read_at(offset, n) == data[offset:offset + n]


def test_links_leaving_the_folder_and_special_files_are_refused(tmp_path):
    root = tmp_path / "app"
    root.mkdir()
    (root / "out").symlink_to("../../etc/passwd")
    with pytest.raises(ArchiveError, match="outside the app folder"):
        FolderArchive(root)
    (root / "out").unlink()
    (root / "abs").symlink_to("/etc/passwd")
    with pytest.raises(ArchiveError, match="outside the app folder"):
        FolderArchive(root)
    (root / "abs").unlink()
    os.mkfifo(root / "fifo")
    with pytest.raises(ArchiveError, match="neither a file"):
        FolderArchive(root)


def _tar(members) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


@pytest.mark.parametrize("name,kind,link", [
    ("../evil", tarfile.REGTYPE, ""),
    ("/abs", tarfile.REGTYPE, ""),
    ("a/../../evil", tarfile.REGTYPE, ""),
    ("ln", tarfile.SYMTYPE, "../outside"),
    ("dev", tarfile.CHRTYPE, ""),
])
def test_unpacker_refuses_what_would_leave_the_folder(tmp_path, name, kind, link):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    data = b"x" if kind == tarfile.REGTYPE else None
    info.size = len(data or b"")
    with pytest.raises(ArchiveError):
        Unpacker(tmp_path / "dest").write(_tar([(info, data)]))
    assert not (tmp_path / "evil").exists() and not (tmp_path / "outside").exists()


def test_unpacker_never_writes_through_a_link(tmp_path):
    (tmp_path / "dest-sibling").mkdir()
    link = tarfile.TarInfo("sub")
    link.type, link.linkname = tarfile.SYMTYPE, "."
    inner = tarfile.TarInfo("sub/file")
    inner.size = 1
    with pytest.raises(ArchiveError, match="through a link"):
        Unpacker(tmp_path / "dest").write(_tar([(link, None), (inner, b"x")]))


def test_truncated_archive_is_refused(tmp_path):
    data = archive_bytes(make_bundle(tmp_path / "app"))
    unpacker = Unpacker(tmp_path / "dest")
    unpacker.write(data[:-1024])
    with pytest.raises(ArchiveError, match="truncated"):
        unpacker.close()


def test_streaming_patch_matches_bsdiff4_on_random_edits():
    rng = random.Random(3)
    for _ in range(40):
        old = bytearray(rng.randbytes(rng.randrange(0, 150_000)))
        new = bytearray(old)
        for _ in range(rng.randrange(0, 15)):
            if new:
                i = rng.randrange(len(new))
                new[i:i + rng.randrange(500)] = rng.randbytes(rng.randrange(700))
        old, new = bytes(old), bytes(new)
        patch = bsdiff4.diff(old, new)
        out = io.BytesIO()
        size = patch_stream(lambda o, n: old[o:o + n], len(old), patch, out.write,
                            max_new_size=1 << 30, chunk=rng.choice([13, 4096, 1 << 20]))
        assert (size, out.getvalue()) == (len(new), new)


def test_streaming_patch_applies_to_a_folder_archive_without_building_it(tmp_path):
    old_root = make_bundle(tmp_path / "old")
    old = archive_bytes(old_root)
    new_root = tmp_path / "new"
    new_root.mkdir()
    unpacker = Unpacker(new_root / "app")
    unpacker.write(old)
    unpacker.close()
    (new_root / "app" / "_internal" / "data.txt").write_text("hello, 1.1")
    new = archive_bytes(new_root / "app")
    out = io.BytesIO()
    with FolderArchive(old_root) as archive:
        patch_stream(archive.read_at, archive.size, bsdiff4.diff(old, new), out.write, max_new_size=1 << 30)
    assert out.getvalue() == new


def test_streaming_patch_refuses_corrupt_patches():
    old, new = b"a" * 1000, b"a" * 500 + b"b" * 600
    patch = bsdiff4.diff(old, new)
    sink = io.BytesIO()
    with pytest.raises(PatchError, match="over the limit"):
        patch_stream(lambda o, n: old[o:o + n], len(old), patch, sink.write, max_new_size=100)
    with pytest.raises(PatchError):
        patch_stream(lambda o, n: old[o:o + n], len(old), patch[:40] + bytes(len(patch) - 40),
                     sink.write, max_new_size=1 << 20)
    with pytest.raises(PatchError, match="BSDIFF40"):
        patch_stream(lambda o, n: old[o:o + n], len(old), b"NOTAPATCH" * 5, sink.write, max_new_size=1 << 20)
