"""``pyi-selfupdate serve`` and ``pyi-selfupdate ls`` on a real tree written by the release tool.

``serve`` runs as the user runs it (the CLI, in its own process, on a free
port) and is asked with real HTTP requests; an Updater updates from it.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pyi_selfupdate import Updater
from pyi_selfupdate.release import release
from pyi_selfupdate.release.keys import generate_private_key, write_private_key

CMD, PLAT = "myapp", "linux-amd64"


def _binary(version: str) -> bytes:
    # 200 KB of text-like bytes with a small change per version: a real patch, far smaller than the .gz
    base = b"".join(b"line %06d of myapp's code\n" % i for i in range(8000))
    return base.replace(b"line 004000", f"v{version:>10}".encode())


def _release_tree(tmp_path: Path, versions=("1.0", "1.1", "1.2"), key: Path = None) -> Path:
    out = tmp_path / "public"
    src = tmp_path / "dist"
    src.mkdir(exist_ok=True)
    for v in versions:
        exe = src / CMD
        exe.write_bytes(_binary(v))
        options = {"sign_keys": [str(key)], "expires_days": 30} if key else {}
        release(exe, v, out, platform=PLAT, options=options)
    return out


def _cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pyi_selfupdate", *args], capture_output=True,
                          text=True, timeout=60, **kw)


@pytest.fixture
def served(tmp_path):
    """``served(out)``: ``pyi-selfupdate serve OUT --port 0`` in its own process; returns its port."""
    procs = []

    def start(out: Path) -> int:
        proc = subprocess.Popen([sys.executable, "-m", "pyi_selfupdate", "serve", str(out), "--port", "0"],
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(proc)
        line = proc.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, line
        return int(match.group(1))

    yield start
    for proc in procs:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)


def _get(port: int, path: str, method: str = "GET", **headers):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request(method, path, headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp, body


def test_serve_sends_the_headers_a_real_host_should(tmp_path, served):
    out = _release_tree(tmp_path)
    port = served(out)
    resp, body = _get(port, f"/{CMD}/{PLAT}.json")
    assert resp.status == 200 and body == (out / CMD / f"{PLAT}.json").read_bytes()
    assert resp.getheader("Cache-Control") == "no-cache"
    assert resp.getheader("Content-Type") == "application/json"
    resp, body = _get(port, f"/{CMD}/1.2/{PLAT}.gz")
    assert resp.status == 200 and body == (out / CMD / "1.2" / f"{PLAT}.gz").read_bytes()
    assert resp.getheader("Cache-Control") == "public, max-age=31536000, immutable"
    assert resp.getheader("Content-Type") == "application/gzip"
    resp, body = _get(port, f"/{CMD}/1.0/1.2/{PLAT}")
    assert resp.status == 200 and body == (out / CMD / "1.0" / "1.2" / PLAT).read_bytes()
    assert resp.getheader("Cache-Control") == "public, max-age=31536000, immutable"
    assert resp.getheader("Content-Type") == "application/octet-stream"
    # HEAD: the size without the body
    resp, body = _get(port, f"/{CMD}/1.2/{PLAT}.gz", method="HEAD")
    assert resp.status == 200 and body == b""
    assert int(resp.getheader("Content-Length")) == (out / CMD / "1.2" / f"{PLAT}.gz").stat().st_size
    # revalidation: an unchanged manifest is a 304
    etag = _get(port, f"/{CMD}/{PLAT}.json")[0].getheader("ETag")
    resp, body = _get(port, f"/{CMD}/{PLAT}.json", **{"If-None-Match": etag})
    assert resp.status == 304 and body == b""


def test_serve_answers_ranges_guarded_by_if_range(tmp_path, served):
    out = _release_tree(tmp_path)
    port = served(out)
    path = f"/{CMD}/1.2/{PLAT}.gz"
    whole = (out / CMD / "1.2" / f"{PLAT}.gz").read_bytes()
    etag = _get(port, path, method="HEAD")[0].getheader("ETag")
    resp, body = _get(port, path, Range="bytes=100-", **{"If-Range": etag})
    assert resp.status == 206 and body == whole[100:]
    assert resp.getheader("Content-Range") == f"bytes 100-{len(whole) - 1}/{len(whole)}"
    resp, body = _get(port, path, Range="bytes=10-19")
    assert resp.status == 206 and body == whole[10:20]
    # the file changed since (another ETag): the whole file, as the client then expects
    resp, body = _get(port, path, Range="bytes=100-", **{"If-Range": '"stale"'})
    assert resp.status == 200 and body == whole
    resp, _ = _get(port, path, Range=f"bytes={len(whole)}-")
    assert resp.status == 416


def test_serve_serves_only_files_inside_the_tree(tmp_path, served):
    out = _release_tree(tmp_path, versions=("1.0",))
    (tmp_path / "secret").write_text("private")
    os.symlink(tmp_path / "secret", out / CMD / "link.json")
    port = served(out)
    for path in ("/../secret", "/%2e%2e/secret", f"/{CMD}/link.json", f"/{CMD}/", "/"):
        resp, body = _get(port, path)
        assert resp.status == 404 and b"private" not in body, path


def test_an_updater_updates_from_serve(tmp_path, served):
    out = _release_tree(tmp_path)
    port = served(out)
    app = tmp_path / "installed"
    app.mkdir()
    target = app / CMD
    target.write_bytes(_binary("1.0"))
    updater = Updater(current_version="1.0", api_url=f"http://127.0.0.1:{port}/", cmd_name=CMD,
                      platform=PLAT, target=target)
    result = updater.update()
    assert result is not None and result.installed and result.method == "patch"
    assert target.read_bytes() == _binary("1.2")
    again = Updater(current_version="1.2", api_url=f"http://127.0.0.1:{port}/", cmd_name=CMD,
                    platform=PLAT, target=target)
    assert again.update() is None  # now current


def test_serve_refuses_a_missing_folder_and_a_taken_port(tmp_path, served):
    proc = _cli("serve", str(tmp_path / "nope"), "--port", "0")
    assert proc.returncode == 2 and "is not a folder" in proc.stderr
    out = _release_tree(tmp_path, versions=("1.0",))
    port = served(out)
    proc = _cli("serve", str(out), "--port", str(port))
    assert proc.returncode == 2 and "choose another --port" in proc.stderr


def test_ls_shows_the_tree_at_a_glance(tmp_path):
    key = tmp_path / "release.key"
    k = generate_private_key()
    write_private_key(key, k)
    out = _release_tree(tmp_path, key=key)
    proc = _cli("ls", str(out), "--public-key", k.public_key_text)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    gz = {v: (out / CMD / v / f"{PLAT}.gz").stat().st_size for v in ("1.0", "1.1", "1.2")}
    from pyi_selfupdate.release._model import human_size

    assert f"{CMD} {PLAT}: current 1.2 (file, {human_size(len(_binary('1.2')))})" in text
    assert f"signed: serial 3, expires " in text and "(in 30 d)" in text and k.key_id in text
    assert f"signature valid (key {k.key_id})" in text
    assert f"1.0 (.gz {human_size(gz['1.0'])}), 1.1 (.gz {human_size(gz['1.1'])}), 1.2 (.gz {human_size(gz['1.2'])}) *" in text
    patch = (out / CMD / "1.0" / "1.2" / PLAT).stat().st_size
    assert f"1.0 -> 1.2 ({human_size(patch)})" in text and "1.0 -> 1.1" in text and "1.1 -> 1.2" in text


def test_ls_says_what_is_wrong_with_a_tree(tmp_path):
    out = _release_tree(tmp_path, versions=("1.0", "1.1"))
    other = generate_private_key()
    (out / CMD / "1.0" / "1.1" / PLAT).unlink()
    proc = _cli("ls", str(out), "--public-key", other.public_key_text)
    assert proc.returncode == 2
    assert "unsigned; signature REFUSED" in proc.stdout
    assert "to 1.1 without a patch (full .gz): 1.0" in proc.stdout
    (out / CMD / "1.1" / f"{PLAT}.gz").unlink()
    proc = _cli("ls", str(out))
    assert proc.returncode == 2 and "problem: the current version 1.1 has no .gz" in proc.stdout
    proc = _cli("ls", str(tmp_path / "nope"))
    assert proc.returncode == 2 and "is not a release tree folder" in proc.stderr


def test_serve_and_ls_read_the_go_cli_tree(go_tree, go_vectors, served, tmp_path):
    # versions escaped as Go's url.QueryEscape escapes them ("1.4+meta" asked as 1.4%2Bmeta)
    port = served(go_tree)
    target = tmp_path / "myapp"
    target.write_bytes((go_vectors / "payloads" / "single" / "1.1").read_bytes())
    result = Updater(current_version="1.1", api_url=f"http://127.0.0.1:{port}/", cmd_name="myapp",
                     platform=PLAT, target=target).update()
    assert result is not None and result.to_version == "1.4+meta" and result.method == "patch"
    assert target.read_bytes() == (go_vectors / "payloads" / "single" / "1.4+meta").read_bytes()
    proc = _cli("ls", str(go_tree))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "myapp linux-amd64: current 1.4+meta (file)" in proc.stdout and "1.1 -> 1.4+meta (" in proc.stdout
    assert "multi windows-amd64: current 2.0 (file)" in proc.stdout
