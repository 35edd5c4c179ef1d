"""Transport: the :class:`Requester` protocol, the default :class:`RequestsRequester`, and the limits.

A requester turns a URL into a readable binary stream, go-selfupdate's
``Requester.Fetch(url) (io.ReadCloser, error)``. Pass your own object with a
``fetch(url)`` method to :class:`pyi_selfupdate.Updater` to add authentication,
a proxy, a mirror list or an offline source. Whatever the requester, the
:class:`~pyi_selfupdate.Updater` reads through :func:`read_all` and
:func:`reader`: byte caps and the overall deadline of one check
(:class:`Budget`) apply to every requester alike. The plain-HTTP policy
(:func:`check_transport`) and the redirect policy
(:func:`refuse_cross_origin_redirect`, installed in the session of every
:class:`RequestsRequester`) live here too.

``requests`` is imported only when a :class:`RequestsRequester` fetches for the
first time: the runtime bootstrap imports this module at every launch of a
frozen app, and most launches make no request at all.
"""

from __future__ import annotations

import io
import time
from typing import Any, BinaryIO, Callable, Optional, Protocol, Tuple

from . import _lazy
from .errors import ConfigError, FetchError, SelfUpdateError
from .settings import LIMITS

__all__ = [
    "Requester", "RequestsRequester", "USER_AGENT", "Budget", "open_stream", "read_all", "reader",
    "close_quietly", "is_loopback_host", "check_transport", "refuse_cross_origin_redirect",
]

log = _lazy.logger("pyi_selfupdate")  # attaches the package's NullHandler (see _lazy)

#: The User-Agent the default requester sends.
USER_AGENT = "pyi-selfupdate (go-selfupdate protocol)"

_CHUNK = 1 << 16


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

    Redirects within the server are followed (at most the session's
    ``max_redirects``, ``LIMITS.max_redirects`` for a new session); a redirect
    to another scheme, host or port is refused
    (:func:`refuse_cross_origin_redirect`, added to the session, yours too).
    Proxies from the environment apply as usual with ``requests``.
    """

    def __init__(
        self,
        *,
        connect_timeout: float = LIMITS.connect_timeout,
        read_timeout: float = LIMITS.read_timeout,
        max_bytes: int = LIMITS.binary_bytes,
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
        if session is not None:
            _add_redirect_policy(session)

    @property
    def session(self) -> Any:
        """The ``requests.Session`` used (created on first use, with the redirect policy)."""
        if self._session is None:
            import requests  # lazy: keeps ``import pyi_selfupdate`` cheap

            session = requests.Session()
            session.headers["User-Agent"] = USER_AGENT
            session.max_redirects = LIMITS.max_redirects
            _add_redirect_policy(session)
            self._session = session
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


def _add_redirect_policy(session: Any) -> None:
    hooks = session.hooks.setdefault("response", [])
    if refuse_cross_origin_redirect not in hooks:
        hooks.append(refuse_cross_origin_redirect)


# ------------------------------------------------------------------ reading


class Budget:
    """What one check-and-download may still take: bytes received so far, and the overall deadline."""

    def __init__(self, seconds: Optional[float] = None) -> None:
        #: bytes received so far
        self.n = 0
        #: ``time.monotonic()`` after which every read fails (None: no deadline)
        self.deadline = None if seconds is None else time.monotonic() + seconds
        self.seconds = seconds


def open_stream(requester: Any, url: str) -> BinaryIO:
    """``requester.fetch(url)``, any failure of it a :class:`~pyi_selfupdate.errors.FetchError`."""
    try:
        return requester.fetch(url)
    except SelfUpdateError:
        raise
    except Exception as exc:
        raise FetchError(f"cannot fetch {url}: {exc}; check the network and the URL") from None


def reader(stream: Any, url: str, budget: Budget,
           cap: Optional[int] = None) -> Callable[[int], bytes]:
    """``read(n)`` over a requester's stream: counts bytes in ``budget``, enforces its
    deadline and the byte ``cap`` (on the budget's total); errors become FetchError."""

    def read(n: int) -> bytes:
        try:
            block = stream.read(n)
        except SelfUpdateError:
            raise
        except Exception as exc:
            raise FetchError(f"download of {url} failed: {exc}; retry later") from None
        if block is None:
            block = b""
        budget.n += len(block)
        if block and budget.deadline is not None and time.monotonic() > budget.deadline:
            raise FetchError(
                f"download of {url} is still unfinished after the overall deadline of "
                f"{budget.seconds:g} s (the server sends too slowly); giving up, retry later"
            )
        if cap is not None and budget.n > cap:
            raise FetchError(f"{url} is larger than the limit of {cap} bytes; refusing it")
        return bytes(block)

    return read


def read_all(requester: Any, url: str, cap: int, budget: Budget) -> bytes:
    """The whole body at ``url``, at most ``cap`` bytes, within ``budget``."""
    stream = open_stream(requester, url)
    try:
        chunks = []
        size = 0
        read = reader(stream, url, budget)
        while True:
            block = read(_CHUNK)
            if not block:
                break
            size += len(block)
            if size > cap:
                raise FetchError(f"{url} is larger than the limit of {cap} bytes; refusing it")
            chunks.append(block)
        return b"".join(chunks)
    finally:
        close_quietly(stream)


def close_quietly(stream: Optional[Any]) -> None:
    """Close a stream a requester returned, ignoring errors."""
    close = getattr(stream, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # pragma: no cover - nothing useful to do
            log.debug("closing a download stream failed", exc_info=True)


# ------------------------------------------------------------------ policy


def is_loopback_host(host: Optional[str]) -> bool:
    """True for ``localhost``, ``127.0.0.0/8`` and ``::1``: traffic that never leaves the machine."""
    import ipaddress

    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_transport(url: str, what: str, *, signed: bool, allow_http: Optional[bool]) -> None:
    """Enforce the plain-HTTP policy on one configured base URL.

    ``https://`` is always allowed, and so is ``http://`` to a loopback host.
    Plain ``http://`` to any other host is allowed when ``allow_http`` is True,
    refused when it is False, and by default (None) allowed only when
    signatures are checked (``signed``): a signed manifest binds the hash and
    size of what is installed, so the network can delay or withhold an update
    but not change it. Without keys, plain HTTP lets anyone on the path install
    anything, so it must be asked for explicitly. Other schemes are left to the
    requester that handles them.
    """
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme.lower() != "http" or is_loopback_host(parts.hostname):
        return
    if allow_http is True or (allow_http is None and signed):
        return
    if allow_http is False:
        raise ConfigError(
            f"{what} {url!r} uses plain HTTP, and allow_http is false; use an https:// URL"
        )
    raise ConfigError(
        f"{what} {url!r} uses plain HTTP without signed updates: anyone on the network path "
        "could make the app install anything. Use an https:// URL, or sign releases and set "
        "public_keys, or (at your own risk) set allow_http = true"
    )


def _origin(url: str) -> Tuple[str, str, Optional[int]]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    port = parts.port or {"http": 80, "https": 443}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port


def refuse_cross_origin_redirect(response: Any, *args: Any, **kwargs: Any) -> Any:
    """A ``requests`` response hook: refuse a redirect to another scheme, host or port.

    Redirects within the same origin are followed. A redirect elsewhere is
    refused (with :class:`~pyi_selfupdate.errors.FetchError`) because it would
    let whoever controls the first server send the client to any host, over
    any transport, outside the URLs the app was built with; publish the files
    at the configured URLs (``bin_url`` and ``diff_url`` may name a CDN).
    """
    from urllib.parse import urljoin

    if getattr(response, "is_redirect", False):
        location = urljoin(response.url, response.headers.get("Location", ""))
        if _origin(location) != _origin(response.url):
            response.close()
            log.error("refusing a redirect from %s to another host: %s", response.url, location)
            raise FetchError(
                f"{response.url} redirects to {location}, another host; redirects leaving the "
                "configured server are refused: publish the release at the configured URLs "
                "(set bin_url/diff_url to the CDN if the files live there)"
            )
    return response
