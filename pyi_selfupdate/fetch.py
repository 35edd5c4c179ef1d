"""Fetching: the :class:`Requester` protocol and the default :class:`RequestsRequester`.

A requester turns a URL into a readable binary stream, go-selfupdate's
``Requester.Fetch(url) (io.ReadCloser, error)``. Pass your own object with a
``fetch(url)`` method to :class:`pyi_selfupdate.Updater` to add authentication,
a proxy, a mirror list or an offline source.

``requests`` is imported only when a :class:`RequestsRequester` fetches for the
first time: the runtime bootstrap imports this module at every launch of a
frozen app, and most launches make no request at all.
"""

from __future__ import annotations

import io
from typing import Any, BinaryIO, Optional

try:  # Python >= 3.8
    from typing import Protocol
except ImportError:  # pragma: no cover
    Protocol = object  # type: ignore[assignment,misc]

from . import _lazy
from .errors import FetchError

__all__ = ["Requester", "RequestsRequester", "USER_AGENT"]

log = _lazy.logger("pyi_selfupdate")  # attaches the package's NullHandler (see _lazy)

#: The User-Agent the default requester sends.
USER_AGENT = "pyi-selfupdate (go-selfupdate protocol)"


class Requester(Protocol):
    """Anything with ``fetch(url) -> readable binary stream``.

    ``fetch`` raises :class:`~pyi_selfupdate.errors.FetchError` when the resource
    cannot be had (network error, HTTP status >= 400). The caller reads the
    stream in chunks and closes it (``close()`` is called if the stream has it);
    exceptions raised while reading are reported as fetch failures.
    """

    def fetch(self, url: str) -> BinaryIO:  # pragma: no cover - protocol
        ...


class RequestsRequester:
    """The default requester: one ``requests.Session``, timeouts and a size cap.

    - ``connect_timeout``: seconds to establish the connection;
    - ``read_timeout``: seconds the server may stay silent while answering
      (per read: a server that trickles bytes is bounded by ``max_bytes`` only);
    - ``max_bytes``: the most bytes read from one response body; a larger
      ``Content-Length`` fails at once, a larger body fails when the cap is
      passed (no body is ever read whole into memory here);
    - ``session``: a ``requests.Session`` to use instead of a new one (for
      proxies, certificates, authentication).

    Redirects are followed (at most the session's ``max_redirects``, 30 by
    default); proxies from the environment apply as usual with ``requests``.
    """

    def __init__(
        self,
        *,
        connect_timeout: float = 10,
        read_timeout: float = 30,
        max_bytes: int = 1 << 30,
        session: Any = None,
    ) -> None:
        if connect_timeout <= 0 or read_timeout <= 0:
            raise ValueError("timeouts must be positive numbers of seconds")
        if max_bytes <= 0:
            raise ValueError("max_bytes must be a positive number of bytes")
        self.connect_timeout = float(connect_timeout)
        self.read_timeout = float(read_timeout)
        self.max_bytes = int(max_bytes)
        self._session = session

    @property
    def session(self) -> Any:
        """The ``requests.Session`` used (created on first use)."""
        if self._session is None:
            import requests  # lazy: keeps ``import pyi_selfupdate`` cheap

            self._session = requests.Session()
            self._session.headers["User-Agent"] = USER_AGENT
        return self._session

    def fetch(self, url: str) -> BinaryIO:
        """GET ``url`` and return its body as a stream capped at ``max_bytes``."""
        import requests  # lazy, see the module docstring

        session = self.session
        try:
            resp = session.get(
                url, stream=True, timeout=(self.connect_timeout, self.read_timeout)
            )
        except requests.RequestException as exc:
            raise FetchError(
                f"cannot fetch {url}: {exc}; check the network connection and the update URL"
            ) from None
        if resp.status_code >= 400:
            resp.close()
            raise FetchError(
                f"{url} answered HTTP {resp.status_code}; check that the release is "
                "published at this URL"
            )
        length = resp.headers.get("Content-Length")
        if length is not None and length.strip().isdigit() and int(length) > self.max_bytes:
            resp.close()
            raise FetchError(
                f"{url} announces {int(length)} bytes, more than the limit of "
                f"{self.max_bytes}; raise max_bytes if this release is really that large"
            )
        return _ResponseStream(resp, self.max_bytes, url)  # type: ignore[return-value]


class _ResponseStream(io.RawIOBase):
    """A streamed ``requests`` response body: capped, errors turned into FetchError."""

    def __init__(self, resp: Any, max_bytes: int, url: str) -> None:
        super().__init__()
        self._resp = resp
        self._max = max_bytes
        self._url = url
        self._count = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        try:
            raw = self._resp.raw
            # read1: what has arrived (at most n bytes), so a slow sender cannot hold one
            # read for long and the caller's overall deadline is checked between reads.
            data = getattr(raw, "read1", raw.read)(len(view), decode_content=True)
        except Exception as exc:  # urllib3/requests/socket errors, timeouts
            raise FetchError(
                f"download of {self._url} failed after {self._count} bytes: {exc}; "
                "check the network connection and retry"
            ) from None
        n = len(data)
        self._count += n
        if self._count > self._max:
            raise FetchError(
                f"{self._url} sent more than the limit of {self._max} bytes; raise "
                "max_bytes if this release is really that large"
            )
        view[:n] = data
        return n

    def close(self) -> None:
        if not self.closed:
            try:
                self._resp.close()
            finally:
                super().close()


def close_quietly(stream: Optional[Any]) -> None:
    """Close a stream a requester returned, ignoring errors."""
    close = getattr(stream, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # pragma: no cover - nothing useful to do
            log.debug("closing a download stream failed", exc_info=True)
