"""Helpers of the hostile-server tests: endless bodies and gzip payloads."""

from __future__ import annotations

import gzip
import io
import os
import select
import socket
import ssl
import threading
import time
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


def _answer(server, path: str, answer, *, ignore_query: bool = False) -> Sent:
    """Make ``server`` answer ``path`` with ``answer(request, sent)``; other paths go to the
    handler it had. Returns the :class:`Sent` that ``answer`` counts in."""
    sent = Sent()
    previous = server.handler

    def handle(request) -> bool:
        if (request.path.split("?")[0] if ignore_query else request.path) != path:
            return bool(previous and previous(request))
        answer(request, sent)
        return True

    server.handler = handle
    return sent


def endless_body(server, path: str, *, chunk: bytes = b"", limit: int = 256 << 20) -> Sent:
    """Make ``server`` answer ``path`` with ``chunk`` (default: 64 KiB of random bytes) forever.

    No Content-Length: the body is delimited by the connection, which only the
    client can end. ``limit`` keeps a broken client from running the test forever.
    Returns a :class:`Sent` whose ``total`` counts the bytes written.
    """
    chunk = chunk or os.urandom(64 << 10)

    def answer(request, sent: Sent) -> None:
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

    return _answer(server, path, answer)


#: a deflate block that decodes to nothing: stored, not final, length 0
EMPTY_DEFLATE_BLOCK = b"\x00\x00\x00\xff\xff"
#: the 10-byte header of a gzip member (deflate, no name, no time)
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"


def endless_empty_gzip(server, path: str, *, limit: int = 256 << 20) -> Sent:
    """Answer ``path`` with ``Content-Encoding: gzip`` and a gzip member of empty deflate blocks, forever.

    It decodes to nothing at all: a client counting decoded bytes never reaches
    its cap, and one that waits for decoded output waits forever.
    """
    chunk = EMPTY_DEFLATE_BLOCK * ((64 << 10) // len(EMPTY_DEFLATE_BLOCK))

    def answer(request, sent: Sent) -> None:
        request.send_response(200)
        request.send_header("Content-Type", "application/octet-stream")
        request.send_header("Content-Encoding", "gzip")
        request.send_header("Connection", "close")
        request.end_headers()
        request.close_connection = True
        try:
            request.wfile.write(GZIP_HEADER)
            while sent.total < limit:
                request.wfile.write(chunk)
                sent.total += len(chunk)
        except OSError:
            pass

    return _answer(server, path, answer)


def drip_headers(server, path: str, *, interval: float = 0.5, limit: float = 60.0) -> Sent:
    """Answer ``path`` with a status line, then headers one byte every ``interval`` seconds, never ending them.

    Every read of the client returns a byte well within any read timeout.
    ``limit`` (seconds) keeps a broken client from holding the test forever.
    """
    def answer(request, sent: Sent) -> None:
        request.close_connection = True
        end = time.monotonic() + limit
        try:
            request.wfile.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
            while time.monotonic() < end:
                request.wfile.write(b"a")
                sent.total += 1
                time.sleep(interval)
        except OSError:
            pass

    return _answer(server, path, answer)


def slow_redirects(server, path: str, *, delay: float = 0.45, hops: int = 1000) -> Sent:
    """Answer ``path`` with a same-origin redirect to ``path?n=1``, then ``?n=2``..., each after ``delay`` s.

    ``total`` counts the redirects sent.
    """
    def answer(request, sent: Sent) -> None:
        time.sleep(delay)
        n = int(request.path.partition("?n=")[2] or 0)
        request.send_response(302)
        request.send_header("Location", f"{path}?n={n + 1 if n < hops else 0}")
        request.send_header("Content-Length", "0")
        request.end_headers()
        sent.total += 1

    return _answer(server, path, answer, ignore_query=True)


#: A self-signed certificate for 127.0.0.1 and its key (valid 2026-11-30 to 2126): pass
#: the certificate's file as ``requests``' ``verify`` to trust it.
TLS_CERT = """-----BEGIN CERTIFICATE-----
MIIBkDCCATagAwIBAgIUT/UQyqahyJHYkUVBIZA5Pbl4ZEUwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJMTI3LjAuMC4xMCAXDTI2MTEzMDExNTIzNloYDzIxMjYxMTA2
MTE1MjM2WjAUMRIwEAYDVQQDDAkxMjcuMC4wLjEwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAASDFi4PETb9YvF+iO9ZjcCPItpb4FiV0HfiXDNwFkfOH8K+Dq1NXGCC
Xvn5rRI+WK/J7JPKeHboLdG/OXbpxPSro2QwYjAdBgNVHQ4EFgQUGCdqBZe/ril2
/axUe9cWB2rCOecwHwYDVR0jBBgwFoAUGCdqBZe/ril2/axUe9cWB2rCOecwDwYD
VR0TAQH/BAUwAwEB/zAPBgNVHREECDAGhwR/AAABMAoGCCqGSM49BAMCA0gAMEUC
IQDtHzX0L6GrFuXIWMhh4EomU1tnPHo2ZfO/jUB9yWFdHQIgHz9seYorFmd1OUkz
TJm3OwtKetzME4ynJmkfw+PDS7w=
-----END CERTIFICATE-----
"""
TLS_KEY = """-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgd6Uu594/4XHLpf5S
mP+yDmLvo2tPgVszrXGQxH8OohahRANCAASDFi4PETb9YvF+iO9ZjcCPItpb4FiV
0HfiXDNwFkfOH8K+Dq1NXGCCXvn5rRI+WK/J7JPKeHboLdG/OXbpxPSr
-----END PRIVATE KEY-----
"""


def tls_dripper(tmp_path, *, during_handshake: bool, interval: float = 0.3, limit: float = 30.0):
    """An HTTPS server on 127.0.0.1 that drips, one byte every ``interval`` s: its handshake, or its headers.

    Returns ``(url, cert_file, sent)``. ``during_handshake``: the TLS handshake
    itself comes a byte at a time (a real TLS server behind a slow relay);
    otherwise the handshake is quick and the headers never end.
    """
    cert, key = tmp_path / "tls-cert.pem", tmp_path / "tls-key.pem"
    cert.write_text(TLS_CERT)
    key.write_text(TLS_KEY)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(key))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    sent = Sent()

    def relay(conn) -> None:  # the client's bytes at once, the server's a byte at a time
        near, far = socket.socketpair()
        threading.Thread(target=lambda: _quietly(lambda: ctx.wrap_socket(far, server_side=True).recv(1)),
                         daemon=True).start()
        pending = b""
        end = time.monotonic() + limit
        while time.monotonic() < end:
            ready, _, _ = select.select([conn, near], [], [], interval)
            if conn in ready:
                data = conn.recv(65536)
                if not data:
                    return
                near.sendall(data)
            if near in ready:
                pending += near.recv(65536)
            if pending:
                conn.sendall(pending[:1])
                pending = pending[1:]
                sent.total += 1
                time.sleep(interval)

    def headers(conn) -> None:
        tls = ctx.wrap_socket(conn, server_side=True)
        tls.recv(65536)
        tls.sendall(b"HTTP/1.1 200 OK\r\nX-Drip: ")
        end = time.monotonic() + limit
        while time.monotonic() < end:
            tls.sendall(b"a")
            sent.total += 1
            time.sleep(interval)

    def serve() -> None:
        with listener:
            conn, _ = listener.accept()
            with conn:
                _quietly(lambda: (relay if during_handshake else headers)(conn))

    threading.Thread(target=serve, daemon=True).start()
    return f"https://127.0.0.1:{listener.getsockname()[1]}/", cert, sent


def _quietly(run) -> None:
    try:
        run()
    except (OSError, ValueError):  # the client hung up
        pass
