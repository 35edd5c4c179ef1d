"""Deferred imports for the modules a frozen app runs at every launch.

The runtime bootstrap runs before the app's own code, at every launch, and the
usual launch (nothing staged, no check due) only reads a few files. Importing
what only staging, installing or logging need (``hashlib`` loads OpenSSL,
``json`` compiles its regular expressions, ``logging``, ``datetime``, ...) would
cost that launch several milliseconds each; these helpers defer them:

* :func:`module` stands for a module imported on first attribute access;
* :data:`log` stands for ``logging.getLogger("pyi_selfupdate")`` without
  importing :mod:`logging`;
* :func:`logger` is the real logger (it imports :mod:`logging` and attaches
  the package's ``NullHandler`` once).

After an update replaced a frozen app's executable, the old process must not
import anything from it: the install path imports the client (``updater``),
which imports everything deferred here first; :data:`log` never imports.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would cost every launch milliseconds
    from typing import Any

if TYPE_CHECKING:
    import logging

__all__ = ["module", "logger", "log", "LazyLogger", "NAME"]

#: The package's logger name.
NAME = "pyi_selfupdate"

_null_handler_attached = False


class _LazyModule:
    """A module imported on first attribute access."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        __import__(self._name)
        return getattr(sys.modules[self._name], attr)

    def __repr__(self) -> str:
        return f"<deferred module {self._name!r}>"


def module(name: str) -> Any:
    """A stand-in for module ``name`` that imports it on first attribute access.

    Declare the real import for type checkers::

        if TYPE_CHECKING:
            import hashlib
        else:
            hashlib = _lazy.module("hashlib")
    """
    return _LazyModule(name)


def logger(name: str = NAME) -> "logging.Logger":
    """``logging.getLogger(name)``; the package's logger gets its ``NullHandler`` the first time.

    A library leaves the output of its log to the app: the ``NullHandler`` keeps
    Python from printing the package's warnings on stderr when the app
    configured no logging.
    """
    import logging

    global _null_handler_attached
    if not _null_handler_attached:
        _null_handler_attached = True
        logging.getLogger(NAME).addHandler(logging.NullHandler())
    return logging.getLogger(name)


_EMITTERS = frozenset(
    {"debug", "info", "warning", "warn", "error", "exception", "critical", "fatal", "log"}
)


def _drop(*args: Any, **kwargs: Any) -> None:
    return None


class LazyLogger:
    """Stands for ``logging.getLogger(name)`` without importing :mod:`logging`.

    While nothing in the process has imported :mod:`logging`, nothing has
    configured it either: a record would reach only the package's
    ``NullHandler`` and be shown nowhere. So until then the logging methods
    (``debug`` ... ``critical``, ``exception``, ``log``) drop the record, as
    logging itself would, without importing anything. Once :mod:`logging` is
    imported (by the app, the client, a test), every call goes to the real
    logger. Other attributes (``addHandler``, ``setLevel``, ...) import
    :mod:`logging` and go to the real logger at once.
    """

    __slots__ = ("name",)

    def __init__(self, name: str = NAME) -> None:
        self.name = name

    def __getattr__(self, attr: str) -> Any:
        if attr in _EMITTERS and "logging" not in sys.modules:
            return _drop
        return getattr(logger(self.name), attr)

    def __repr__(self) -> str:
        return f"<deferred logger {self.name!r}>"


#: The package's logger, for the modules of the launch path.
log: "logging.Logger" = LazyLogger()  # type: ignore[assignment]
