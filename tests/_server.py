"""A real HTTP server on 127.0.0.1 serving a release tree, for tests.

It logs every request path (raw, as sent: ``%2B`` stays ``%2B``) and can be told
to misbehave per path: an error status, a replacement body, or a delay.
"""

from __future__ import annotations

import http.server
import os
import posixpath
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional


@dataclass
class Fault:
    status: Optional[int] = None  # answer this status instead of the file
    body: Optional[bytes] = None  # answer these bytes instead of the file
    delay: float = 0.0  # seconds to wait before answering


@dataclass
class ReleaseServer:
    root: Path
    host: str = "127.0.0.1"
    log: List[str] = field(default_factory=list)
    faults: Dict[str, Fault] = field(default_factory=dict)
    handler: Optional[Callable] = None  # handler(request_handler) -> bool (True: handled)

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
                    time.sleep(fault.delay)
                if fault and fault.status is not None:
                    return self._answer(fault.status, b"fault injected\n")
                if fault and fault.body is not None:
                    return self._answer(200, fault.body)
                norm = posixpath.normpath(rel)
                path = server.root / norm
                if norm.startswith("..") or not path.is_file():
                    return self._answer(404, b"not found\n")
                return self._answer(200, path.read_bytes())

            def _answer(self, status: int, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._httpd = http.server.ThreadingHTTPServer((self.host, 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """Base URL, ending in ``/`` as the protocol requires."""
        return f"http://{self.host}:{self._httpd.server_address[1]}/"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
