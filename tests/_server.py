"""A real HTTP server on 127.0.0.1 serving a release tree, for tests.

It logs every request path (raw, as sent: ``%2B`` stays ``%2B``) and can be told
to misbehave per path: an error status, a replacement body, a delay, and the
network faults of the fault-injection suite (a connection reset mid-body, a
truncated body, a wrong Content-Length, a stalled socket, a redirect, a slow
body sent chunk by chunk).
"""

from __future__ import annotations

import hashlib
import http.server
import posixpath
import selectors
import socket
import struct
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple


@dataclass
class Fault:
    status: Optional[int] = None  # answer this status instead of the file
    body: Optional[bytes] = None  # answer these bytes instead of the file
    delay: float = 0.0  # seconds to wait before answering
    reset_after: Optional[int] = None  # send this many body bytes, then reset the connection (RST)
    truncate_after: Optional[int] = None  # announce the whole length, send this many bytes, close
    content_length: Optional[int] = None  # announce this Content-Length, send the real body
    stall: float = 0.0  # send the headers, then nothing for this many seconds, then close
    redirect: Optional[str] = None  # answer 302 with this Location (its own path: a redirect loop)
    chunk_size: int = 0  # with chunk_delay: send the body in chunks of this many bytes,
    chunk_delay: float = 0.0  # sleeping this long before each chunk (a slow server)


class _QuietServer(http.server.ThreadingHTTPServer):
    """Clients dropping connections on purpose (timeouts, resets) are not errors here.

    Handler threads are daemons and never joined: a handler stalled on purpose
    does not hold up ``close()`` (which also wakes its waits, see ``closing``).
    """

    daemon_threads = True
    block_on_close = False

    def __init__(self, *args, **kwargs) -> None:
        self.closing = threading.Event()  # set by close(): fault waits end at once
        super().__init__(*args, **kwargs)

    def handle_error(self, request, client_address) -> None:
        if self.closing.is_set():
            return  # a handler woken by close() found its client gone: expected
        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)


@dataclass
class ReleaseServer:
    root: Path
    host: str = "127.0.0.1"
    log: List[str] = field(default_factory=list)
    faults: Dict[str, Fault] = field(default_factory=dict)
    handler: Optional[Callable] = None  # handler(request_handler) -> bool (True: handled)
    port: int = 0  # 0: any free port; a fixed port for apps built with the URL embedded
    # on_sent(path, time.monotonic()) after the last byte of a complete 200 body was sent
    on_sent: Optional[Callable[[str, float], None]] = None
    sent: List[Tuple[str, float]] = field(default_factory=list)  # the same, as a log
    # Range requests: answered with 206 like nginx (ETag from size and content; If-Range
    # honoured) unless ignore_range, which answers the whole file as a server without
    # range support does. ranges logs (path, first byte asked, status) of each.
    ignore_range: bool = False
    ranges: List[Tuple[str, int, int]] = field(default_factory=list)
    bytes_sent: Dict[str, int] = field(default_factory=dict)  # body bytes sent per path

    def __post_init__(self) -> None:
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                server.log.append(self.path)
                if server.handler is not None and server.handler(self):
                    return
                rel = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
                fault = server.faults.get(rel)
                if fault and fault.delay:
                    server._wait(fault.delay)
                if fault and fault.redirect is not None:
                    self.send_response(302)
                    self.send_header("Location", fault.redirect)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                if fault and fault.status is not None:
                    return self._answer(fault.status, b"fault injected\n")
                if fault and fault.body is not None:
                    return self._answer(200, fault.body, fault)
                norm = posixpath.normpath(rel)
                path = server.root / norm
                if norm.startswith("..") or not path.is_file():
                    return self._answer(404, b"not found\n")
                data = path.read_bytes()
                etag = '"%x-%s"' % (len(data), hashlib.sha256(data).hexdigest()[:16])
                asked = self.headers.get("Range", "")
                if asked.startswith("bytes=") and asked.endswith("-") and not server.ignore_range:
                    first = int(asked[6:-1])
                    if_range = self.headers.get("If-Range")
                    if (if_range is None or if_range == etag) and first < len(data):
                        server.ranges.append((self.path, first, 206))
                        return self._answer(206, data[first:], fault, etag=etag,
                                            extra=[("Content-Range", f"bytes {first}-{len(data) - 1}/{len(data)}")])
                    server.ranges.append((self.path, first, 200))
                elif asked:
                    server.ranges.append((self.path, -1, 200))
                return self._answer(200, data, fault, etag=etag)

            def _answer(self, status: int, body: bytes, fault: Optional[Fault] = None,
                        etag: Optional[str] = None, extra=()) -> None:
                length = len(body)
                if fault is not None and fault.content_length is not None:
                    length = fault.content_length
                self.send_response(status)
                self.send_header("Content-Length", str(length))
                self.send_header("Content-Type", "application/octet-stream")
                if etag is not None:
                    self.send_header("ETag", etag)
                    self.send_header("Accept-Ranges", "none" if server.ignore_range else "bytes")
                for name, value in extra:
                    self.send_header(name, value)
                self.end_headers()
                path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
                server.bytes_sent[path] = server.bytes_sent.get(path, 0)  # counted as written below
                try:
                    if fault is None:
                        self.wfile.write(body)
                        server.bytes_sent[path] += len(body)
                    else:
                        self._faulty_body(body, fault, path)
                        if self.close_connection:
                            return None
                    if status in (200, 206):
                        self._mark_sent()
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True

            def _faulty_body(self, body: bytes, fault: Fault, path: str = "") -> None:
                if fault.stall:
                    self.wfile.flush()
                    server._wait(fault.stall)
                    self.close_connection = True
                    return
                if fault.reset_after is not None:
                    self.wfile.write(body[: fault.reset_after])
                    self.wfile.flush()
                    # SO_LINGER 0: close() sends RST instead of FIN
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                    )
                    self.connection.close()
                    self.close_connection = True
                    return
                if fault.truncate_after is not None:
                    body = body[: fault.truncate_after]
                    self.close_connection = True
                if fault.chunk_size > 0:
                    for start in range(0, len(body), fault.chunk_size):
                        if fault.chunk_delay:
                            server._wait(fault.chunk_delay)
                        if server._httpd.closing.is_set():
                            self.close_connection = True
                            return
                        self.wfile.write(body[start : start + fault.chunk_size])
                        self.wfile.flush()
                        server.bytes_sent[path] = server.bytes_sent.get(path, 0) + len(body[start : start + fault.chunk_size])
                else:
                    self.wfile.write(body)
                    server.bytes_sent[path] = server.bytes_sent.get(path, 0) + len(body)
                if self.close_connection:
                    self.wfile.flush()

            def _mark_sent(self) -> None:
                self.wfile.flush()
                now = time.monotonic()
                server.sent.append((self.path, now))
                if server.on_sent is not None:
                    server.on_sent(self.path, now)

        self._httpd = _QuietServer((self.host, self.port), Handler)
        # close() wakes the accept loop through this pair: no polling, no 0.5 s
        # wait for serve_forever's poll interval at every teardown.
        self._wake_r, self._wake_w = socket.socketpair()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        httpd = self._httpd
        with selectors.DefaultSelector() as selector:
            selector.register(httpd, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            while not httpd.closing.is_set():
                for key, _ in selector.select():
                    if key.fileobj is httpd and not httpd.closing.is_set():
                        httpd._handle_request_noblock()  # accept; a thread answers

    def _wait(self, seconds: float) -> None:
        """Sleep in a handler (a fault's delay or stall); ends early when the server closes."""
        self._httpd.closing.wait(seconds)

    @property
    def url(self) -> str:
        """Base URL, ending in ``/`` as the protocol requires."""
        return f"http://{self.host}:{self._httpd.server_address[1]}/"

    def close(self) -> None:
        """Stop at once: the accept loop ends, the port is free; handler threads are not waited for."""
        if self._httpd.closing.is_set():
            return
        self._httpd.closing.set()
        self._wake_w.send(b"x")
        self._thread.join(5)
        self._httpd.server_close()
        self._wake_r.close()
        self._wake_w.close()
