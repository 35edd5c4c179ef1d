"""Re-runs, interrupted runs, file modes and third-party plugins of the release pipeline."""

from __future__ import annotations

import gzip
import hashlib
import importlib
import json
import os
import stat
import sys
from pathlib import Path

import bsdiff4
import pytest

from pyi_selfupdate.errors import ReleaseError
from pyi_selfupdate.protocol import decode_manifest, encode_manifest, Manifest
from pyi_selfupdate.release import ExtraFile, hookimpl, release
from pyi_selfupdate.release._manager import get_plugin_manager

PLAT = "linux-amd64"


def _payload(version: str) -> bytes:
    """A 200 KB 'executable' whose versions differ by small local edits."""
    base = bytearray(hashlib.sha256(b"seed").digest() * 6400)
    for i, ch in enumerate(version.encode()):
        base[1000 + i * 7919] = ch
    base[50_000:50_016] = version.encode().ljust(16, b".")
    return bytes(base)


@pytest.fixture
def builds(tmp_path):
    """``builds(version)`` writes the build of ``version`` and returns its path."""

    def make(version: str) -> Path:
        path = tmp_path / "builds" / version / "app"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(_payload(version))
        return path

    return make


def _rel(out: Path) -> dict:
    return {p.relative_to(out).as_posix(): p for p in sorted(out.rglob("*")) if p.is_file()}


def _assert_consistent(out: Path, cmd: str = "app") -> str:
    """The manifest points at a complete .gz and every patch applies; returns its version."""
    m = decode_manifest((out / cmd / f"{PLAT}.json").read_bytes())
    body = gzip.decompress((out / cmd / m.version / f"{PLAT}.gz").read_bytes())
    assert hashlib.sha256(body).digest() == m.sha256
    for rel, path in _rel(out).items():
        parts = rel.split("/")
        if len(parts) == 4:
            old, new = parts[1], parts[2]
            assert bsdiff4.patch(_payload(old), path.read_bytes()) == _payload(new), rel
    return m.version


def test_rerun_reuses_everything_and_rewrites_only_the_manifest(tmp_path, builds):
    out = tmp_path / "public"
    for v in ("1.0", "1.1", "1.2"):
        release(builds(v), v, out=out, platform=PLAT)
    before = {rel: (p.read_bytes(), p.stat().st_mtime_ns) for rel, p in _rel(out).items()}
    lines = []
    summary = release(builds("1.2"), "1.2", out=out, platform=PLAT, progress=lines.append)
    (art,) = summary.artifacts
    assert art.gz_reused and len(art.patches) == 2 and all(p.reused for p in art.patches)
    assert summary.files_written == 1  # the manifest, with the same bytes
    after = {rel: (p.read_bytes(), p.stat().st_mtime_ns) for rel, p in _rel(out).items()}
    assert {k: v[0] for k, v in after.items()} == {k: v[0] for k, v in before.items()}
    for rel in before:
        if not rel.endswith(".json"):
            assert after[rel][1] == before[rel][1], f"{rel} was rewritten"
    assert any("reusing patch 1.0 -> 1.2" in line for line in lines)
    assert not any(line.startswith("diffing") for line in lines)


def test_files_are_0644_whatever_the_umask(tmp_path, builds):
    out = tmp_path / "public"
    old = os.umask(0o077)
    try:
        release(builds("1.0"), "1.0", out=out, platform=PLAT)
        release(builds("1.1"), "1.1", out=out, platform=PLAT)
    finally:
        os.umask(old)
    files = _rel(out)
    assert len(files) == 4
    for rel, path in files.items():
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, rel


class _Crash(Exception):
    pass


class _CrashOnWrite:
    """Fails the n-th file write, as a full disk or a killed process would."""

    def __init__(self, n: int):
        self.n = n
        self.calls = 0

    @hookimpl(tryfirst=True)
    def release_write_file(self, context, relpath, data):
        self.calls += 1
        if self.calls == self.n:
            raise _Crash(f"simulated crash while writing {relpath}")
        return None  # let the built-in publish plugin write it


@pytest.mark.parametrize("crash_at", [1, 2, 3, 4])
def test_interrupted_release_leaves_a_consistent_tree_and_a_rerun_completes(tmp_path, builds, crash_at):
    out = tmp_path / "public"
    for v in ("1.0", "1.1"):
        release(builds(v), v, out=out, platform=PLAT)
    # 1.2 writes: its .gz, two patches, then the manifest (the 4th write)
    with pytest.raises(_Crash):
        release(builds("1.2"), "1.2", out=out, platform=PLAT, plugins=[_CrashOnWrite(crash_at)],
                options={"diff_workers": 1})
    assert _assert_consistent(out) == "1.1"  # clients still see 1.1, complete
    assert not [p for p in out.rglob(".*")], "temporary files were left behind"
    summary = release(builds("1.2"), "1.2", out=out, platform=PLAT)
    assert _assert_consistent(out) == "1.2"
    (art,) = summary.artifacts
    assert art.gz_reused == (crash_at > 1)
    assert sum(p.reused for p in art.patches) == max(0, min(crash_at - 2, 2))
    assert sorted(_rel(out)) == [
        "app/1.0/1.1/linux-amd64", "app/1.0/1.2/linux-amd64", "app/1.0/linux-amd64.gz",
        "app/1.1/1.2/linux-amd64", "app/1.1/linux-amd64.gz", "app/1.2/linux-amd64.gz", "app/linux-amd64.json",
    ]


def test_stale_temp_file_from_a_killed_run_is_removed(tmp_path, builds):
    out = tmp_path / "public"
    release(builds("1.0"), "1.0", out=out, platform=PLAT)
    stale = out / "app" / "1.1" / ".linux-amd64.gz.pyi-tmp-99999-deadbeef"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half a gzip")
    release(builds("1.1"), "1.1", out=out, platform=PLAT)
    assert not stale.exists()
    assert _assert_consistent(out) == "1.1"


def test_a_patch_older_than_its_release_is_computed_again(tmp_path, builds):
    out = tmp_path / "public"
    release(builds("1.0"), "1.0", out=out, platform=PLAT)
    bogus = out / "app" / "1.0" / "1.1" / PLAT
    bogus.parent.mkdir(parents=True)
    bogus.write_bytes(b"left over from a deleted release")
    summary = release(builds("1.1"), "1.1", out=out, platform=PLAT)
    assert not summary.artifacts[0].patches[0].reused
    assert bsdiff4.patch(_payload("1.0"), bogus.read_bytes()) == _payload("1.1")


def test_patches_run_in_a_pool_and_match_a_serial_run(tmp_path, builds):
    trees = {}
    for workers in (1, 2):
        out = tmp_path / f"public{workers}"
        for v in ("1.0", "1.1", "1.2", "2.0"):
            release(builds(v), v, out=out, platform=PLAT, options={"diff_workers": workers})
        trees[workers] = {rel: p.read_bytes() for rel, p in _rel(out).items() if not rel.endswith(".gz")}
    assert trees[1] == trees[2]
    assert len(trees[1]) == 6 + 1


# ------------------------------------------------------------------------- plugins


class _SizeAndChecksum:
    """A third-party plugin: a manifest field, an extra file, an option, a final hook."""

    def __init__(self):
        self.finished = None

    @hookimpl
    def release_manifest_fields(self, context, artifact, manifest):
        assert manifest.version == artifact.version and manifest.sha256 == artifact.sha256
        return {"Size": artifact.size, "Channel": context.options.get("channel", "stable")}

    @hookimpl
    def release_extra_files(self, context, artifact):
        line = f"{artifact.sha256.hex()}  {artifact.platform}\n".encode()
        return [ExtraFile(f"{artifact.cmd_name}/{artifact.version}/{artifact.platform}.sha256", line)]

    @hookimpl
    def release_finished(self, context, summary):
        self.finished = summary


def test_plugin_passed_in_adds_a_manifest_field_and_a_file(tmp_path, builds):
    out = tmp_path / "public"
    plugin = _SizeAndChecksum()
    exe = builds("1.0")
    summary = release(exe, "1.0", out=out, platform=PLAT, plugins=[plugin], options={"channel": "beta"})
    raw = (out / "app" / f"{PLAT}.json").read_bytes()
    sha = hashlib.sha256(exe.read_bytes()).digest()
    assert raw == encode_manifest(Manifest("1.0", sha, {"Size": len(_payload("1.0")), "Channel": "beta"}))
    assert raw.decode().splitlines()[1:3] == [
        '    "Version": "1.0",', f'    "Sha256": "{json.loads(raw)["Sha256"]}",']
    assert (out / "app" / "1.0" / f"{PLAT}.sha256").read_text() == f"{sha.hex()}  {PLAT}\n"
    assert stat.S_IMODE((out / "app" / "1.0" / f"{PLAT}.sha256").stat().st_mode) == 0o644
    assert plugin.finished is summary
    assert summary.artifacts[0].extra_files == [f"app/1.0/{PLAT}.sha256"]
    # without the plugin: the Go CLI's two fields only
    release(builds("1.1"), "1.1", out=out, platform=PLAT)
    assert list(json.loads((out / "app" / f"{PLAT}.json").read_bytes())) == ["Version", "Sha256"]


@pytest.fixture
def entry_point_plugin(tmp_path, monkeypatch):
    """A plugin installed the way pip installs one: a dist-info with an entry point."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "pyi_su_extra_plugin.py").write_text(
        "from pyi_selfupdate.release import ExtraFile, hookimpl\n"
        "@hookimpl\n"
        "def release_manifest_fields(context, artifact, manifest):\n"
        "    return {'Installed': 'via-entry-point'}\n"
        "@hookimpl\n"
        "def release_extra_files(context, artifact):\n"
        "    return [ExtraFile(artifact.cmd_name + '/NOTICE', b'released with a plugin\\n')]\n"
    )
    info = site / "pyi_su_extra_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pyi-su-extra-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[pyi_selfupdate]\nextra = pyi_su_extra_plugin\n")
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    yield site
    sys.modules.pop("pyi_su_extra_plugin", None)


def test_entry_point_plugin_is_loaded_and_takes_effect(tmp_path, builds, entry_point_plugin):
    pm = get_plugin_manager()
    assert "extra" in {name for name, _ in pm.list_name_plugin()}
    out = tmp_path / "public"
    release(builds("1.0"), "1.0", out=out, platform=PLAT)
    assert decode_manifest((out / "app" / f"{PLAT}.json").read_bytes()).extra == {"Installed": "via-entry-point"}
    assert (out / "app" / "NOTICE").read_bytes() == b"released with a plugin\n"


def test_plugin_can_name_the_artifacts_of_a_platform_folder(tmp_path, builds):
    src = tmp_path / "cross"
    src.mkdir()
    (src / PLAT).write_bytes(_payload("1.0"))

    class Namer:
        @hookimpl
        def release_deduce_cmd_name(self, context, artifacts):
            return "named-by-plugin"

    release(src, "1.0", out=tmp_path / "public", plugins=[Namer()])
    assert (tmp_path / "public" / "named-by-plugin" / f"{PLAT}.json").is_file()


@pytest.mark.parametrize("fields,match", [
    ({"version": "9.9"}, "clash"),
    ({"sha256": "x"}, "clash"),
])
def test_plugin_fields_cannot_shadow_version_or_sha256(tmp_path, builds, fields, match):
    class Bad:
        @hookimpl
        def release_manifest_fields(self, context, artifact, manifest):
            return fields

    out = tmp_path / "public"
    with pytest.raises(ReleaseError, match=match):
        release(builds("1.0"), "1.0", out=out, platform=PLAT, plugins=[Bad()])
    assert not (out / "app" / f"{PLAT}.json").exists()


def test_two_plugins_disagreeing_on_a_field_is_an_error(tmp_path, builds):
    class A:
        @hookimpl
        def release_manifest_fields(self, context, artifact, manifest):
            return {"Channel": "stable"}

    class B:
        @hookimpl
        def release_manifest_fields(self, context, artifact, manifest):
            return {"Channel": "beta"}

    with pytest.raises(ReleaseError, match="'Channel'"):
        release(builds("1.0"), "1.0", out=tmp_path / "public", platform=PLAT, plugins=[A(), B()])


def test_extra_file_outside_the_tree_is_refused(tmp_path, builds):
    class Escape:
        @hookimpl
        def release_extra_files(self, context, artifact):
            return [ExtraFile("../outside", b"x")]

    with pytest.raises(ReleaseError, match="outside"):
        release(builds("1.0"), "1.0", out=tmp_path / "public", platform=PLAT, plugins=[Escape()])
    assert not (tmp_path / "outside").exists()
    assert not (tmp_path / "public" / "app" / f"{PLAT}.json").exists()


def test_plugin_can_collect_another_input_layout(tmp_path):
    from pyi_selfupdate.release import Artifact

    listing = tmp_path / "release.txt"
    exe = tmp_path / "somewhere" / "bin.dat"
    exe.parent.mkdir()
    exe.write_bytes(_payload("5.0"))
    listing.write_text(f"{exe} freebsd-amd64 tool\n")

    class FromListing:
        @hookimpl(tryfirst=True)
        def release_collect(self, context):
            if context.path.suffix != ".txt":
                return None
            path, plat, cmd = context.path.read_text().split()
            return [Artifact(path=Path(path), cmd_name=cmd, platform=plat, version=context.version)]

    release(listing, "5.0", out=tmp_path / "public", plugins=[FromListing()])
    m = decode_manifest((tmp_path / "public" / "tool" / "freebsd-amd64.json").read_bytes())
    assert m.version == "5.0" and m.sha256 == hashlib.sha256(_payload("5.0")).digest()


def test_passing_a_built_in_plugin_again_is_harmless(tmp_path, builds):
    from pyi_selfupdate.release._builtin import compress

    release(builds("1.0"), "1.0", out=tmp_path / "public", platform=PLAT, plugins=[compress])
    assert _assert_consistent(tmp_path / "public") == "1.0"


# ------------------------------------------------------- blocking built-ins


def test_blocking_sign_leaves_the_manifest_unsigned(tmp_path, builds):
    from pyi_selfupdate.release.keys import generate_private_key

    options = {"sign_keys": [generate_private_key()]}
    exe = builds("1.0")
    release(exe, "1.0", out=tmp_path / "signed", platform=PLAT, options=options)
    release(exe, "1.0", out=tmp_path / "plain", platform=PLAT, options=options, disable=["sign"])
    assert "Signatures" in json.loads((tmp_path / "signed" / "app" / f"{PLAT}.json").read_bytes())
    assert list(json.loads((tmp_path / "plain" / "app" / f"{PLAT}.json").read_bytes())) == ["Version", "Sha256"]


def test_blocking_an_unknown_plugin_is_refused_naming_the_built_ins(tmp_path, builds):
    with pytest.raises(ReleaseError, match="no built-in release plugin 'sgin'") as info:
        release(builds("1.0"), "1.0", out=tmp_path / "public", platform=PLAT, disable=["sgin"])
    assert "collect, frozen, compress, diff, manifest, sign, publish, s3" in str(info.value)
    assert not (tmp_path / "public").exists()


def test_a_required_built_in_is_blocked_only_when_a_plugin_replaces_it(tmp_path, builds):
    with pytest.raises(ReleaseError, match="compress plugin cannot be blocked: .* release_compress"):
        release(builds("1.0"), "1.0", out=tmp_path / "public", platform=PLAT, disable=["compress"])
    assert not (tmp_path / "public").exists()

    class FastGzip:
        @hookimpl
        def release_compress(self, context, artifact, data):
            return gzip.compress(data, compresslevel=1, mtime=0)

    release(builds("1.0"), "1.0", out=tmp_path / "public", platform=PLAT, plugins=[FastGzip()],
            disable=["compress"])
    gz = (tmp_path / "public" / "app" / "1.0" / f"{PLAT}.gz").read_bytes()
    assert gz == gzip.compress(_payload("1.0"), compresslevel=1, mtime=0)
    assert _assert_consistent(tmp_path / "public") == "1.0"


class _ReadsTheGz:
    """A write plugin that reads the .gz's chunks (to hash them, say) and lets the built-in write
    it, or answers without reading them at all."""

    def __init__(self, answer: bool):
        self.answer = answer

    @hookimpl(tryfirst=True)
    def release_write_file(self, context, relpath, data):
        if relpath.endswith(".gz") and not isinstance(data, bytes):
            if self.answer:
                return str(context.target(relpath))  # claims it wrote what it never read
            hashlib.sha256(b"".join(data))
        return None


@pytest.mark.parametrize("answer, message", [
    (False, "read the chunks of app/1.1/linux-amd64.gz and passed them on; they can be read once"),
    (True, "the release_write_file plugin that wrote app/1.1/linux-amd64.gz did not read all of it"),
])
def test_the_streamed_gz_is_never_written_empty_by_a_plugin_that_read_it(tmp_path, builds, answer, message):
    # the .gz comes to release_write_file as chunks produced as they are compressed: a plugin that
    # reads them and passes them on, or answers without reading them, stops the release instead of
    # leaving an empty or missing .gz behind a published manifest
    out = tmp_path / "public"
    release(builds("1.0"), "1.0", out=out, platform=PLAT)
    with pytest.raises(ReleaseError, match=message):
        release(builds("1.1"), "1.1", out=out, platform=PLAT, plugins=[_ReadsTheGz(answer)])
    assert _assert_consistent(out) == "1.0"
