"""pyi-selfupdate: self-update for PyInstaller apps, wire-compatible with go-selfupdate.

Public API::

    from pyi_selfupdate import Updater, UpdateResult, restart

The public names are imported on first use (PEP 562 module ``__getattr__``):
a frozen app imports this package at every launch, from its runtime hook,
and the usual launch (nothing staged, no check due) needs only the bootstrap,
not the client (``updater``, ``protocol``, ``signing``, ``fetch``, ...).
``from pyi_selfupdate import Updater``, ``pyi_selfupdate.Updater``,
``dir(pyi_selfupdate)`` and ``__all__`` work as if everything were imported
here.
"""

from __future__ import annotations

import importlib
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would cost every launch milliseconds
    from typing import Any, Dict, List

if TYPE_CHECKING:  # what the lazy names resolve to, for type checkers and IDEs
    from . import errors, protocol, updater  # noqa: F401
    from ._bootstrap import embedded_config, installed_update, updater_from_config
    from ._restart import restart
    from .errors import (
        ConfigError,
        FetchError,
        InstallError,
        InvalidNameError,
        ManifestError,
        PatchError,
        ReleaseError,
        SelfUpdateError,
        VerificationError,
    )
    from .protocol import current_platform
    from .updater import InstalledUpdate, UpdateResult, Updater

__version__ = "0.1.0"

from . import _lazy

# The package logger's NullHandler. A frozen app attaches it when logging is first
# imported (see _lazy): its usual launch imports no logging at all.
if "logging" in sys.modules or not getattr(sys, "frozen", False):
    _lazy.logger()

__all__ = [
    "Updater",
    "UpdateResult",
    "InstalledUpdate",
    "installed_update",
    "restart",
    "updater_from_config",
    "embedded_config",
    "current_platform",
    "SelfUpdateError",
    "ConfigError",
    "FetchError",
    "InstallError",
    "InvalidNameError",
    "ManifestError",
    "PatchError",
    "ReleaseError",
    "VerificationError",
]

#: Public name -> the submodule that defines it.
_LAZY: Dict[str, str] = {
    "Updater": "updater",
    "UpdateResult": "updater",
    "InstalledUpdate": "updater",
    "installed_update": "_bootstrap",
    "restart": "_restart",
    "updater_from_config": "_bootstrap",
    "embedded_config": "_bootstrap",
    "current_platform": "protocol",
    "SelfUpdateError": "errors",
    "ConfigError": "errors",
    "FetchError": "errors",
    "InstallError": "errors",
    "InvalidNameError": "errors",
    "ManifestError": "errors",
    "PatchError": "errors",
    "ReleaseError": "errors",
    "VerificationError": "errors",
}

#: Client submodules that used to be bound here as a side effect of the eager
#: imports: ``pyi_selfupdate.errors`` and the like keep working after a bare
#: ``import pyi_selfupdate``.
_SUBMODULES = frozenset({
    "errors", "protocol", "settings", "updater", "fetch", "signing", "_patch", "_files",
    "_staging", "_instances", "_schedule", "_restart", "_bootstrap",
})


def __getattr__(name: str) -> Any:
    """Import a public name (or a client submodule) on first access (PEP 562)."""
    module = _LAZY.get(name)
    if module is not None:
        value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # later accesses are plain attribute lookups
    return value


def __dir__() -> List[str]:
    """The module's names, the lazy public ones included."""
    return sorted(set(globals()) | set(__all__))
