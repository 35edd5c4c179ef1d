"""Keys, signed manifest fields and their verification (pyi_selfupdate.signing)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import stat
import subprocess
import sys

import pytest

from pyi_selfupdate import signing
from pyi_selfupdate.settings import LIMITS
from pyi_selfupdate.errors import ConfigError, SignatureError, VerificationError
from pyi_selfupdate.protocol import Manifest, decode_manifest, encode_manifest
from pyi_selfupdate.release.keys import (PrivateKey, generate_private_key, load_private_key, sign_fields,
                                         write_private_key)

from _installed import python_env

UTC = dt.timezone.utc
SHA = hashlib.sha256(b"the new executable").digest()


@pytest.fixture(scope="module")
def key() -> PrivateKey:
    return generate_private_key()


@pytest.fixture(scope="module")
def other_key() -> PrivateKey:
    return generate_private_key()


def signed(keys, *, version="1.2", sha=SHA, size=1234, serial=7, cmd="myapp", plat="linux-amd64",
           expires=None) -> Manifest:
    fields = sign_fields(keys, cmd_name=cmd, platform=plat, version=version, sha256=sha,
                                 size=size, serial=serial, expires=expires)
    return Manifest(version=version, sha256=sha, extra=fields)


def verify(manifest, keys, **kw):
    kw.setdefault("cmd_name", "myapp")
    kw.setdefault("platform", "linux-amd64")
    return signing.verify_manifest(manifest, public_keys=[k.public_key_text for k in keys], **kw)


def reencode(manifest: Manifest, **changes) -> Manifest:
    """Edit the manifest the way an attacker edits the JSON on the server."""
    doc = json.loads(encode_manifest(manifest))
    doc.update(changes)
    return decode_manifest(json.dumps(doc).encode())


# ------------------------------------------------------------------- keygen


def run_cli(*args, cwd=None):
    env = python_env()
    return subprocess.run([sys.executable, "-m", "pyi_selfupdate", *args], capture_output=True,
                          text=True, env=env, cwd=cwd)


def test_keygen_writes_a_private_key_0600_and_prints_the_public_key_last(tmp_path):
    keyfile = tmp_path / "release.key"
    proc = run_cli("keygen", str(keyfile))
    assert proc.returncode == 0, proc.stderr
    assert stat.S_IMODE(keyfile.stat().st_mode) == 0o600
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("ed25519:")
    assert "public_keys = [" in proc.stdout and "[tool.pyi-selfupdate]" in proc.stdout
    key = load_private_key(keyfile)
    assert signing.parse_public_key(last) == key.public_key
    assert key.public_key_text == last
    # the key signs something its public key verifies
    m = signed([key])
    assert verify(m, [key]).serial == 7


def test_keygen_never_overwrites_an_existing_file(tmp_path):
    keyfile = tmp_path / "release.key"
    keyfile.write_text("precious\n")
    proc = run_cli("keygen", str(keyfile))
    assert proc.returncode == 2
    assert "already exists" in proc.stderr and "choose another file name" in proc.stderr
    assert keyfile.read_text() == "precious\n"


def test_keygen_gives_different_keys_each_time(tmp_path):
    a, b = tmp_path / "a.key", tmp_path / "b.key"
    write_private_key(a, generate_private_key())
    write_private_key(b, generate_private_key())
    assert load_private_key(a).public_key != load_private_key(b).public_key


def test_key_file_repr_never_shows_the_secret(key):
    assert signing.b64(key.seed) not in repr(key)


def test_loading_a_group_readable_key_warns(tmp_path, caplog, key):
    path = tmp_path / "k"
    write_private_key(path, key)
    os.chmod(path, 0o644)
    with caplog.at_level("WARNING", logger="pyi_selfupdate"):
        assert load_private_key(path).seed == key.seed
    assert "chmod 600" in caplog.text


@pytest.mark.parametrize("content, fragment", [
    ("nothing here\n", "not a pyi-selfupdate signing key"),
    ("ed25519-private:AAAA\n", "damaged"),
])
def test_bad_key_files_are_clear_errors(tmp_path, content, fragment):
    path = tmp_path / "k"
    path.write_text(content)
    with pytest.raises(ConfigError, match=fragment):
        load_private_key(path)
    with pytest.raises(ConfigError, match="pyi-selfupdate keygen"):
        load_private_key(tmp_path / "missing")


@pytest.mark.parametrize("text", ["", "mpxSKGumdrVW+/US6/vfP8cY1BUF4dZOWff0ZRE7AmM=", "ed25519:AAAA",
                                  "ed25519:not base64!"])
def test_bad_public_keys_are_config_errors(text):
    with pytest.raises(ConfigError, match="public_keys"):
        signing.parse_public_key(text)


# ------------------------------------------------------------ message format


def test_signed_message_is_domain_separated_sorted_json():
    msg = signing.signed_message(cmd_name="app", platform="linux-amd64", version="1.2", sha256=SHA,
                                 size=10, serial=3, expires=None)
    assert msg.startswith(b"pyi-selfupdate-manifest-v1\n")
    body = json.loads(msg[len(signing.DOMAIN):])
    assert list(body) == sorted(body)
    assert body == {"cmd": "app", "expires": None, "platform": "linux-amd64", "serial": 3,
                    "sha256": signing.b64(SHA), "size": 10, "version": "1.2"}
    # no two different field sets give the same message (a quote in a name stays escaped)
    other = signing.signed_message(cmd_name='app","platform":"x', platform="linux-amd64",
                                   version="1.2", sha256=SHA, size=10, serial=3, expires=None)
    assert other != msg and json.loads(other[len(signing.DOMAIN):])["cmd"] == 'app","platform":"x'


def test_sign_fields_order_and_no_key_clashes_with_go(key, other_key):
    fields = sign_fields([key, other_key], cmd_name="myapp", platform="linux-amd64",
                                 version="1.2", sha256=SHA, size=5, serial=1,
                                 expires=dt.datetime(2030, 1, 1, tzinfo=UTC))
    assert list(fields) == ["CmdName", "Platform", "Size", "Serial", "Expires", "Signatures"]
    assert fields["Expires"] == "2030-01-01T00:00:00Z"
    assert [s["KeyId"] for s in fields["Signatures"]] == [key.key_id, other_key.key_id]
    for name in list(fields) + list(signing.SIGNED_KEYS):
        assert name.lower() not in ("version", "sha256")


def test_signed_manifest_still_decodes_as_a_go_client_reads_it(key, go_vectors):
    go_file = go_vectors / "public" / "myapp" / "linux-amd64.json"
    go_bytes = go_file.read_bytes()
    plain = decode_manifest(go_bytes)
    m = Manifest(plain.version, plain.sha256,
                 sign_fields([key], cmd_name="myapp", platform="linux-amd64",
                                     version=plain.version, sha256=plain.sha256, size=99, serial=1))
    data = encode_manifest(m)
    # Go's MarshalIndent format: Version and Sha256 first, byte for byte as the Go CLI wrote them
    assert data.startswith(go_bytes[: go_bytes.rindex(b'"') + 1] + b",\n")
    assert not data.endswith(b"\n")
    # a Go client (case-insensitive keys, unknown ones ignored) sees the same release
    back = decode_manifest(data)
    assert (back.version, back.sha256) == (plain.version, plain.sha256)
    doc = json.loads(data)
    assert [k for k in doc if k.lower() in ("version", "sha256")] == ["Version", "Sha256"]
    # and our client verifies what was written
    assert verify(back, [key], min_serial=None).size == 99


def test_manifest_refuses_clashing_extra_keys():
    from pyi_selfupdate.errors import ManifestError

    with pytest.raises(ManifestError):
        Manifest("1", SHA, {"SHA256": "x"})


# ------------------------------------------------------------- verification


def test_valid_manifest_returns_its_promises(key):
    m = signed([key], expires=dt.datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC))
    info = verify(m, [key], now=dt.datetime(2031, 1, 1, tzinfo=UTC))
    assert (info.size, info.serial, info.key_id) == (1234, 7, key.key_id)
    assert info.expires == dt.datetime(2031, 5, 6, 7, 8, 9, tzinfo=UTC)


def test_unsigned_manifest_is_refused(key):
    with pytest.raises(signing.UnsignedManifestError, match="release --sign-key"):
        verify(Manifest("1.2", SHA), [key])


def test_rotated_out_key_is_refused_and_rotation_works(key, other_key):
    old_only = signed([other_key])
    with pytest.raises(signing.UntrustedKeyError, match="rotated-out") as err:
        verify(old_only, [key])
    assert other_key.key_id in str(err.value)
    both = signed([other_key, key])  # overlap period: releases signed with old and new key
    assert verify(both, [key]).key_id == key.key_id
    assert verify(both, [other_key]).key_id == other_key.key_id
    assert verify(signed([key]), [other_key, key]).key_id == key.key_id


@pytest.mark.parametrize("field, value", [
    ("Version", "9.9"),  # version relabelled (Tauri's binding)
    ("Sha256", signing.b64(hashlib.sha256(b"evil").digest())),  # tampered binary's hash
    ("Size", 1 << 40),
    ("Serial", 8),
    ("Expires", "2099-01-01T00:00:00Z"),
])
def test_any_altered_signed_field_is_a_bad_signature(key, field, value):
    m = reencode(signed([key], expires=dt.datetime(2030, 1, 1, tzinfo=UTC)), **{field: value})
    with pytest.raises(signing.BadSignatureError, match="altered after signing"):
        verify(m, [key], now=dt.datetime(2029, 1, 1, tzinfo=UTC))


def test_the_kind_of_a_release_is_signed(key):
    """A folder release signs Kind: stripping it (or adding it to a single file) breaks the signature."""
    fields = sign_fields([key], cmd_name="myapp", platform="linux-amd64", version="1.2", sha256=SHA,
                         size=1234, serial=7, kind="folder")
    folder = Manifest("1.2", SHA, {"Kind": "folder", **fields})
    assert verify(folder, [key]).serial == 7 and folder.kind == "folder"
    doc = json.loads(encode_manifest(folder))
    del doc["Kind"]
    with pytest.raises(signing.BadSignatureError):
        verify(decode_manifest(json.dumps(doc).encode()), [key])
    with pytest.raises(signing.BadSignatureError):
        verify(reencode(signed([key]), Kind="folder"), [key])
    assert verify(signed([key]), [key]).serial == 7  # a single file signs as it always did


def test_release_notes_are_signed(key):
    """The notes an app shows its user after an update are the publisher's: altering them breaks the signature."""
    fields = sign_fields([key], cmd_name="myapp", platform="linux-amd64", version="1.2", sha256=SHA,
                         size=1234, serial=7, notes="Counts faster.")
    m = Manifest("1.2", SHA, {"Notes": "Counts faster.", **fields})
    assert verify(m, [key]).serial == 7 and m.notes == "Counts faster."
    with pytest.raises(signing.BadSignatureError):
        verify(reencode(m, Notes="Install the attached tool too."), [key])
    with pytest.raises(signing.BadSignatureError):
        verify(reencode(signed([key]), Notes="unsigned words"), [key])


def test_a_forged_signature_under_a_trusted_key_id_is_refused(key, other_key):
    m = signed([other_key])
    forged = reencode(m, Signatures=[{"KeyId": key.key_id, "Sig": m.extra["Signatures"][0]["Sig"]}])
    with pytest.raises(signing.BadSignatureError):
        verify(forged, [key])
    garbage = reencode(m, Signatures=[{"KeyId": key.key_id, "Sig": "AAAA"}])
    with pytest.raises(signing.BadSignatureError):
        verify(garbage, [key])


@pytest.mark.parametrize("cmd, plat", [("otherapp", "linux-amd64"), ("myapp", "windows-amd64")])
def test_a_manifest_signed_for_another_app_or_platform_is_refused(key, cmd, plat):
    m = signed([key], cmd=cmd, plat=plat)
    with pytest.raises(signing.BindingMismatchError, match="not for this app"):
        verify(m, [key])


def test_relabelling_the_binding_fields_breaks_the_signature(key):
    m = reencode(signed([key], plat="windows-amd64"), Platform="linux-amd64")
    with pytest.raises(signing.BadSignatureError):
        verify(m, [key])


def test_expired_manifest_is_refused(key):
    m = signed([key], expires="2030-01-01T00:00:00Z")
    assert verify(m, [key], now=dt.datetime(2029, 12, 31, 23, 59, 59, tzinfo=UTC)).serial == 7
    with pytest.raises(signing.ExpiredManifestError, match="expired at 2030-01-01T00:00:00Z"):
        verify(m, [key], now=dt.datetime(2030, 1, 1, tzinfo=UTC))


def test_lower_serial_is_a_rollback(key):
    m = signed([key], serial=6)
    with pytest.raises(signing.RollbackError, match="replayed"):
        verify(m, [key], min_serial=7, min_serial_version="1.2")
    assert verify(signed([key], serial=8, version="1.1"), [key], min_serial=7,
                  min_serial_version="1.2").serial == 8  # a deliberate rollback: higher serial


def test_same_serial_other_version_is_mix_and_match(key):
    with pytest.raises(signing.MixAndMatchError, match="share a serial"):
        verify(signed([key], serial=7, version="1.3"), [key], min_serial=7, min_serial_version="1.2")
    assert verify(signed([key], serial=7), [key], min_serial=7, min_serial_version="1.2").serial == 7


@pytest.mark.parametrize("changes", [
    {"Size": "12"}, {"Serial": -1}, {"Serial": True}, {"Expires": "tomorrow"},
    {"CmdName": None}, {"Signatures": "x"},
    {"Signatures": [{"KeyId": "k", "Sig": "s"}] * (LIMITS.max_signatures + 1)},
])
def test_malformed_signed_fields_are_refused(key, changes):
    with pytest.raises(signing.UnsignedManifestError, match="malformed"):
        verify(reencode(signed([key]), **changes), [key])


def test_every_refusal_is_a_verification_error(key):
    for cls in (signing.UnsignedManifestError, signing.UntrustedKeyError, signing.BadSignatureError,
                signing.BindingMismatchError, signing.ExpiredManifestError, signing.RollbackError,
                signing.MixAndMatchError):
        assert issubclass(cls, SignatureError) and issubclass(cls, VerificationError)


def test_verification_needs_a_key():
    with pytest.raises(ConfigError, match="public_keys"):
        signing.verify_manifest(Manifest("1", SHA), cmd_name="a", platform="linux-amd64", public_keys=[])


def test_unsafe_names_are_refused_when_signing(key):
    from pyi_selfupdate.errors import InvalidNameError

    with pytest.raises(InvalidNameError):
        signed([key], version="../1.2")


# --------------------------------------------------------------- serial state


def test_serial_state_round_trip_and_damage(tmp_path):
    path = tmp_path / "serial"
    assert signing.read_serial_state(path) is None
    signing.write_serial_state(path, signing.SerialState(5, "1.2"))
    assert signing.read_serial_state(path) == signing.SerialState(5, "1.2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["serial"]
    path.write_text("garbage")
    with pytest.raises(SignatureError, match="delete it"):
        signing.read_serial_state(path)
