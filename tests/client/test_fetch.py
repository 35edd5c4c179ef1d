"""Requesters: a custom one replaces HTTP; the default one's caps and timeouts."""

from __future__ import annotations

import bz2
import gzip
import io
import random
import time
import urllib.parse
from pathlib import Path

import pytest

from pyi_selfupdate import FetchError, PatchError, Updater, VerificationError
from pyi_selfupdate._patch import bsdiff_header, gunzip_to, patch_stream
from pyi_selfupdate.fetch import RequestsRequester

from _installed import python_env

NEWEST = "1.4+meta"


class FolderRequester:
    """Serves a release tree from a folder: the custom-requester example."""

    def __init__(self, root: Path, base: str) -> None:
        self.root, self.base, self.urls = root, base, []

    def fetch(self, url: str):
        self.urls.append(url)
        rel = urllib.parse.unquote(url[len(self.base):])
        path = self.root / rel
        if not path.is_file():
            raise FetchError(f"{url}: no such file")
        return open(path, "rb")


def test_custom_requester_is_used(make_app, go_tree, payload_of, serve):
    target = make_app("1.2")
    requester = FolderRequester(go_tree, "https://updates.invalid/")
    updater = Updater(current_version="1.2", api_url="https://updates.invalid/", cmd_name="myapp",
                      platform="linux-amd64", target=target, requester=requester)
    result = updater.update()
    assert result.method == "patch" and target.read_bytes() == payload_of(NEWEST)
    assert requester.urls == ["https://updates.invalid/myapp/linux-amd64.json",
                              "https://updates.invalid/myapp/1.2/1.4%2Bmeta/linux-amd64"]


def test_custom_requester_errors_become_fetch_errors(make_app, payload_of):
    class Broken:
        def fetch(self, url):
            raise ConnectionResetError("peer reset")

    target = make_app("1.2")
    updater = Updater(current_version="1.2", api_url="https://updates.invalid/",
                      cmd_name="myapp", platform="linux-amd64", target=target, requester=Broken())
    with pytest.raises(FetchError, match="peer reset"):
        updater.update()
    assert target.read_bytes() == payload_of("1.2")


def test_custom_stream_failing_mid_body_falls_back_then_raises(make_app, go_tree, payload_of):
    class Flaky(FolderRequester):
        def fetch(self, url):
            stream = super().fetch(url)
            if url.endswith(".json"):
                return stream

            class Dies(io.RawIOBase):
                def readable(self):
                    return True

                def readinto(self, buf):
                    raise TimeoutError("stalled")

            return Dies()

    target = make_app("1.0")
    updater = Updater(current_version="1.0", api_url="https://u.invalid/", cmd_name="myapp",
                      platform="linux-amd64", target=target,
                      requester=Flaky(go_tree, "https://u.invalid/"))
    with pytest.raises(FetchError, match="stalled"):
        updater.update()
    assert target.read_bytes() == payload_of("1.0")


# -------------------------------------------------------------- default requester


def test_default_requester_404_is_fetch_error(server):
    with pytest.raises(FetchError, match="HTTP 404"):
        RequestsRequester().fetch(server.url + "nothing/here")


def test_default_requester_reads_a_body(server, go_tree):
    stream = RequestsRequester().fetch(server.url + "myapp/linux-amd64.json")
    try:
        assert stream.read() == (go_tree / "myapp/linux-amd64.json").read_bytes()
    finally:
        stream.close()


def test_default_requester_cap_from_content_length(server):
    with pytest.raises(FetchError, match="limit"):
        RequestsRequester(max_bytes=1000).fetch(server.url + "myapp/1.4%2Bmeta/linux-amd64.gz")


def _raw_body_handler(body: bytes, stall: float = 0.0):
    """A handler answering without Content-Length (connection-delimited), maybe stalling."""

    def handle(request) -> bool:
        request.send_response(200)
        request.send_header("Connection", "close")
        request.end_headers()
        request.wfile.write(body)
        request.wfile.flush()
        if stall:
            time.sleep(stall)
        request.close_connection = True
        return True

    return handle


def test_default_requester_cap_without_content_length(server):
    server.handler = _raw_body_handler(b"x" * 5000)
    stream = RequestsRequester(max_bytes=1000).fetch(server.url + "big")
    with pytest.raises(FetchError, match="limit"):
        while stream.read(256):
            pass
    stream.close()


def test_default_requester_read_timeout_before_headers(server):
    """The server answers after 3 s; without the 0.3 s read timeout the fetch would succeed."""
    from _server import Fault

    server.faults["myapp/linux-amd64.json"] = Fault(delay=3)
    with pytest.raises(FetchError, match="timed out"):
        RequestsRequester(read_timeout=0.3).fetch(server.url + "myapp/linux-amd64.json")


def test_default_requester_read_timeout_mid_body(server):
    """The body stalls 3 s then ends normally; only the read timeout makes it an error."""
    server.handler = _raw_body_handler(b"partial body", stall=3)
    stream = RequestsRequester(read_timeout=0.3).fetch(server.url + "stall")
    with pytest.raises(FetchError, match="timed out"):
        while stream.read(1 << 16):
            pass
    stream.close()


def test_connection_refused_is_fetch_error():
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(FetchError, match="cannot fetch"):
        RequestsRequester(connect_timeout=2).fetch(f"http://127.0.0.1:{port}/x")


def test_importing_the_client_does_not_import_requests():
    import subprocess
    import sys

    code = ("import sys, pyi_selfupdate; from pyi_selfupdate import _files, _staging, _instances, _schedule, fetch;"
            "print('requests' in sys.modules, 'bsdiff4' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=python_env({}), check=True)
    assert out.stdout.split() == ["False", "False"]


# ------------------------------------------------------------- patch and gunzip limits


def apply_patch(old: bytes, patch: bytes, *, max_new_size: int) -> bytes:
    out = io.BytesIO()
    patch_stream(lambda o, n: old[o:o + n], len(old), patch, out.write, max_new_size=max_new_size)
    return out.getvalue()


def _patch(ctrl: bytes, diff: bytes, extra: bytes, new_size: int) -> bytes:
    blocks = [bz2.compress(ctrl), bz2.compress(diff), bz2.compress(extra)]
    head = b"BSDIFF40" + b"".join(n.to_bytes(8, "little")
                                  for n in (len(blocks[0]), len(blocks[1]), new_size))
    return head + b"".join(blocks)


def test_patch_header_size_checked_before_allocation(go_tree):
    real = (go_tree / "myapp/1.0/1.4+meta/linux-amd64").read_bytes()
    assert bsdiff_header(real)[2] == 92780
    huge = real[:24] + (1 << 45).to_bytes(8, "little") + real[32:]
    with pytest.raises(PatchError, match="over the limit"):
        apply_patch(b"old", huge, max_new_size=1 << 30)


def test_patch_bzip2_bomb_is_refused_without_decompressing_it():
    ctrl = (1000).to_bytes(8, "little") + bytes(16)  # one entry: add 1000 diff bytes
    bomb = _patch(ctrl, b"\0" * (20 << 20), b"", new_size=1000)
    assert len(bomb) < 100_000
    with pytest.raises(PatchError, match="diff block is longer than its control data says"):
        apply_patch(b"old", bomb, max_new_size=1 << 30)
    with pytest.raises(PatchError, match="control block ends"):  # no control data at all
        apply_patch(b"old", _patch(b"", b"\0" * (20 << 20), b"", new_size=1000), max_new_size=1 << 30)


@pytest.mark.parametrize("data", [b"", b"BSDIFF4", b"BSDIFF41" + b"\0" * 24,
                                  b"BSDIFF40" + b"\xff" * 24, b"BSDIFF40" + b"\0" * 24 + b"junk"])
def test_malformed_patches_are_patch_errors(data):
    with pytest.raises(PatchError):
        apply_patch(b"old bytes", data, max_new_size=1 << 20)


def test_truncated_real_patch_is_patch_error(go_tree, payload_of):
    real = (go_tree / "myapp/1.0/1.4+meta/linux-amd64").read_bytes()
    assert apply_patch(payload_of("1.0"), real, max_new_size=1 << 30) == payload_of(NEWEST)
    for cut in (40, len(real) // 2, len(real) - 10):
        with pytest.raises(PatchError):
            apply_patch(payload_of("1.0"), real[:cut], max_new_size=1 << 30)


def test_control_data_pointing_outside_is_patch_error():
    # one control entry claiming 5000 diff bytes for a 10-byte result
    ctrl = (5000).to_bytes(8, "little") + (0).to_bytes(8, "little") * 2
    with pytest.raises(PatchError):
        apply_patch(b"0123456789", _patch(ctrl, b"\0" * 10, b"", new_size=10),
                    max_new_size=1 << 20)


def test_gunzip_cap_and_members():
    out = []
    data = gzip.compress(b"a" * 1000) + gzip.compress(b"b" * 10)
    size, _ = gunzip_to(io.BytesIO(data).read, out.append, max_size=2000, source="x.gz")
    assert size == 1010 and b"".join(out) == b"a" * 1000 + b"b" * 10
    bomb = gzip.compress(b"\0" * (50 << 20))
    with pytest.raises(VerificationError, match="more than"):
        gunzip_to(io.BytesIO(bomb).read, lambda b: None, max_size=1 << 20, source="bomb.gz")
    with pytest.raises(VerificationError):
        gunzip_to(io.BytesIO(data + b"trailing junk!").read, lambda b: None, max_size=1 << 20,
                  source="x.gz")
    with pytest.raises(VerificationError, match="empty"):
        gunzip_to(io.BytesIO(b"").read, lambda b: None, max_size=10, source="x.gz")


def test_streamed_patch_equals_bsdiff4_for_any_control_data():
    """Runs of entries applied together give bsdiff4's own result: entries of every size,
    seeks backwards and out of the old file, empty entries; chunks small enough to split them."""
    import bsdiff4.core

    rng = random.Random(7)
    for trial in range(60):
        old = rng.randbytes(rng.randrange(0, 5000))
        entries, size = [], 0
        for _ in range(rng.randrange(1, 80)):
            add, copy = rng.choice([0, 1, 3, 50, 700]), rng.choice([0, 0, 1, 20, 900])
            entries.append((add, copy, rng.randrange(-3000, 3000)))
            size += add + copy
        enc = bsdiff4.core.encode_int64
        ctrl = b"".join(enc(a) + enc(c) + enc(s) for a, c, s in entries)
        diff = rng.randbytes(sum(a for a, _, _ in entries))
        extra = rng.randbytes(sum(c for _, c, _ in entries))
        want = bsdiff4.core.patch(old, size, ctrl, diff, extra)
        out = io.BytesIO()
        patch_stream(lambda o, n: old[o:o + n], len(old), _patch(ctrl, diff, extra, size), out.write,
                     max_new_size=1 << 20, chunk=rng.choice([64, 1000, 1 << 20]))
        assert out.getvalue() == want, trial
