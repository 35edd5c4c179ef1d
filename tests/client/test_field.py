"""The field, through the API: resumed downloads, back-off, leftovers, progress, release notes."""

from __future__ import annotations

import gzip

import pytest

from _server import Fault
from pyi_selfupdate import FetchError, Updater
from pyi_selfupdate.protocol import Manifest, decode_manifest, encode_manifest

NEWEST = "1.4+meta"
GZ = "myapp/1.4+meta/linux-amd64.gz"
PATCH = "myapp/1.0/1.4+meta/linux-amd64"


@pytest.fixture
def no_patch(server):
    server.faults[PATCH] = Fault(status=404)
    return server


def partials(updater: Updater) -> list:
    folder = updater.state_dir / "partial"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_an_interrupted_download_resumes_where_it_stopped(make_app, updater_for, no_patch, payload_of):
    server = no_patch
    gz_size = (server.root / GZ).stat().st_size
    target = make_app("1.0")
    server.faults[GZ] = Fault(reset_after=gz_size // 2)  # the connection drops half-way
    with pytest.raises(FetchError):
        updater_for(target, "1.0").update()
    assert target.read_bytes() == payload_of("1.0")
    kept = partials(updater_for(target, "1.0"))
    assert len(kept) == 2  # the bytes so far and their validator (the ETag)
    del server.faults[GZ]
    result = updater_for(target, "1.0").update()
    assert result.installed and target.read_bytes() == payload_of(NEWEST)
    first = next(f for p, f, status in server.ranges if status == 206)
    assert 0 < first <= gz_size // 2 and server.ranges[-1][2] == 206
    assert server.bytes_sent[GZ] <= gz_size * 1.1  # each byte fetched about once
    assert result.bytes_fetched < gz_size * 0.6 + 4096
    assert partials(updater_for(target, "1.0")) == []  # removed once used


def test_a_server_that_ignores_ranges_sends_the_file_again(make_app, updater_for, no_patch, payload_of):
    server = no_patch
    gz_size = (server.root / GZ).stat().st_size
    target = make_app("1.0")
    server.faults[GZ] = Fault(reset_after=gz_size // 2)
    with pytest.raises(FetchError):
        updater_for(target, "1.0").update()
    del server.faults[GZ]
    server.ignore_range = True
    assert updater_for(target, "1.0").update().installed
    assert target.read_bytes() == payload_of(NEWEST)
    assert [status for _, _, status in server.ranges] == [200]


def test_a_file_changed_between_runs_is_fetched_whole(make_app, updater_for, no_patch, payload_of):
    """If-Range: the .gz was republished (recompressed: same binary, other bytes) meanwhile."""
    server = no_patch
    gz_size = (server.root / GZ).stat().st_size
    target = make_app("1.0")
    server.faults[GZ] = Fault(reset_after=gz_size // 2)
    with pytest.raises(FetchError):
        updater_for(target, "1.0").update()
    del server.faults[GZ]
    (server.root / GZ).write_bytes(gzip.compress(payload_of(NEWEST), compresslevel=1, mtime=0))
    assert updater_for(target, "1.0").update().installed
    assert target.read_bytes() == payload_of(NEWEST)
    assert [status for _, _, status in server.ranges] == [200]  # the ETag no longer matched


def test_a_wrong_partial_download_is_dropped_and_the_next_run_starts_afresh(make_app, updater_for, no_patch,
                                                                         payload_of):
    server = no_patch
    target = make_app("1.0")
    updater = updater_for(target, "1.0")
    gz = (server.root / GZ).read_bytes()
    server.faults[GZ] = Fault(reset_after=len(gz) // 2)
    with pytest.raises(FetchError):
        updater.update()
    del server.faults[GZ]
    part = updater.state_dir / "partial" / next(n for n in partials(updater) if not n.endswith(".json"))
    part.write_bytes(b"\0" * part.stat().st_size)  # garbage where the first half was
    with pytest.raises(Exception):
        updater_for(target, "1.0").update()  # the resumed file fails its check...
    assert partials(updater) == [] and target.read_bytes() == payload_of("1.0")
    assert updater_for(target, "1.0").update().installed  # ...and the next run starts again


def test_update_cleans_what_killed_runs_left(make_app, updater_for, payload_of):
    target = make_app("1.0")
    for token in ("a1b2c3", "d4e5f6"):
        (target.parent / f".myapp.new.{token}").write_bytes(b"half a binary")
    assert updater_for(target, "1.0").update().installed
    assert sorted(p.name for p in target.parent.iterdir()) == [".myapp.lock", "myapp", "update"]


def test_progress_is_reported_while_downloading(make_app, updater_for, no_patch):
    seen = []
    target = make_app("1.0")
    updater_for(target, "1.0", progress=lambda done, total: seen.append((done, total))).update()
    gz_size = (no_patch.root / GZ).stat().st_size
    assert seen and seen[-1] == (gz_size, gz_size)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_release_notes_reach_the_result(make_app, updater_for, server):
    manifest_file = server.root / "myapp" / "linux-amd64.json"
    m = decode_manifest(manifest_file.read_bytes())
    manifest_file.write_bytes(encode_manifest(Manifest(m.version, m.sha256, {"Notes": "Faster startup."})))
    target = make_app("1.0")
    result = updater_for(target, "1.0").update()
    assert result.notes == "Faster startup."
    log = (updater_for(target, "1.0").state_dir / "log").read_text()
    assert "installed 1.0 -> 1.4+meta via patch" in log
