"""Helpers of the hostile-server tests: endless bodies and gzip payloads."""

from __future__ import annotations

import gzip
import io
import os
from dataclasses import dataclass


def gz_of(data: bytes) -> bytes:
    """Gzip ``data`` (level 6, no timestamp)."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as fh:
        fh.write(data)
    return buf.getvalue()


@dataclass
class Sent:
    total: int = 0


def endless_body(server, path: str, *, chunk: bytes = b"", limit: int = 256 << 20) -> Sent:
    """Make ``server`` answer ``path`` with ``chunk`` (default: 64 KiB of random bytes) forever.

    No Content-Length: the body is delimited by the connection, which only the
    client can end. ``limit`` keeps a broken client from running the test forever.
    Returns a :class:`Sent` whose ``total`` counts the bytes written.
    """
    sent = Sent()
    chunk = chunk or os.urandom(64 << 10)
    previous = server.handler

    def handle(request) -> bool:
        if request.path != path:
            return bool(previous and previous(request))
        request.send_response(200)
        request.send_header("Content-Type", "application/octet-stream")
        request.send_header("Connection", "close")
        request.end_headers()
        request.close_connection = True
        try:
            while sent.total < limit:
                request.wfile.write(chunk)
                sent.total += len(chunk)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        return True

    server.handler = handle
    return sent
