"""``pyi-selfupdate serve [OUT]``: the release tree over HTTP on 127.0.0.1, for local testing.

It answers as a real host should be set up (the README gives the same rules for
S3, a CDN and nginx):

- the manifests ``<cmd>/<plat>.json`` change at every release:
  ``Cache-Control: no-cache`` (a cache may keep them, but must ask the origin
  every time, which answers ``304`` while they are unchanged);
- everything under a version folder never changes once written (``.gz``,
  patches; the release tool refuses to rewrite them with other bytes):
  ``Cache-Control: public, max-age=31536000, immutable``; the signed records
  ``<cmd>/<ver>/<plat>.json``, read by the release tool only, are ``no-cache``;
- ``ETag`` and ``Last-Modified`` on every file, ``If-None-Match`` /
  ``If-Modified-Since`` answered ``304``;
- ``Range: bytes=N-`` (and ``N-M``) answered ``206`` with ``Content-Range``,
  guarded by ``If-Range``, as the client resumes an interrupted download;
- content types: ``application/json``, ``application/gzip``, and
  ``application/octet-stream`` for patches.

Only files inside OUT are served: no listing, no symbolic link followed.
"""

from __future__ import annotations

import email.utils
import http.server
import os
import posixpath
import stat
import urllib.parse
from pathlib import Path
from typing import Optional, Tuple

__all__ = ["cache_control", "content_type", "make_server", "IMMUTABLE", "REVALIDATE"]

#: For files that never change once published (under a version folder).
IMMUTABLE = "public, max-age=31536000, immutable"
#: For files that change at each release (manifests): caches must ask the origin each time.
REVALIDATE = "no-cache"


def cache_control(relpath: str) -> str:
    """The ``Cache-Control`` of the tree file at ``relpath`` (``<cmd>/...``)."""
    parts = relpath.split("/")
    if relpath.endswith(".json"):
        return REVALIDATE  # <cmd>/<plat>.json, and the records <cmd>/<ver>/<plat>.json
    return IMMUTABLE if len(parts) >= 3 else REVALIDATE


def content_type(relpath: str) -> str:
    if relpath.endswith(".json"):
        return "application/json"
    if relpath.endswith(".gz"):
        return "application/gzip"
    return "application/octet-stream"


def _resolve(root: Path, url_path: str) -> Optional[Tuple[Path, str]]:
    """``(file, relpath)`` for a request path, or None (outside the tree, a link, not a file)."""
    rel = urllib.parse.unquote(urllib.parse.urlsplit(url_path).path)
    norm = posixpath.normpath("/" + rel).lstrip("/")
    if not norm or norm.startswith("..") or "\\" in norm or "\x00" in norm:
        return None
    path = root
    for part in norm.split("/"):
        path = path / part
        try:
            st = os.lstat(path)
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            return None
    return (path, norm) if stat.S_ISREG(st.st_mode) else None


def _range(header: str, size: int) -> Optional[Tuple[int, int]]:
    """``(first, last)`` of a single ``bytes=`` range, or None when it cannot be served as one."""
    if not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[6:].strip().partition("-")
    try:
        if first == "":  # bytes=-N: the last N bytes
            n = int(last)
            return (max(0, size - n), size - 1) if n > 0 else None
        a = int(first)
        b = int(last) if last else size - 1
    except ValueError:
        return None
    return (a, min(b, size - 1)) if a <= b else None


def make_server(root: "str | os.PathLike[str]", port: int = 8000, host: str = "127.0.0.1",
                log=None) -> http.server.ThreadingHTTPServer:
    """A server for the tree at ``root`` (call ``serve_forever()``; port 0: any free port)."""
    tree = Path(root).resolve()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "pyi-selfupdate-serve"

        def log_message(self, fmt: str, *args) -> None:
            if log is not None:
                log(f"{self.address_string()} {fmt % args}")

        def do_HEAD(self) -> None:
            self._answer(body=False)

        def do_GET(self) -> None:
            self._answer(body=True)

        def _answer(self, body: bool) -> None:
            found = _resolve(tree, self.path)
            if found is None:
                return self._plain(404, b"not found\n", body)
            path, rel = found
            try:
                fh = open(path, "rb")
            except OSError:
                return self._plain(404, b"not found\n", body)
            with fh:
                st = os.fstat(fh.fileno())
                size = st.st_size
                etag = '"%x-%x-%x"' % (st.st_ino, size, st.st_mtime_ns)
                modified = email.utils.formatdate(int(st.st_mtime), usegmt=True)
                headers = [("ETag", etag), ("Last-Modified", modified), ("Accept-Ranges", "bytes"),
                           ("Cache-Control", cache_control(rel)), ("Content-Type", content_type(rel))]
                if self.headers.get("If-None-Match") == etag or (
                        self.headers.get("If-None-Match") is None
                        and self.headers.get("If-Modified-Since") == modified):
                    return self._send(304, headers, None, 0, 0, False)
                first, last, status = 0, size - 1, 200
                asked = self.headers.get("Range")
                if_range = self.headers.get("If-Range")
                if asked and (if_range is None or if_range in (etag, modified)):
                    span = _range(asked, size)
                    if span is None or span[0] >= size:
                        headers = [("Content-Range", f"bytes */{size}")]
                        return self._plain(416, b"range not satisfiable\n", body, headers)
                    first, last = span
                    status = 206
                    headers.append(("Content-Range", f"bytes {first}-{last}/{size}"))
                self._send(status, headers, fh, first, last - first + 1, body)

        def _plain(self, status: int, text: bytes, body: bool, extra=()) -> None:
            headers = [("Content-Type", "text/plain"), ("Cache-Control", "no-store"), *extra]
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(text)))
            self.end_headers()
            if body:
                self.wfile.write(text)

        def _send(self, status: int, headers, fh, first: int, length: int, body: bool) -> None:
            self.send_response(status)
            for k, v in headers:
                self.send_header(k, v)
            self.send_header("Content-Length", str(length if status != 304 else 0))
            self.end_headers()
            if not body or fh is None:
                return
            fh.seek(first)
            left = length
            try:
                while left > 0:
                    block = fh.read(min(left, 1 << 16))
                    if not block:
                        break
                    self.wfile.write(block)
                    left -= len(block)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

    server = http.server.ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server
