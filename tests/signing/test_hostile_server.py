"""A hostile server against the real client: every attack of SECURITY.md, refused.

The release tree is written by the real release pipeline with the sign plugin;
the server is a real HTTP server on 127.0.0.1 that an attacker controls (it
serves forged, replayed, endless or slow bodies, and redirects). Each test
checks what a user would see: the update is refused with a clear log line, the
installed file keeps its bytes, and the updater keeps working afterwards.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import random
import shutil
import socket
import struct
import time
from pathlib import Path

import pytest

from _hostile import drip_headers, endless_body, endless_empty_gzip, gz_of, slow_redirects, tls_dripper  # noqa: E402
from _server import Fault  # noqa: E402

from pyi_selfupdate import Updater, signing  # noqa: E402
from pyi_selfupdate.errors import ConfigError, FetchError, SelfUpdateError, VerificationError  # noqa: E402
from pyi_selfupdate.protocol import Manifest, decode_manifest, encode_manifest  # noqa: E402
from pyi_selfupdate.release import release  # noqa: E402
from pyi_selfupdate.release.keys import generate_private_key, sign_fields, write_private_key  # noqa: E402

PLAT = "linux-amd64"
CMD = "myapp"
MANIFEST = f"{CMD}/{PLAT}.json"
FULL2 = f"{CMD}/2.0/{PLAT}.gz"
PATCH12 = f"{CMD}/1.0/2.0/{PLAT}"
UTC = dt.timezone.utc


def _payload(version: str) -> bytes:
    rnd = random.Random(1234)
    base = bytearray(rnd.getrandbits(8) for _ in range(96 * 1024))
    if version != "1.0":
        rng = random.Random(version)
        for _ in range(40):
            base[rng.randrange(len(base))] = rng.getrandbits(8)
        base += version.encode() * 100
    return bytes(base)


class Tree:
    """A signed release tree of myapp 1.0 and 2.0, its keys and its installed copy."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.public = root / "public"
        self.key_file = root / "release.key"
        self.key = generate_private_key()
        write_private_key(self.key_file, self.key)
        self.builds = root / "builds"
        self.builds.mkdir()
        self.manifests = {}
        for version in ("1.0", "2.0"):
            self.release(version)
            self.manifests[version] = (self.public / MANIFEST).read_bytes()
        self.app_dir = root / "app"
        self.app_dir.mkdir()
        self.target = self.app_dir / CMD

    def release(self, version: str, keys=None, **options) -> None:
        exe = self.builds / version / CMD
        exe.parent.mkdir(exist_ok=True)
        exe.write_bytes(_payload(version))
        options.setdefault("sign_keys", keys if keys is not None else [str(self.key_file)])
        release(exe, version, self.public, platform=PLAT, cmd_name=CMD, options=options)

    def install(self, version: str) -> Path:
        self.target.write_bytes(_payload(version))
        os.chmod(self.target, 0o755)
        return self.target

    def manifest(self, version: str) -> Manifest:
        return decode_manifest(self.manifests[version])


@pytest.fixture
def tree(tmp_path) -> Tree:
    return Tree(tmp_path)


@pytest.fixture
def server(serve, tree):
    return serve(tree.public)


@pytest.fixture
def updater(server, tree):
    def make(version: str = "1.0", **kwargs) -> Updater:
        options = dict(current_version=version, api_url=server.url, cmd_name=CMD, platform=PLAT,
                       target=tree.target, public_keys=[tree.key.public_key_text])
        options.update(kwargs)
        return Updater(**options)

    return make


def forged(manifest: Manifest, **changes) -> bytes:
    doc = json.loads(encode_manifest(manifest))
    doc.update(changes)
    return json.dumps(doc).encode()


def assert_refused(caplog, tree, version, *fragments):
    """The installed file holds ``version``'s bytes, nothing was left beside it, the log says why."""
    assert tree.target.read_bytes() == _payload(version)
    stray = {p.name for p in tree.app_dir.iterdir()} - {CMD, f".{CMD}.lock", "update"}
    assert stray == set()
    for fragment in fragments:
        assert fragment in caplog.text, f"{fragment!r} not logged:\n{caplog.text}"


@pytest.fixture(autouse=True)
def _log(caplog):
    caplog.set_level("INFO", logger="pyi_selfupdate")


# ---------------------------------------------------------------- baseline


def test_signed_release_installs_through_the_patch_and_remembers_the_serial(tree, updater, server):
    tree.install("1.0")
    result = updater().update()
    assert result is not None and result.installed and result.method == "patch"
    assert tree.target.read_bytes() == _payload("2.0")
    assert signing.read_serial_state(tree.app_dir / "update" / CMD / "serial") == signing.SerialState(2, "2.0")
    doc = json.loads(tree.manifests["2.0"])
    assert doc["Serial"] == 2 and doc["Size"] == len(_payload("2.0"))


def test_a_client_without_keys_still_updates_from_a_signed_tree(tree, updater):
    tree.install("1.0")
    result = updater(public_keys=None).update()
    assert result is not None and tree.target.read_bytes() == _payload("2.0")


# ---------------------------------------------------------- arbitrary install


def test_tampered_binary_is_refused(tree, updater, server, caplog):
    """The attacker swaps the files but cannot re-sign the manifest's hash."""
    evil = b"\x7fELF evil" * 5000
    server.faults[FULL2] = Fault(body=gz_of(evil))
    server.faults[PATCH12] = Fault(status=404)
    tree.install("1.0")
    with pytest.raises(VerificationError):
        updater().update()
    assert_refused(caplog, tree, "1.0", "SHA-256", "untouched")


def test_tampered_manifest_is_refused_before_any_download(tree, updater, server, caplog):
    evil = b"\x7fELF evil" * 5000
    m = tree.manifest("2.0")
    server.faults[MANIFEST] = Fault(body=forged(
        m, Sha256=signing.b64(hashlib.sha256(evil).digest()), Size=len(evil)))
    server.faults[FULL2] = Fault(body=gz_of(evil))
    tree.install("1.0")
    with pytest.raises(signing.BadSignatureError):
        updater().update()
    assert_refused(caplog, tree, "1.0", "refusing the update", "altered after signing")
    assert server.log == ["/" + MANIFEST]


def test_unsigned_manifest_is_refused(tree, updater, server, caplog):
    m = tree.manifest("2.0")
    server.faults[MANIFEST] = Fault(body=encode_manifest(Manifest(m.version, m.sha256)))
    tree.install("1.0")
    with pytest.raises(signing.UnsignedManifestError):
        updater().update()
    assert_refused(caplog, tree, "1.0", "is not signed")


def test_version_relabelled_is_refused(tree, updater, server, caplog):
    """Tauri's binding: a valid 2.0 cannot be announced as 3.0 (or 1.0 as 2.0)."""
    server.faults[MANIFEST] = Fault(body=forged(tree.manifest("2.0"), Version="3.0"))
    tree.install("1.0")
    with pytest.raises(signing.BadSignatureError):
        updater().update()
    assert_refused(caplog, tree, "1.0", "'3.0'", "altered after signing")


def test_manifest_of_another_platform_is_refused(tree, updater, server, caplog):
    other = Manifest("2.0", hashlib.sha256(b"win").digest(), sign_fields(
        [tree.key], cmd_name=CMD, platform="windows-amd64", version="2.0",
        sha256=hashlib.sha256(b"win").digest(), size=3, serial=9))
    server.faults[MANIFEST] = Fault(body=encode_manifest(other))
    tree.install("1.0")
    with pytest.raises(signing.BindingMismatchError):
        updater().update()
    assert_refused(caplog, tree, "1.0", "'windows-amd64'", "not for this app")


def test_a_rotated_out_key_is_refused(tree, updater, server, caplog):
    new_key = generate_private_key()
    tree.install("1.0")
    # the app trusts only the new key; the tree is still signed with the old one
    with pytest.raises(signing.UntrustedKeyError):
        updater(public_keys=[new_key.public_key_text]).update()
    assert_refused(caplog, tree, "1.0", tree.key.key_id, "rotated-out")


def test_rotation_release_signed_with_old_and_new_key_reaches_both_apps(tree, server, updater):
    new_key = generate_private_key()
    new_file = tree.root / "new.key"
    write_private_key(new_file, new_key)
    tree.release("3.0", keys=[str(tree.key_file), str(new_file)])
    doc = json.loads((tree.public / MANIFEST).read_bytes())
    assert [s["KeyId"] for s in doc["Signatures"]] == [tree.key.key_id, new_key.key_id]
    tree.install("1.0")
    assert updater(public_keys=[new_key.public_key_text]).update().to_version == "3.0"
    tree.install("1.0")
    (tree.app_dir / "update" / CMD / "serial").unlink()
    assert updater().update().to_version == "3.0"


# ------------------------------------------------------------ rollback, freeze


def test_an_old_manifest_replayed_is_refused(tree, updater, server, caplog):
    tree.install("1.0")
    assert updater().update().to_version == "2.0"
    server.faults[MANIFEST] = Fault(body=tree.manifests["1.0"])  # validly signed, serial 1
    with pytest.raises(signing.RollbackError):
        updater("2.0").update()
    assert_refused(caplog, tree, "2.0", "serial 1", "lower than serial 2")


def test_a_deliberate_rollback_is_a_new_release_with_a_higher_serial(tree, updater, server):
    tree.install("1.0")
    assert updater().update().to_version == "2.0"
    from pyi_selfupdate.release._rollback import rollback

    rollback(tree.public, CMD, "1.0", options={"sign_keys": [str(tree.key_file)]})
    doc = json.loads((tree.public / MANIFEST).read_bytes())
    assert (doc["Version"], doc["Serial"]) == ("1.0", 3)
    result = updater("2.0").update()
    assert result.to_version == "1.0" and tree.target.read_bytes() == _payload("1.0")


def test_an_expired_manifest_is_refused(tree, updater, server, caplog):
    m = tree.manifest("2.0")
    past = dt.datetime.now(UTC) - dt.timedelta(days=1)
    fields = sign_fields([tree.key], cmd_name=CMD, platform=PLAT, version="2.0",
                                 sha256=m.sha256, size=m.extra["Size"], serial=5, expires=past)
    server.faults[MANIFEST] = Fault(body=encode_manifest(Manifest("2.0", m.sha256, fields)))
    tree.install("1.0")
    with pytest.raises(signing.ExpiredManifestError):
        updater().update()
    assert_refused(caplog, tree, "1.0", "expired at", "freezing")


# ---------------------------------------------------- endless data, slow drip


def test_an_endless_full_download_is_cut_at_the_signed_size(tree, updater, server, caplog):
    server.faults[PATCH12] = Fault(status=404)
    # valid gzip that never ends: empty members, one after another (each decompresses to nothing)
    sent = endless_body(server, "/" + FULL2, chunk=gz_of(b"") * 3000)
    tree.install("1.0")
    with pytest.raises(FetchError, match="larger than the limit"):
        updater().update()
    cap = signing.signed_body_cap(len(_payload("2.0")))
    assert cap < sent.total <= cap + (16 << 20)  # the server gave up when the client hung up
    assert_refused(caplog, tree, "1.0", "larger than the limit")


def test_an_endless_manifest_is_cut_at_64_kib(tree, updater, server, caplog):
    sent = endless_body(server, "/" + MANIFEST, chunk=b" " * 65536)  # valid JSON whitespace, forever
    tree.install("1.0")
    with pytest.raises(FetchError, match="larger than the limit of 65536 bytes"):
        updater().update()
    assert sent.total <= 64 << 20
    assert_refused(caplog, tree, "1.0", "larger than the limit of 65536 bytes")


def test_a_decompression_bomb_stops_at_the_signed_size(tree, updater, server, caplog):
    size = len(_payload("2.0"))
    server.faults[FULL2] = Fault(body=gz_of(b"\0" * (size * 50)))
    server.faults[PATCH12] = Fault(status=404)
    tree.install("1.0")
    with pytest.raises(VerificationError, match=f"more than {size} bytes"):
        updater().update()
    assert_refused(caplog, tree, "1.0", f"more than {size} bytes")


def test_a_patch_header_claiming_a_huge_output_is_refused_before_allocating(tree, updater, server, caplog):
    size = len(_payload("2.0"))
    header = b"BSDIFF40" + struct.pack("<qqq", 0, 0, size + 1)  # one byte over the signed size
    server.faults[PATCH12] = Fault(body=header)
    tree.install("1.0")
    result = updater().update()  # refused patch, then the verified full binary
    assert result.method == "full" and tree.target.read_bytes() == _payload("2.0")
    assert f"claims a {size + 1}-byte result, over the limit of {size} bytes" in caplog.text


def test_an_endless_patch_is_cut_and_the_full_binary_still_arrives(tree, updater, server, caplog):
    endless_body(server, "/" + PATCH12)
    tree.install("1.0")
    result = updater().update()
    assert result.method == "full" and tree.target.read_bytes() == _payload("2.0")
    assert "larger than the limit" in caplog.text and "falling back" in caplog.text


def test_a_slow_drip_ends_at_the_overall_deadline(tree, updater, server, caplog):
    server.faults[PATCH12] = Fault(status=404)
    server.faults[FULL2] = Fault(body=(tree.public / FULL2).read_bytes(), chunk_size=256, chunk_delay=0.05)
    tree.install("1.0")
    with pytest.raises(FetchError, match="overall deadline of 1 s"):
        updater(deadline=1).update()
    assert_refused(caplog, tree, "1.0", "overall deadline")


# ------------------------------------------- the deadline is hard, the caps count the wire

#: how long past its deadline a cut transfer may still take to end
SLACK = 2.0


def _refused_within(run, match: str, deadline: float) -> float:
    """Run ``run``, which must fail with a FetchError matching ``match`` within ``deadline`` + SLACK."""
    t0 = time.monotonic()
    with pytest.raises(FetchError, match=match):
        run()
    elapsed = time.monotonic() - t0
    assert elapsed < deadline + SLACK, elapsed
    return elapsed


def test_a_manifest_of_endless_empty_deflate_blocks_is_cut_on_the_wire(tree, updater, server, caplog):
    """gzip that decodes to nothing: the cap counts the bytes received, not the bytes decoded."""
    sent = endless_empty_gzip(server, "/" + MANIFEST)
    tree.install("1.0")
    _refused_within(lambda: updater(deadline=3).update(), "larger than the limit of 65536 bytes", 3)
    assert sent.total <= 16 << 20  # 64 KiB read; the rest is what the kernel buffered
    assert_refused(caplog, tree, "1.0", "larger than the limit of 65536 bytes")


def test_a_full_download_of_endless_empty_deflate_blocks_is_cut_at_the_signed_size(tree, updater, server,
                                                                                   caplog):
    server.faults[PATCH12] = Fault(status=404)
    sent = endless_empty_gzip(server, "/" + FULL2)
    tree.install("1.0")
    cap = signing.signed_body_cap(len(_payload("2.0")))
    _refused_within(lambda: updater(deadline=10).update(), f"larger than the limit of {cap} bytes", 10)
    assert cap < sent.total <= cap + (16 << 20)
    assert_refused(caplog, tree, "1.0", "larger than the limit")


def test_a_gzip_encoded_body_is_decoded_within_the_caps(tree, updater, server):
    """A host that compresses although asked not to (some do) still delivers the update."""
    previous = server.handler

    def gzip_everything(request) -> bool:
        rel = request.path.lstrip("/")
        if not (tree.public / rel).is_file():
            return bool(previous and previous(request))
        body = gz_of((tree.public / rel).read_bytes())
        request.send_response(200)
        request.send_header("Content-Encoding", "gzip")
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)
        return True

    server.handler = gzip_everything
    tree.install("1.0")
    result = updater().update()
    assert result.method == "patch" and tree.target.read_bytes() == _payload("2.0")


def test_an_unknown_content_encoding_is_refused(tree, updater, server, caplog):
    def brotli(request) -> bool:
        request.send_response(200)
        request.send_header("Content-Encoding", "br")
        request.send_header("Content-Length", "4")
        request.end_headers()
        request.wfile.write(b"abcd")
        return True

    server.handler = brotli
    tree.install("1.0")
    with pytest.raises(FetchError, match="Content-Encoding 'br'.*Accept-Encoding: identity"):
        updater().update()
    assert_refused(caplog, tree, "1.0", "Content-Encoding")


def test_headers_dripped_a_byte_at_a_time_end_at_the_deadline(tree, updater, server, caplog):
    sent = drip_headers(server, "/" + MANIFEST)
    tree.install("1.0")
    _refused_within(lambda: updater(deadline=3).update(), "overall deadline of 3 s", 3)
    assert sent.total <= 3 / 0.5 + 2
    assert_refused(caplog, tree, "1.0", "overall deadline")


def test_headers_dripped_through_the_apps_own_session_end_at_the_deadline(tree, updater, server, caplog):
    import requests

    from pyi_selfupdate.fetch import RequestsRequester

    drip_headers(server, "/" + MANIFEST)
    tree.install("1.0")
    session = requests.Session()  # the app's own (proxies, certificates, authentication)
    _refused_within(lambda: updater(deadline=2, requester=RequestsRequester(session=session)).update(),
                    "overall deadline of 2 s", 2)
    assert_refused(caplog, tree, "1.0", "overall deadline")


def test_a_patch_dripping_its_headers_leaves_no_time_for_more(tree, updater, server, caplog):
    """The deadline covers the whole check: the full download after a cut patch is not even asked for."""
    drip_headers(server, "/" + PATCH12)
    tree.install("1.0")
    _refused_within(lambda: updater(deadline=3).update(), "overall deadline of 3 s", 3)
    assert "/" + FULL2 not in server.log
    assert_refused(caplog, tree, "1.0", "overall deadline")


def test_slow_redirects_within_the_server_count_toward_the_deadline(tree, updater, server, caplog):
    sent = slow_redirects(server, "/" + MANIFEST, delay=0.45)
    tree.install("1.0")
    _refused_within(lambda: updater(deadline=3).update(), "overall deadline of 3 s", 3)
    assert sent.total <= 3 / 0.45 + 2
    assert_refused(caplog, tree, "1.0", "overall deadline")


@pytest.mark.parametrize("during_handshake", [True, False], ids=["handshake", "headers"])
def test_https_dripped_a_byte_at_a_time_ends_at_the_deadline(tree, updater, tmp_path, caplog, during_handshake):
    """Over TLS too: the TLS handshake, or the headers after it, a byte every 0.3 s."""
    import requests

    from pyi_selfupdate.fetch import RequestsRequester

    url, cert, sent = tls_dripper(tmp_path, during_handshake=during_handshake)
    session = requests.Session()
    session.verify = str(cert)
    session.trust_env = False  # REQUESTS_CA_BUNDLE would replace verify (a requests rule)
    tree.install("1.0")
    up = updater(deadline=2, api_url=url, requester=RequestsRequester(session=session))
    _refused_within(up.update, "overall deadline of 2 s", 2)
    assert 0 < sent.total <= 2 / 0.3 + 2
    assert_refused(caplog, tree, "1.0", "overall deadline")


def test_a_connect_that_never_completes_ends_at_the_deadline(tree, updater, caplog):
    """A server whose accept queue is full: the connect hangs (the connect timeout is 10 s)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=5)  # fills the queue of 1
    try:
        tree.install("1.0")
        up = updater(deadline=2, api_url=f"http://127.0.0.1:{port}/")
        _refused_within(up.update, "overall deadline of 2 s", 2)
    finally:
        filler.close()
        listener.close()
    assert_refused(caplog, tree, "1.0", "overall deadline")


def test_a_custom_requester_is_held_to_the_deadline_after_every_read(tree, updater, caplog):
    """A requester the client cannot interrupt: the deadline is checked after each read, an empty one too."""
    manifest = tree.manifests["2.0"]

    class Slow:
        def __init__(self) -> None:
            self.reads = [manifest, b""]

        def read(self, n: int) -> bytes:
            block = self.reads.pop(0)
            if not block:
                time.sleep(1.5)  # the end of the body comes after the deadline
            return block

    class Requester:
        def fetch(self, url: str):
            return Slow()

    tree.install("1.0")
    _refused_within(lambda: updater(deadline=1, requester=Requester()).update(), "overall deadline of 1 s", 1)
    assert_refused(caplog, tree, "1.0", "overall deadline")


def test_an_empty_body_is_a_clear_error(tree, updater, server, caplog):
    """Every failure of update() is a SelfUpdateError naming the problem, never a stray OSError."""
    server.faults[PATCH12] = Fault(status=404)
    server.faults[FULL2] = Fault(body=b"")
    tree.install("1.0")
    with pytest.raises(SelfUpdateError, match=FULL2.replace(".", r"\.")):
        updater().update()
    assert_refused(caplog, tree, "1.0", FULL2)


# ------------------------------------------------------------------ transport


def test_a_redirect_to_another_host_is_refused(tree, updater, server, serve, caplog):
    elsewhere = serve(tree.public)  # another origin (other port) serving the same tree
    server.faults[MANIFEST] = Fault(redirect=elsewhere.url + MANIFEST)
    tree.install("1.0")
    with pytest.raises(FetchError, match="another host"):
        updater().update()
    assert elsewhere.log == []
    assert_refused(caplog, tree, "1.0", "refusing a redirect")


def test_a_redirect_within_the_server_is_followed(tree, updater, server):
    shutil.copytree(tree.public, tree.public / "mirror")
    server.faults[MANIFEST] = Fault(redirect="/mirror/" + MANIFEST)
    tree.install("1.0")
    assert updater().update().to_version == "2.0"
    assert "/mirror/" + MANIFEST in server.log


@pytest.mark.parametrize("keys, allow_http, ok", [
    (False, None, False), (True, None, True), (False, True, True), (True, False, False),
])
def test_plain_http_policy(tree, keys, allow_http, ok):
    kwargs = dict(current_version="1.0", api_url="http://updates.example.com/", cmd_name=CMD,
                  platform=PLAT, target=tree.target, allow_http=allow_http,
                  public_keys=[tree.key.public_key_text] if keys else None)
    if ok:
        assert Updater(**kwargs).api_url == "http://updates.example.com/"
    else:
        with pytest.raises(ConfigError, match="http"):
            Updater(**kwargs)


def test_https_and_loopback_http_are_always_allowed(tree):
    for url in ("https://updates.example.com/", "http://127.0.0.1:8000/", "http://[::1]/",
                "http://localhost/"):
        assert Updater(current_version="1.0", api_url=url, cmd_name=CMD, platform=PLAT,
                       target=tree.target, allow_http=False).api_url == url


def test_names_from_the_manifest_are_validated(tree, updater, server, caplog):
    server.faults[MANIFEST] = Fault(body=forged(tree.manifest("2.0"), Version="../../evil"))
    tree.install("1.0")
    with pytest.raises(SelfUpdateError, match="escape"):
        updater().update()
    assert_refused(caplog, tree, "1.0", "escape")


def test_after_every_refusal_the_next_honest_check_works(tree, updater, server):
    server.faults[MANIFEST] = Fault(body=forged(tree.manifest("2.0"), Version="3.0"))
    tree.install("1.0")
    with pytest.raises(SelfUpdateError):
        updater().update()
    server.faults.clear()
    assert updater().update().to_version == "2.0"


def test_a_redirect_to_a_listed_host_is_followed_by_a_signed_app(tree, updater, server, serve):
    cdn = serve(tree.public)  # the object store the server sends downloads to
    cdn_url = cdn.url.replace("127.0.0.1", "localhost")  # another host name
    server.faults[FULL2] = Fault(redirect=cdn_url + FULL2)
    server.faults[PATCH12] = Fault(status=404)
    tree.install("1.0")
    result = updater(redirect_hosts=["LOCALHOST"]).update()
    assert (result.to_version, result.method) == ("2.0", "full")
    assert tree.target.read_bytes() == _payload("2.0")
    assert "/" + FULL2 in cdn.log


def test_a_redirect_to_a_host_not_listed_is_refused(tree, updater, server, serve, caplog):
    cdn = serve(tree.public)
    server.faults[MANIFEST] = Fault(redirect=cdn.url.replace("127.0.0.1", "localhost") + MANIFEST)
    tree.install("1.0")
    with pytest.raises(FetchError, match="another host"):
        updater(redirect_hosts=["cdn.example.com"]).update()
    assert cdn.log == []
    assert_refused(caplog, tree, "1.0", "refusing a redirect")


def test_redirect_hosts_need_signed_updates(tree, server):
    with pytest.raises(ConfigError, match="redirect_hosts .* needs public_keys"):
        Updater(current_version="1.0", api_url=server.url, cmd_name=CMD, platform=PLAT, target=tree.target,
                redirect_hosts=["cdn.example.com"])
    with pytest.raises(ConfigError, match="not a list of host names"):
        Updater(current_version="1.0", api_url=server.url, cmd_name=CMD, platform=PLAT, target=tree.target,
                public_keys=[tree.key.public_key_text], redirect_hosts=["https://cdn.example.com/"])
