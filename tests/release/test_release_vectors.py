"""The release side against the go-selfupdate CLI's own output (tests/vectors/go-selfupdate)."""

from __future__ import annotations

import gzip
from pathlib import Path

import bsdiff4
import pytest

from pyi_selfupdate.release import release

SINGLE = ["1.0", "1.1", "1.2", "1.4+meta"]
MULTI = ["1.0", "2.0"]


def _files(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def _compare(ours: Path, go: Path, exact_patches: bool = True) -> int:
    """Same files; manifests and .gz contents identical; patches identical (``--diff bsdiff4``) or,
    for the default generator, rebuilding the exact new bytes and at most 1.25x the Go patch's size."""
    mine, theirs = _files(ours), _files(go)
    assert sorted(mine) == sorted(theirs)
    for rel, path in theirs.items():
        if rel.endswith(".gz"):
            # gzip streams differ (Go's deflate is not zlib's); the content may not
            assert gzip.decompress(mine[rel].read_bytes()) == gzip.decompress(path.read_bytes()), rel
        elif rel.endswith(".json") or exact_patches:
            assert mine[rel].read_bytes() == path.read_bytes(), rel
        else:  # a patch <old>/<new>/<plat>
            old_v, new_v, plat = rel.split("/")
            old = gzip.decompress(theirs[f"{old_v}/{plat}.gz"].read_bytes())
            new = gzip.decompress(theirs[f"{new_v}/{plat}.gz"].read_bytes())
            assert bsdiff4.patch(old, mine[rel].read_bytes()) == new, rel
            assert len(mine[rel].read_bytes()) <= 1.25 * len(path.read_bytes()), rel
    return len(theirs)


@pytest.mark.parametrize("generator", ["bsdiff4", "fast"])
def test_single_file_releases_match_the_go_cli(tmp_path, go_vectors, generator):
    out = tmp_path / "public"
    for v in SINGLE:
        release(go_vectors / "payloads" / "single" / v, v, out=out, cmd_name="myapp", platform="linux-amd64",
                options={"diff": generator})
    n = _compare(out / "myapp", go_vectors / "public" / "myapp", exact_patches=generator == "bsdiff4")
    assert n == 4 + 6 + 1  # .gz per version, a patch per pair, the manifest
    for v in SINGLE:
        gz = out / "myapp" / v / "linux-amd64.gz"
        assert gzip.decompress(gz.read_bytes()) == (go_vectors / "payloads" / "single" / v).read_bytes()


@pytest.mark.parametrize("generator", ["bsdiff4", "fast"])
def test_directory_mode_releases_match_the_go_cli(tmp_path, go_vectors, generator):
    out = tmp_path / "public"
    for v in MULTI:
        summary = release(go_vectors / "payloads" / "multi" / v, v, out=out, cmd_name="multi",
                          options={"diff": generator})
        assert sorted(a.platform for a in summary.artifacts) == ["darwin-arm64", "linux-amd64", "windows-amd64"]
    n = _compare(out / "multi", go_vectors / "public" / "multi", exact_patches=generator == "bsdiff4")
    assert n == 6 + 3 + 3
    for v in MULTI:
        for plat in ("darwin-arm64", "linux-amd64", "windows-amd64"):
            gz = out / "multi" / v / f"{plat}.gz"
            assert gzip.decompress(gz.read_bytes()) == (go_vectors / "payloads" / "multi" / v / plat).read_bytes()


def test_releasing_into_a_copy_of_the_go_tree_extends_it(tmp_path, go_vectors):
    # A tree written by the Go CLI is a valid starting point: its .gz files are read back.
    out = tmp_path / "public"
    (out / "myapp").mkdir(parents=True)
    import shutil

    for v in SINGLE[:3]:
        shutil.copytree(go_vectors / "public" / "myapp" / v, out / "myapp" / v)
    shutil.copy2(go_vectors / "public" / "myapp" / "linux-amd64.json", out / "myapp" / "linux-amd64.json")
    release(go_vectors / "payloads" / "single" / "1.4+meta", "1.4+meta", out=out, cmd_name="myapp",
            platform="linux-amd64")
    for old in SINGLE[:3]:
        rel = Path("myapp") / old / "1.4+meta" / "linux-amd64"
        assert (out / rel).read_bytes() == (go_vectors / "public" / rel).read_bytes()
    assert (out / "myapp" / "linux-amd64.json").read_bytes() == \
        (go_vectors / "public" / "myapp" / "linux-amd64.json").read_bytes()
