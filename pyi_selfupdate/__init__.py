"""pyi-selfupdate: self-update for PyInstaller apps, wire-compatible with go-selfupdate.

Public API::

    from pyi_selfupdate import Updater, UpdateResult, restart
"""

from __future__ import annotations

import logging

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
from .updater import UpdateResult, Updater
from ._restart import restart
from ._bootstrap import embedded_config, updater_from_config

__version__ = "0.1.0"

logging.getLogger("pyi_selfupdate").addHandler(logging.NullHandler())

__all__ = [
    "Updater",
    "UpdateResult",
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
