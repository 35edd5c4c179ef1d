"""Updater.update() against a real HTTP server serving the Go CLI's release tree."""

from __future__ import annotations

import gzip
import logging
import stat

import pytest

from _server import Fault
from pyi_selfupdate import (
    ConfigError,
    FetchError,
    InvalidNameError,
    ManifestError,
    Updater,
    VerificationError,
)

NEWEST = "1.4+meta"
PATCH_OF = "myapp/{v}/1.4+meta/linux-amd64"
GZ = "myapp/1.4+meta/linux-amd64.gz"
GZ_URL = "/myapp/1.4%2Bmeta/linux-amd64.gz"


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_patch_reaches_newest_bytes(version, make_app, updater_for, server, payload_of, leftovers):
    target = make_app(version)
    result = updater_for(target, version).update()

    assert target.read_bytes() == payload_of(NEWEST)
    assert result is not None and result.installed
    assert (result.from_version, result.to_version, result.method) == (version, NEWEST, "patch")
    assert result.target == target
    patch_size = (server.root / PATCH_OF.format(v=version)).stat().st_size
    manifest_size = (server.root / "myapp/linux-amd64.json").stat().st_size
    assert result.bytes_fetched == patch_size + manifest_size
    assert server.log == ["/myapp/linux-amd64.json", f"/myapp/{version}/1.4%2Bmeta/linux-amd64"]
    assert not any(path.endswith(".gz") for path in server.log)
    assert leftovers(target.parent) == set()


@pytest.mark.parametrize("fault", [Fault(status=404), Fault(status=500),
                                   Fault(body=b"BSDIFF40 this is not a patch"),
                                   Fault(body=b"<html>not found</html>")],
                         ids=["404", "500", "corrupt", "html"])
def test_patch_failure_falls_back_to_gz(fault, make_app, updater_for, server, payload_of,
                                        leftovers, caplog):
    target = make_app("1.1")
    server.faults[PATCH_OF.format(v="1.1")] = fault
    with caplog.at_level(logging.WARNING, logger="pyi_selfupdate"):
        result = updater_for(target, "1.1").update()

    assert target.read_bytes() == payload_of(NEWEST)
    assert result.method == "full" and result.installed
    assert server.log[-1] == GZ_URL
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("1.4%2Bmeta/linux-amd64" in m and "falling back" in m for m in warnings)
    assert leftovers(target.parent) == set()


def test_patch_for_another_base_fails_hash_and_falls_back(make_app, updater_for, server,
                                                          payload_of):
    """A valid patch that applies to other bytes: hash mismatch, then the .gz."""
    target = make_app("1.0")
    wrong = (server.root / PATCH_OF.format(v="1.2")).read_bytes()
    server.faults[PATCH_OF.format(v="1.0")] = Fault(body=wrong)
    result = updater_for(target, "1.0").update()
    assert result.method == "full"
    assert target.read_bytes() == payload_of(NEWEST)


def test_patch_with_huge_claimed_size_falls_back(make_app, updater_for, server, payload_of):
    target = make_app("1.0")
    real = (server.root / PATCH_OF.format(v="1.0")).read_bytes()
    huge = real[:24] + (1 << 40).to_bytes(8, "little") + real[32:]
    server.faults[PATCH_OF.format(v="1.0")] = Fault(body=huge)
    result = updater_for(target, "1.0").update()
    assert result.method == "full"
    assert target.read_bytes() == payload_of(NEWEST)


def test_file_mode_is_kept(make_app, updater_for):
    target = make_app("1.2", mode=0o750)
    updater_for(target, "1.2").update()
    assert stat.S_IMODE(target.stat().st_mode) == 0o750


def test_file_mode_is_kept_through_gz(make_app, updater_for, server):
    target = make_app("1.2", mode=0o700)
    server.faults[PATCH_OF.format(v="1.2")] = Fault(status=404)
    assert updater_for(target, "1.2").update().method == "full"
    assert stat.S_IMODE(target.stat().st_mode) == 0o700


def test_current_version_makes_one_request(make_app, updater_for, server, payload_of):
    target = make_app(NEWEST)
    assert updater_for(target, NEWEST).update() is None
    assert updater_for(target, NEWEST).update_available() is None
    assert server.log == ["/myapp/linux-amd64.json"] * 2
    assert target.read_bytes() == payload_of(NEWEST)


def test_update_available_names_the_new_version(make_app, updater_for, server, payload_of):
    target = make_app("1.0")
    assert updater_for(target, "1.0").update_available() == NEWEST
    assert server.log == ["/myapp/linux-amd64.json"]
    assert target.read_bytes() == payload_of("1.0")


def test_older_version_on_server_is_installed(make_app, updater_for, server, payload_of):
    """Versions are opaque (go's rule): any different version is installed, older ones too."""
    target = make_app(NEWEST)
    server.faults["myapp/linux-amd64.json"] = Fault(
        body=(server.root / "myapp/linux-amd64.json").read_bytes().replace(b"1.4+meta", b"1.2")
        .replace(b"6+iSW0blkFkPEN49O9vXh/1xmLgqp+h93wbd5mkKpZ4=", _b64sha(payload_of("1.2"))))
    result = updater_for(target, NEWEST).update()
    assert result.to_version == "1.2" and result.method == "full"  # no patch 1.4+meta -> 1.2
    assert target.read_bytes() == payload_of("1.2")


def _b64sha(data: bytes) -> bytes:
    import base64
    import hashlib

    return base64.b64encode(hashlib.sha256(data).digest())


# ------------------------------------------------------------ failures: target untouched


def _assert_untouched(target, payload_of, version, leftovers):
    assert target.read_bytes() == payload_of(version)
    assert leftovers(target.parent) == set()


def test_corrupt_gz_and_no_patch_raises(make_app, updater_for, server, payload_of, leftovers):
    target = make_app("1.0", mode=0o751)
    server.faults[PATCH_OF.format(v="1.0")] = Fault(status=404)
    server.faults[GZ] = Fault(body=b"\x1f\x8b\x08\x00garbage garbage garbage")
    with pytest.raises(VerificationError, match="gzip"):
        updater_for(target, "1.0").update()
    _assert_untouched(target, payload_of, "1.0", leftovers)
    assert stat.S_IMODE(target.stat().st_mode) == 0o751


def test_gz_of_other_bytes_fails_verification(make_app, updater_for, server, payload_of,
                                              leftovers):
    target = make_app("1.0")
    server.faults[PATCH_OF.format(v="1.0")] = Fault(status=404)
    server.faults[GZ] = Fault(body=gzip.compress(payload_of("1.2")))
    with pytest.raises(VerificationError, match="SHA-256"):
        updater_for(target, "1.0").update()
    _assert_untouched(target, payload_of, "1.0", leftovers)


def test_truncated_gz_fails(make_app, updater_for, server, payload_of, leftovers):
    target = make_app("1.0")
    server.faults[PATCH_OF.format(v="1.0")] = Fault(status=404)
    server.faults[GZ] = Fault(body=(server.root / GZ).read_bytes()[:-100])
    with pytest.raises(VerificationError, match="truncated"):
        updater_for(target, "1.0").update()
    _assert_untouched(target, payload_of, "1.0", leftovers)


def test_gz_missing_and_no_patch_raises_fetch_error(make_app, updater_for, server, payload_of,
                                                    leftovers):
    target = make_app("1.0")
    server.faults[PATCH_OF.format(v="1.0")] = Fault(status=404)
    server.faults[GZ] = Fault(status=404)
    with pytest.raises(FetchError, match="404"):
        updater_for(target, "1.0").update()
    _assert_untouched(target, payload_of, "1.0", leftovers)


@pytest.mark.parametrize("body,error,match", [
    (b"this is not json", ManifestError, "not valid JSON"),
    (b'{"Version": "1.5", "Sha256": "AAAA"}', ManifestError, "not 32"),
    (b'{"Version": "../x", "Sha256": "6+iSW0blkFkPEN49O9vXh/1xmLgqp+h93wbd5mkKpZ4="}',
     InvalidNameError, "escape"),
    (b'{"Version": "a/b", "Sha256": "6+iSW0blkFkPEN49O9vXh/1xmLgqp+h93wbd5mkKpZ4="}',
     InvalidNameError, "escape"),
    (b'{"Version": "..", "Sha256": "6+iSW0blkFkPEN49O9vXh/1xmLgqp+h93wbd5mkKpZ4="}',
     InvalidNameError, "escape"),
    (b"[1, 2]", ManifestError, "not a JSON object"),
    (b"x" * (70 * 1024), FetchError, "limit"),
], ids=["garbage", "hash-length", "dotdot-slash", "slash", "dotdot", "array", "oversized"])
def test_bad_manifest_is_a_clear_error(body, error, match, make_app, updater_for, server,
                                       payload_of, leftovers):
    target = make_app("1.0")
    server.faults["myapp/linux-amd64.json"] = Fault(body=body)
    with pytest.raises(error, match=match):
        updater_for(target, "1.0").update()
    assert server.log == ["/myapp/linux-amd64.json"]  # nothing fetched on a bad manifest
    _assert_untouched(target, payload_of, "1.0", leftovers)


def test_manifest_server_error(make_app, updater_for, server, payload_of, leftovers):
    target = make_app("1.0")
    server.faults["myapp/linux-amd64.json"] = Fault(status=500)
    with pytest.raises(FetchError, match="HTTP 500"):
        updater_for(target, "1.0").update()
    _assert_untouched(target, payload_of, "1.0", leftovers)


# ------------------------------------------------------------------------- settings


@pytest.mark.parametrize("kwargs,match", [
    ({"api_url": "http://127.0.0.1/x"}, "end in '/'"),
    ({"bin_url": "http://127.0.0.1/x"}, "end in '/'"),
    ({"diff_url": "http://127.0.0.1/x"}, "end in '/'"),
    ({"check_time": -1}, "zero or more"),
    ({"check_time": "soon"}, "number of hours"),
    ({"requester": object()}, "fetch"),
])
def test_bad_settings_raise_config_error(kwargs, match, tmp_path):
    options = dict(current_version="1.0", api_url="http://127.0.0.1/", cmd_name="myapp",
                   platform="linux-amd64", target=tmp_path / "myapp")
    options.update(kwargs)
    with pytest.raises(ConfigError, match=match):
        Updater(**options)


@pytest.mark.parametrize("field", ["cmd_name", "platform", "current_version"])
def test_hostile_names_in_settings(field, tmp_path):
    options = dict(current_version="1.0", api_url="http://127.0.0.1/", cmd_name="myapp",
                   platform="linux-amd64", target=tmp_path / "myapp")
    options[field] = "../evil"
    with pytest.raises(InvalidNameError):
        Updater(**options)


def test_target_required_outside_frozen_app():
    with pytest.raises(ConfigError, match="target"):
        Updater(current_version="1.0", api_url="http://127.0.0.1/", cmd_name="myapp")


def test_separate_bin_and_diff_urls(make_app, serve, go_tree, payload_of, tmp_path):
    """bin_url and diff_url name other servers: each request goes where it belongs."""
    api, diffs, bins = serve(go_tree), serve(go_tree), serve(go_tree)
    target = make_app("1.1")
    diffs.faults[PATCH_OF.format(v="1.1")] = Fault(status=404)
    updater = Updater(current_version="1.1", api_url=api.url, diff_url=diffs.url,
                      bin_url=bins.url, cmd_name="myapp", platform="linux-amd64", target=target)
    assert updater.update().method == "full"
    assert api.log == ["/myapp/linux-amd64.json"]
    assert diffs.log == ["/myapp/1.1/1.4%2Bmeta/linux-amd64"]
    assert bins.log == [GZ_URL]
    assert target.read_bytes() == payload_of(NEWEST)


def test_symlinked_target_updates_the_real_file(make_app, updater_for, payload_of):
    target = make_app("1.0")
    link = target.parent / "myapp-link"
    link.symlink_to(target)
    result = updater_for(link, "1.0").update()
    assert result.target == target
    assert link.is_symlink() and target.read_bytes() == payload_of(NEWEST)


def test_on_successful_update_called_and_its_error_contained(make_app, updater_for, caplog):
    target = make_app("1.0")
    seen = []

    def callback(result):
        seen.append(result)
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="pyi_selfupdate"):
        result = updater_for(target, "1.0", on_successful_update=callback).update()
    assert seen == [result]
    assert any("on_successful_update" in r.getMessage() for r in caplog.records)
