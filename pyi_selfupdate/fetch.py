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

import contextlib
import io
import time
from typing import Any, BinaryIO, Callable, Iterator, Optional, Protocol, Sequence, Tuple

from . import _lazy
from .errors import ConfigError, FetchError, SelfUpdateError
from .settings import LIMITS

__all__ = [
    "Requester", "RequestsRequester", "USER_AGENT", "Transfer", "Budget", "open_stream", "read_all",
    "reader", "download",
    "close_quietly", "is_loopback_host", "check_transport", "refuse_cross_origin_redirect", "RedirectPolicy",
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

    The overall deadline (``Updater(deadline=)``) cannot interrupt a call into
    a custom requester: it is checked before every ``fetch`` and after every
    read, an empty one too, so a requester whose calls each return within its
    own timeouts ends within the deadline plus one such call.
    """

    def fetch(self, url: str) -> BinaryIO:  # pragma: no cover - protocol
        ...


class RequestsRequester:
    """The default requester: one ``requests.Session``, timeouts, byte caps and a hard deadline.

    - ``connect_timeout``: seconds to establish the connection;
    - ``read_timeout``: seconds the server may stay silent while answering;
    - ``max_bytes``: the most bytes one response body may have on the wire; a
      larger ``Content-Length`` fails at once, a larger body fails when the cap
      is passed (no body is ever read whole into memory here);
    - ``session``: a ``requests.Session`` to use instead of a new one (for
      proxies, certificates, authentication).

    When the :class:`~pyi_selfupdate.Updater` fetches, it passes its
    :class:`Budget`: a watchdog (:mod:`pyi_selfupdate._watchdog`) then shuts
    the connection down at the overall deadline, whatever the request is
    doing (connecting, receiving headers, following redirects, receiving the
    body), and the body's byte cap applies to the bytes on the wire.

    Bodies are asked for as stored (``Accept-Encoding: identity``). A server
    that compresses anyway with ``gzip`` or ``deflate`` is decoded here, with
    the caps counting the compressed bytes as received and the decoded bytes
    as produced (and no resuming of such a body); any other
    ``Content-Encoding`` is refused.

    Redirects within the server are followed (at most the session's
    ``max_redirects``, ``LIMITS.max_redirects`` for a new session); a redirect
    to another scheme, host or port is refused
    (:func:`refuse_cross_origin_redirect`, added to the session, yours too),
    except to the hosts of ``redirect_hosts`` (:class:`RedirectPolicy`: for
    apps that verify signatures; ``allow_http`` as the app's).
    Proxies from the environment apply as usual with ``requests``. A session
    of yours gets the same watched transport in place of requests' plain
    ``HTTPAdapter``; an adapter of your own class is kept, and the deadline
    then cannot cut a server that drips its headers through it.
    """

    def __init__(
        self,
        *,
        connect_timeout: float = LIMITS.connect_timeout,
        read_timeout: float = LIMITS.read_timeout,
        max_bytes: int = LIMITS.binary_bytes,
        session: Any = None,
        redirect_hosts: Sequence[str] = (),
        allow_http: Optional[bool] = None,
    ) -> None:
        if connect_timeout <= 0 or read_timeout <= 0:
            raise ValueError("timeouts must be positive numbers of seconds")
        if max_bytes <= 0:
            raise ValueError("max_bytes must be a positive number of bytes")
        self.connect_timeout = float(connect_timeout)
        self.read_timeout = float(read_timeout)
        self.max_bytes = int(max_bytes)
        self._session = session
        self._watched = False
        self._policy = (RedirectPolicy(redirect_hosts, allow_http=allow_http) if redirect_hosts
                        else refuse_cross_origin_redirect)
        if session is not None:
            _add_redirect_policy(session, self._policy)

    @property
    def session(self) -> Any:
        """The ``requests.Session`` used (created on first use, with the redirect policy)."""
        if self._session is None:
            import requests  # lazy: keeps ``import pyi_selfupdate`` cheap

            session = requests.Session()
            session.headers["User-Agent"] = USER_AGENT
            # Byte offsets (resumed downloads) and byte caps mean the bytes as stored.
            session.headers["Accept-Encoding"] = "identity"
            session.max_redirects = LIMITS.max_redirects
            _add_redirect_policy(session, self._policy)
            self._session = session
        if not self._watched:
            from ._watchdog import watch_session

            watch_session(self._session)
            self._watched = True
        return self._session

    def fetch(self, url: str, *, budget: Optional[Budget] = None, max_bytes: Optional[int] = None) -> BinaryIO:
        """GET ``url`` and return its body as a stream capped at ``max_bytes`` (at most ``self.max_bytes``)."""
        return self.fetch_range(url, 0, None, budget=budget, max_bytes=max_bytes)

    def fetch_range(self, url: str, start: int, validator: Optional[str], *,
                    budget: Optional[Budget] = None, max_bytes: Optional[int] = None) -> BinaryIO:
        """GET ``url`` from byte ``start`` on, if it is still the file ``validator`` names.

        Sends ``Range: bytes=<start>-`` and ``If-Range: <validator>`` (an ETag or
        a Last-Modified date seen before). The stream's ``offset`` is where its
        bytes start: ``start`` when the server resumed (206), 0 when it sent the
        whole file (it ignores ranges, or the file changed). ``validator`` and
        ``length`` (the whole file's size, when known) describe the file.
        ``budget`` (its deadline) bounds the request and the body's reads: at the
        deadline the connection is shut down, until the stream is closed.
        """
        import requests  # lazy, see the module docstring

        session = self.session
        cap = self.max_bytes if max_bytes is None else min(self.max_bytes, max_bytes)
        headers = {}
        if start > 0 and validator:
            headers = {"Range": f"bytes={start}-", "If-Range": validator}
        dog = None
        if budget is not None and budget.deadline is not None:
            budget.check(url)
            from ._watchdog import Watchdog

            dog = Watchdog(budget.deadline)
        try:
            connect, read = self.connect_timeout, self.read_timeout
            if dog is not None:
                connect, read = min(connect, dog.left()), min(read, dog.left())
            try:
                with dog.active() if dog is not None else _nothing():
                    resp = session.get(url, stream=True, timeout=(connect, read), headers=headers)
            except requests.RequestException as exc:
                if dog is not None and dog.over():
                    raise budget.late(url, "answered") from None  # type: ignore[union-attr]
                raise FetchError(
                    f"cannot fetch {url}: {exc}; check the network connection and the update URL"
                ) from None
            if dog is not None:
                if dog.over():  # cut while the headers came: what came is not an answer
                    resp.close()
                    raise budget.late(url, "answered")  # type: ignore[union-attr]
                # an adapter of the app's own: at least the body is watched
                dog.watch(getattr(getattr(resp.raw, "_connection", None), "sock", None))
            stream = self._stream(resp, url, start, cap, dog, budget)
        except BaseException:
            if dog is not None:
                dog.close()
            raise
        if stream is None:  # a range of a compressed body: ask for the whole body
            return self.fetch_range(url, 0, None, budget=budget, max_bytes=max_bytes)
        return stream  # type: ignore[return-value]

    def _stream(self, resp: Any, url: str, start: int, cap: int, dog: Any,
                budget: Optional[Budget]) -> "Optional[_ResponseStream]":
        """The body of ``resp`` as a checked stream (None: fetch it again from 0)."""
        try:
            if resp.status_code >= 400:
                raise FetchError(
                    f"{url} answered HTTP {resp.status_code}; check that the release is "
                    "published at this URL"
                )
            length = resp.headers.get("Content-Length")
            body = int(length) if length is not None and length.strip().isdigit() else None
            if body is not None and body > cap:
                raise FetchError(
                    f"{url} announces {body} bytes, more than the limit of {cap}; refusing it "
                    "(raise max_bytes if this release is really that large)"
                )
            decoder = _decoder(url, resp.headers.get("Content-Encoding", ""))
            stream = _ResponseStream(resp, cap, url, decoder, dog, budget)
            if decoder is not None:
                # A compressed body's offsets and length are not the file's: no resuming it.
                if resp.status_code == 206 and start > 0:
                    resp.close()
                    if dog is not None:
                        dog.close()
                    return None
                return stream
            stream.validator = resp.headers.get("ETag") or resp.headers.get("Last-Modified")
            stream.length = body
            if resp.status_code == 206:
                first, total = _content_range(resp.headers.get("Content-Range", ""))
                if first != start:  # not the range asked for: start again from 0
                    if start == 0:
                        raise FetchError(f"{url} answered a request for the whole file with a part "
                                         "of it (HTTP 206); check the server")
                    resp.close()
                    if dog is not None:
                        dog.close()
                    return None
                stream.offset, stream.length = start, total
            return stream
        except BaseException:
            resp.close()
            raise


def _content_range(value: str) -> Tuple[Optional[int], Optional[int]]:
    """``(first byte, total size)`` of a ``Content-Range: bytes a-b/total`` header."""
    try:
        unit, _, rest = value.strip().partition(" ")
        span, _, total = rest.partition("/")
        first = int(span.split("-", 1)[0])
        return (first if unit == "bytes" else None), (int(total) if total.strip().isdigit() else None)
    except ValueError:
        return None, None


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield


def _decoder(url: str, encoding: str) -> Any:
    """A bounded decoder for the body's ``Content-Encoding`` (None: the bytes as stored)."""
    codings = [c.strip().lower() for c in encoding.split(",") if c.strip().lower() not in ("", "identity")]
    if not codings:
        return None
    if codings in (["gzip"], ["x-gzip"], ["deflate"]):
        import zlib

        return _Inflater(zlib)
    raise FetchError(
        f"{url} is sent with Content-Encoding {encoding.strip()!r}, which this client does not "
        "decode; it asks for the file as stored (Accept-Encoding: identity): configure the "
        "server to serve the release files as they are (or with gzip)"
    )


class _Inflater:
    """gzip or zlib (``deflate``) members, one after another, never more than asked for at a time."""

    def __init__(self, zlib: Any) -> None:
        self._zlib = zlib
        self._obj: Any = None
        self._pending = b""

    def feed(self, data: bytes) -> None:
        self._pending += data

    def take(self, n: int) -> bytes:
        """Up to ``n`` decoded bytes from what was fed (b"": it needs more input)."""
        while self._pending:
            if self._obj is None:
                self._obj = self._zlib.decompressobj(32 + 15)  # gzip or zlib header, either
            out = self._obj.decompress(self._pending, n)
            self._pending = self._obj.unconsumed_tail
            if self._obj.eof:
                self._pending = self._obj.unused_data + self._pending
                self._obj = None
            if out:
                return out
        return b""

    def complete(self) -> bool:
        """True when what was fed ends at the end of a member."""
        return self._obj is None and not self._pending


class _ResponseStream(io.RawIOBase):
    """A streamed ``requests`` response body: capped on the wire, decoded if it must be, errors FetchError."""

    def __init__(self, resp: Any, max_bytes: int, url: str, decoder: Any = None, dog: Any = None,
                 budget: Optional[Budget] = None) -> None:
        super().__init__()
        self._resp = resp
        self._max = max_bytes
        self._url = url
        self._decoder = decoder
        self._dog = dog
        self._budget = budget
        #: bytes received on the wire
        self.wire = 0
        #: where the body starts in the file, its validator, the file's whole size
        self.offset = 0
        self.validator: Optional[str] = None
        self.length: Optional[int] = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = len(view)
        while True:
            if self._decoder is not None:
                try:
                    data = self._decoder.take(n)
                except Exception as exc:  # zlib.error
                    raise FetchError(f"{self._url} is not valid {self._resp.headers.get('Content-Encoding')} "
                                     f"as its Content-Encoding says ({exc}); check the server") from None
                if data:
                    break
            data = self._wire(n)
            if not data:
                if self._decoder is not None and not self._decoder.complete():
                    raise FetchError(f"{self._url} ended in the middle of its compressed body; "
                                     "check the network connection and retry")
                break
            if self._decoder is None:
                break
            self._decoder.feed(data)
        view[:len(data)] = data
        return len(data)

    def _wire(self, n: int) -> bytes:
        """Up to ``n`` bytes as received (b"" at the end), counted against the cap and the deadline."""
        if self._dog is not None and self._dog.over():
            raise self._budget.late(self._url, "sent")  # type: ignore[union-attr]
        try:
            raw = self._resp.raw
            # read1: what has arrived (at most n bytes), so a slow sender cannot hold one
            # read for long; decode_content=False: the bytes on the wire, never a decoder's
            # loop over input that decodes to nothing.
            data = getattr(raw, "read1", raw.read)(n, decode_content=False)
        except Exception as exc:  # urllib3/requests/socket errors, timeouts
            if self._dog is not None and self._dog.over():
                raise self._budget.late(self._url, "sent") from None  # type: ignore[union-attr]
            raise FetchError(
                f"download of {self._url} failed after {self.wire} bytes: {exc}; "
                "check the network connection and retry"
            ) from None
        if not data and self._dog is not None and self._dog.over():  # shut down: not the end
            raise self._budget.late(self._url, "sent")  # type: ignore[union-attr]
        self.wire += len(data)
        if self.wire > self._max:
            raise FetchError(f"{self._url} is larger than the limit of {self._max} bytes; refusing it")
        return data

    def close(self) -> None:
        if not self.closed:
            try:
                self._resp.close()
            finally:
                if self._dog is not None:
                    self._dog.close()
                super().close()


def _add_redirect_policy(session: Any, policy: "RedirectPolicy") -> None:
    hooks = session.hooks.setdefault("response", [])
    hooks[:] = [h for h in hooks if not isinstance(h, RedirectPolicy)]
    hooks.append(policy)


# ------------------------------------------------------------------ reading


class Transfer:
    """What a check-and-download is doing now, for a watcher in another thread (the app's exit).

    ``phase`` is ``"idle"``, ``"manifest"``, ``"patch"`` or ``"full"`` (receiving
    that body), ``"local"`` (patching, unpacking, verifying, staging: no network)
    or ``"done"``; ``received`` and ``total`` count the current body's bytes
    (``total`` None when unknown), ``started`` and ``last_byte`` are
    ``time.monotonic()`` values. ``progress(done, total)``, when given, is called
    after every block received.
    """

    def __init__(self, progress: Optional[Callable[[int, Optional[int]], None]] = None) -> None:
        self.phase = "idle"
        self.received = self.first = 0
        self.total: Optional[int] = None
        self.started = self.last_byte = time.monotonic()
        self._progress = progress

    def begin(self, phase: str, received: int = 0, total: Optional[int] = None) -> None:
        #: ``received`` counts the bytes a resumed download already had; ``first`` remembers them
        self.phase, self.received, self.first, self.total = phase, received, received, total
        self.started = self.last_byte = time.monotonic()

    def add(self, n: int) -> None:
        self.received += n
        self.last_byte = time.monotonic()
        if self._progress is not None:
            try:
                self._progress(self.received, self.total)
            except Exception:  # the app's callback never breaks an update
                log.exception("the progress callback raised; ignored")

    def likely_done_within(self, seconds: float, stall: float, check: float) -> bool:
        """True if this is worth waiting ``seconds`` more for.

        Local work always is; a check (``idle``, ``manifest``) only for ``check``
        seconds after it began; a download while bytes keep arriving (none for
        ``stall`` seconds: not) at a rate that completes it within ``seconds``.
        """
        now = time.monotonic()
        if self.phase in ("local", "done"):
            return True
        if self.phase in ("idle", "manifest"):
            return now - self.started < check
        if self.phase not in ("patch", "full") or now - self.last_byte > stall:
            return False
        got = self.received - self.first
        if got <= 0:  # asked, no byte yet: as long as a check may wait for its answer
            return now - self.started < check
        if self.total is None:
            return True
        rate = got / max(now - self.started, 1e-3)
        return (self.total - self.received) / rate <= seconds


class Budget:
    """What one check-and-download may still take: bytes received so far, and the overall deadline.

    The deadline is hard for the default :class:`RequestsRequester`: a watchdog
    shuts its connection down at that moment, whatever it is waiting for. A
    custom requester's ``fetch`` and reads cannot be interrupted from here: the
    deadline is checked before every request and after every read (including
    one that returns nothing), so it holds as long as each of its calls
    returns in bounded time (give it timeouts of its own).
    """

    def __init__(self, seconds: Optional[float] = None, transfer: Optional[Transfer] = None) -> None:
        #: bytes received so far
        self.n = 0
        #: ``time.monotonic()`` after which every read fails (None: no deadline)
        self.deadline = None if seconds is None else time.monotonic() + seconds
        self.seconds = seconds
        self.transfer = transfer or Transfer()

    def late(self, url: str, what: str = "sent") -> FetchError:
        """The error of a transfer of ``url`` cut at the deadline (``what``: ``"answered"`` or ``"sent"``)."""
        if what == "answered":
            problem = (f"{url} did not answer within the overall deadline of {self.seconds:g} s (it "
                       "connects, redirects or sends its headers too slowly)")
        else:
            problem = (f"the download of {url} was still unfinished at the overall deadline of "
                       f"{self.seconds:g} s (the server sends too slowly)")
        return FetchError(f"{problem}; the transfer was cut and the installed app is untouched: "
                          "retry later, or raise Updater(deadline=) for a very slow link")

    def check(self, url: str) -> None:
        """Raise :meth:`late` if the deadline has passed."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise self.late(url, "answered")


def open_stream(requester: Any, url: str, start: int = 0, validator: Optional[str] = None,
                budget: Optional[Budget] = None, cap: Optional[int] = None) -> BinaryIO:
    """``requester.fetch(url)`` (or ``fetch_range`` to resume at ``start``, where the requester
    has it), any failure of it a :class:`~pyi_selfupdate.errors.FetchError`.

    A :class:`RequestsRequester` also gets ``budget`` (its deadline, enforced by a
    watchdog) and ``cap`` (the body's bytes on the wire).
    """
    if budget is not None:
        budget.check(url)
    try:
        if isinstance(requester, RequestsRequester):
            return requester.fetch_range(url, start if validator else 0, validator, budget=budget,
                                         max_bytes=cap)
        if start > 0 and validator and callable(getattr(requester, "fetch_range", None)):
            return requester.fetch_range(url, start, validator)
        return requester.fetch(url)
    except SelfUpdateError:
        raise
    except Exception as exc:
        raise FetchError(f"cannot fetch {url}: {exc}; check the network and the URL") from None


def reader(stream: Any, url: str, budget: Budget,
           cap: Optional[int] = None) -> Callable[[int], bytes]:
    """``read(n)`` over a requester's stream: counts bytes in ``budget``, enforces its
    deadline after every read (an empty one too) and the byte ``cap`` (on the budget's
    total); errors become FetchError."""

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
        if block:
            budget.transfer.add(len(block))
        if budget.deadline is not None and time.monotonic() > budget.deadline:
            raise budget.late(url)
        if cap is not None and budget.n > cap:
            raise FetchError(f"{url} is larger than the limit of {cap} bytes; refusing it")
        return bytes(block)

    return read


def read_all(requester: Any, url: str, cap: int, budget: Budget) -> bytes:
    """The whole body at ``url``, at most ``cap`` bytes, within ``budget``."""
    stream = open_stream(requester, url, budget=budget, cap=cap)
    try:
        return b"".join(_capped(reader(stream, url, budget), url, cap))
    finally:
        close_quietly(stream)


def _capped(read: Callable[[int], bytes], url: str, cap: int, size: int = 0) -> Iterator[bytes]:
    """The blocks ``read`` gives until the end, refusing the body past ``cap`` bytes (``size`` so far)."""
    while True:
        block = read(_CHUNK)
        if not block:
            return
        size += len(block)
        if size > cap:
            raise FetchError(f"{url} is larger than the limit of {cap} bytes; refusing it")
        yield block


def download(requester: Any, url: str, part: Any, cap: int, budget: Budget, phase: str) -> None:
    """Fetch ``url`` into the file ``part``, continuing what an earlier run left there.

    ``part`` (a path) may hold the first bytes of the same file from an
    interrupted download, with ``<part>.json`` naming the file's validator
    (ETag or Last-Modified): then only the rest is asked for, with ``If-Range``,
    and a server that ignores ranges or whose file changed sends it whole,
    which starts the file again. The file holds at most ``cap`` bytes. It is
    held with an exclusive ``flock`` while this runs (POSIX): another process
    downloading the same file makes this one fail at once rather than mix the
    two. The caller checks the result's SHA-256 and removes ``part`` once done.
    """
    import json
    import os

    from ._files import fcntl, write_atomic

    part = os.fspath(part)
    meta = part + ".json"
    os.makedirs(os.path.dirname(part), exist_ok=True)
    # never through a symlink planted at the name (ELOOP: Updater reports it as an InstallError)
    fd = os.open(part, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0), 0o600)
    mine = fcntl is None
    done = False
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                raise FetchError(f"another process is downloading {url} right now; "
                                 "this one leaves it to that one") from None
            mine = True
        have = os.fstat(fd).st_size
        try:
            with open(meta, "rb") as fh:
                known = json.loads(fh.read(4096).decode("utf-8"))
            validator, length = known.get("validator"), known.get("length")
        except (OSError, ValueError, AttributeError):
            validator = length = None
        if not validator:
            have = 0
        elif have and have == length:  # complete already (the run that fetched it ended before using it)
            budget.transfer.begin(phase, have, have)
            return
        stream = open_stream(requester, url, have, validator, budget, cap)
        try:
            offset = getattr(stream, "offset", 0) or 0
            if offset != have:
                log.info("%s: the server sends the file whole (it ignores ranges, or the file "
                         "changed); starting again", url)
            os.ftruncate(fd, offset)
            os.lseek(fd, offset, os.SEEK_SET)
            new_validator = getattr(stream, "validator", None)
            if new_validator:
                write_atomic(meta, json.dumps({"url": url, "validator": new_validator,
                                               "length": getattr(stream, "length", None)}).encode())
            elif os.path.exists(meta):
                os.unlink(meta)
            if offset:
                log.info("resuming %s at byte %d", url, offset)
            budget.transfer.begin(phase, offset, getattr(stream, "length", None))
            for block in _capped(reader(stream, url, budget), url, cap, offset):
                view = memoryview(block)
                while view:
                    view = view[os.write(fd, view):]
            os.fsync(fd)
            done = True
        finally:
            close_quietly(stream)
    except OSError as exc:
        from pathlib import Path

        from ._files import write_advice
        from .errors import InstallError

        raise InstallError(f"cannot keep the download of {url} in {part} ({exc}); "
                           f"{write_advice(exc, Path(part))}") from None
    finally:
        try:
            if mine and not done and os.fstat(fd).st_size == 0:  # nothing came (a 404, a cut): no trace
                for path in (part, meta):
                    if os.path.exists(path):
                        os.unlink(path)
        except OSError:
            pass
        os.close(fd)


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
    """True for ``localhost``, ``127.0.0.0/8`` and ``::1``: traffic that never leaves the machine.

    Only the literal name ``localhost`` counts: other names, ``*.localhost``
    included, may resolve to any address, whatever RFC 6761 advises.
    """
    import ipaddress

    if not host:
        return False
    host = host.strip("[]").lower()
    if host == "localhost":
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


class RedirectPolicy:
    """A ``requests`` response hook: refuse a redirect to another scheme, host or port,
    except to the hosts of ``hosts`` (the setting ``redirect_hosts``).

    Redirects within the same origin are followed. A redirect elsewhere is
    refused (with :class:`~pyi_selfupdate.errors.FetchError`) because it would
    let whoever controls the first server send the client to any host, over
    any transport, outside the URLs the app was built with; publish the files
    at the configured URLs (``bin_url`` and ``diff_url`` may name a CDN). A
    host of ``hosts`` (a CDN, an object store the server redirects to) is
    followed to, over HTTPS (plain HTTP as ``allow_http`` and
    :func:`check_transport` say for a signed app): the
    :class:`~pyi_selfupdate.Updater` accepts the list only from apps that
    verify signatures, whose manifests bind what is installed wherever the
    bytes come from.
    """

    def __init__(self, hosts: Sequence[str] = (), *, allow_http: Optional[bool] = None) -> None:
        self.hosts = frozenset(h.lower() for h in hosts)
        self.allow_http = allow_http

    def __call__(self, response: Any, *args: Any, **kwargs: Any) -> Any:
        from urllib.parse import urljoin

        if not getattr(response, "is_redirect", False):
            return response
        location = urljoin(response.url, response.headers.get("Location", ""))
        target = _origin(location)
        if target == _origin(response.url):
            return response
        if target[1] in self.hosts and target[0] in ("https", "http"):
            try:
                check_transport(location, "the redirect", signed=True, allow_http=self.allow_http)
                return response
            except ConfigError as exc:
                response.close()
                raise FetchError(f"{response.url} redirects to {location}: {exc}") from None
        response.close()
        log.error("refusing a redirect from %s to another host: %s", response.url, location)
        raise FetchError(
            f"{response.url} redirects to {location}, another host; redirects leaving the "
            "configured server are refused: publish the release at the configured URLs "
            "(set bin_url/diff_url to the CDN if the files live there), or, in an app that "
            "verifies signatures, list the host in redirect_hosts"
        )


#: The default policy: every redirect leaving the origin is refused.
refuse_cross_origin_redirect = RedirectPolicy()
