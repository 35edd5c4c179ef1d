"""The hard deadline of the default requester: a timer that shuts one transfer's sockets down.

A socket timeout bounds one ``recv``, not a transfer: a server that drips one
byte of its headers every half second, or redirects slowly, or sends a body
that never decodes to anything, never trips it. :class:`Watchdog` is a
``threading.Timer`` armed for one request and its body: every socket the
request opens or reuses in the calling thread (through the connection classes
of :class:`WatchedAdapter`) is recorded, as a duplicate of its descriptor, and
at the deadline each is shut down, which ends any ``recv`` or ``send`` blocked
on it at once, TLS included. Connects are bounded by a connect timeout no
longer than what is left (name resolution, ``getaddrinfo``, cannot be
interrupted at all).

Imported by :mod:`pyi_selfupdate.fetch` when a ``RequestsRequester`` makes a
request (it imports ``requests``): a launch that makes no request imports
nothing of this and starts no thread.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from typing import Any, Dict, Iterator, List, Optional

import requests.adapters

__all__ = ["Watchdog", "WatchedAdapter", "watch_session"]

log = logging.getLogger("pyi_selfupdate")

#: the watchdog of the request the current thread is making, if any
_current = threading.local()


class Watchdog:
    """Shuts down the sockets of one transfer at ``deadline`` (a ``time.monotonic()`` value)."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self._fired = False
        self._lock = threading.Lock()
        self._socks: List[socket.socket] = []
        self._seen: List[Any] = []  # the sockets watched (kept: their ids stay theirs)
        self._timer = threading.Timer(max(0.0, deadline - time.monotonic()), self._fire)
        self._timer.daemon = True
        self._timer.name = "pyi-selfupdate-deadline"
        self._timer.start()

    def left(self) -> float:
        """Seconds until the deadline (negative once passed)."""
        return self.deadline - time.monotonic()

    def over(self) -> bool:
        """True once the deadline has passed (whether or not the timer has run yet)."""
        return self._fired or self.left() <= 0

    def watch(self, sock: Any) -> None:
        """Shut ``sock`` down at the deadline (at once if it has passed)."""
        if sock is None or any(seen is sock for seen in self._seen):
            return
        try:  # a duplicate: ours to close, and shutting it down ends the connection (TLS too)
            dup = socket.fromfd(sock.fileno(), sock.family, sock.type, sock.proto)
        except (OSError, ValueError):
            return
        with self._lock:
            self._seen.append(sock)
            if not self._fired:
                self._socks.append(dup)
                return
        _shut(dup)
        dup.close()

    def _fire(self) -> None:
        with self._lock:
            self._fired = True
            for sock in self._socks:
                _shut(sock)
        log.debug("overall deadline reached: %d connection(s) shut down", len(self._socks))

    def close(self) -> None:
        """The transfer ended: stop the timer, let go of the sockets."""
        self._timer.cancel()
        with self._lock:
            socks, self._socks, self._seen = self._socks, [], []
        for sock in socks:
            sock.close()

    @contextlib.contextmanager
    def active(self) -> Iterator["Watchdog"]:
        """Within the block, connections this thread opens or reuses are watched (and connects bounded)."""
        previous = getattr(_current, "dog", None)
        _current.dog = self
        try:
            yield self
        finally:
            _current.dog = previous


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _WatchedConnection:
    """Mixed into urllib3's connection classes: report sockets to the thread's watchdog."""

    timeout: Any
    sock: Any

    def _new_conn(self) -> Any:
        dog: Optional[Watchdog] = getattr(_current, "dog", None)
        if dog is not None:
            left = dog.left()
            if left <= 0:
                raise TimeoutError("the overall deadline passed before connecting")
            if not isinstance(self.timeout, (int, float)) or self.timeout > left:
                self.timeout = left  # a connect (or redirect hop) ends by the deadline
        sock = super()._new_conn()  # type: ignore[misc]
        if dog is not None:
            dog.watch(sock)
        return sock

    def request(self, *args: Any, **kwargs: Any) -> Any:
        dog: Optional[Watchdog] = getattr(_current, "dog", None)
        if dog is not None and self.sock is not None:  # a kept-alive connection, reused
            dog.watch(self.sock)
        return super().request(*args, **kwargs)  # type: ignore[misc]


_classes: Dict[type, type] = {}


def _watched(cls: type) -> type:
    """``cls`` (a urllib3 pool class) with its ``ConnectionCls`` watched."""
    if getattr(cls, "_pyi_watched", False):
        return cls
    if cls not in _classes:
        conn = cls.ConnectionCls  # type: ignore[attr-defined]
        watched_conn = type("Watched" + conn.__name__, (_WatchedConnection, conn), {})
        _classes[cls] = type("Watched" + cls.__name__, (cls,),
                             {"ConnectionCls": watched_conn, "_pyi_watched": True})
    return _classes[cls]


def _watch_pools(manager: Any) -> None:
    classes = getattr(manager, "pool_classes_by_scheme", None)
    if isinstance(classes, dict):
        manager.pool_classes_by_scheme = {scheme: _watched(cls) for scheme, cls in classes.items()}


class WatchedAdapter(requests.adapters.HTTPAdapter):
    """``requests``' own adapter, whose connections a :class:`Watchdog` can shut down.

    Without an active watchdog it behaves exactly as ``HTTPAdapter``.
    """

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _watch_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        fresh = proxy not in self.proxy_manager
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if fresh:
            _watch_pools(manager)
        return manager


def watch_session(session: Any) -> None:
    """Put a :class:`WatchedAdapter` where ``session`` has requests' plain ``HTTPAdapter``.

    The new adapter keeps the old one's settings (retries, pool sizes). An
    adapter of another class (the app's own transport) is left as it is: then
    the deadline bounds connects and ends the body, but cannot cut a server
    that drips its headers.
    """
    adapters = getattr(session, "adapters", None)
    if not isinstance(adapters, dict):
        return
    for prefix, adapter in list(adapters.items()):
        if type(adapter) is requests.adapters.HTTPAdapter:
            watched = WatchedAdapter.__new__(WatchedAdapter)
            watched.__setstate__(adapter.__getstate__())  # requests' own copy of an adapter's settings
            session.mount(prefix, watched)
        elif not isinstance(adapter, WatchedAdapter):
            log.debug("the session's adapter for %s is %s: the overall deadline cannot cut a server "
                      "dripping its headers through it", prefix, type(adapter).__name__)
