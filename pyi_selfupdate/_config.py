"""The self-update configuration of a frozen app: its keys, defaults and embedded copy.

The configuration is fixed at build time by the PyInstaller hook and embedded in
the app as ``pyi_selfupdate/_embedded_config.json``; at run time the bootstrap
reads it back with :func:`load_embedded`, from the same data in :mod:`marshal`
form (``_embedded_config.marshal``, written beside it by the hook: importing
:mod:`json` would cost every launch a few milliseconds). This module is
imported by the frozen app at every launch, so it imports nothing but
``marshal``, ``os`` and ``sys`` (``json`` only for an app built without the
marshal copy); the
build-time merging and validation live in ``pyi_selfupdate._buildconfig``.

Keys (the :class:`pyi_selfupdate.Updater` keyword names, plus run-time switches):

- ``api_url`` (required): base URL of the manifests, ending in ``/``.
- ``bin_url`` (None: same as api_url): base URL of the full ``.gz`` binaries.
- ``diff_url`` (None: same as api_url): base URL of the patches.
- ``cmd_name`` (None): the name in the update URLs; None means the executable's
  file name without ``.exe``, resolved at run time.
- ``current_version`` (required): the version this build is; default: the
  ``[project] version`` of ``./pyproject.toml``. ``"dev"`` never updates.
- ``dir`` (``"update/"``): folder beside the executable for ``cktime``.
- ``check_time`` (24): hours between two checks.
- ``randomize_time`` (0): up to this many random hours added to each wait.
- ``force_check`` (false): check at every launch, ignoring ``cktime``.
- ``mode`` (``"background"``): ``background`` (check and download in the
  background, install at the next launch), ``immediate`` (install and restart
  at once) or ``manual`` (the app calls the Updater itself).
- ``enabled`` (true): false makes the bootstrap do nothing.
- ``exit_wait`` (10): seconds the app waits at exit for an unfinished background
  download, or for other running copies to end before it installs a staged update.
- ``public_keys`` ([]): keys that sign releases (list of strings).
- ``allow_http`` (None): carried through to the client.

Sources, highest precedence first (each key is taken from the first source that sets it):

1. ``PYI_SELFUPDATE_<KEY>`` environment variables of the build (upper-case key, e.g.
   ``PYI_SELFUPDATE_API_URL``). Values are parsed by the key's type: booleans
   ``1/0/true/false/yes/no/on/off``, numbers, lists comma-separated, ``none``/``null``
   for keys that may be None. An empty variable counts as unset.
2. The spec file: ``Analysis(..., hooksconfig={"pyi_selfupdate": {...}})``.
3. ``[tool.pyi-selfupdate]`` in the ``pyproject.toml`` of the directory where
   PyInstaller runs (and ``[project] version`` there for ``current_version``).
4. The defaults above.

A missing ``api_url`` or ``current_version``, an unknown key or a wrong value
fails the build with a message naming the fix.

Build with ``pyi-selfupdate build app.py`` (or ``... build app.spec``): it fixes
``PYTHONHASHSEED`` so identical sources give identical bytes and patches stay
tiny. Every build re-reads the settings, even when only the environment or
pyproject.toml changed (the hook defeats PyInstaller's cached analysis for
that), and the release step refuses a binary whose embedded version or
cmd_name is not the one being released.
"""

from __future__ import annotations

import marshal
import os
import sys

__all__ = [
    "DEFAULTS", "REQUIRED", "MODES", "EMBEDDED_NAME", "EMBEDDED_MARSHAL_NAME", "EMBEDDED_DIR",
    "MARSHAL_VERSION", "load_embedded",
]

#: Every key with its default; ``REQUIRED`` keys have no usable default.
DEFAULTS = {
    "api_url": None,
    "bin_url": None,
    "diff_url": None,
    "cmd_name": None,
    "current_version": None,
    "dir": "update/",
    "check_time": 24,
    "randomize_time": 0,
    "force_check": False,
    "mode": "background",
    "enabled": True,
    "exit_wait": 10,
    "public_keys": [],
    "allow_http": None,
}

#: Keys a build must set.
REQUIRED = ("api_url", "current_version")

#: Values of ``mode``.
MODES = ("background", "immediate", "manual")

#: Folder (inside the app's bundle) and file name of the embedded configuration.
EMBEDDED_DIR = "pyi_selfupdate"
EMBEDDED_NAME = "_embedded_config.json"
#: The same configuration in :mod:`marshal` form, which the app reads at launch.
EMBEDDED_MARSHAL_NAME = "_embedded_config.marshal"
#: marshal format 0 writes every string alike (interned or not): deterministic bytes.
MARSHAL_VERSION = 0


def load_embedded(bundle_dir: "str | None" = None) -> "dict | None":
    """Return the configuration embedded in this frozen app, or None.

    None when the interpreter is not a PyInstaller app (no ``sys._MEIPASS``) or
    the app was built without the configuration. Keys missing from the file
    (an older build) get their defaults. ``bundle_dir`` replaces ``sys._MEIPASS``
    (tests). A corrupt file raises :class:`pyi_selfupdate.errors.ConfigError`.

    The marshal copy is read when present and sound; otherwise the JSON file
    (the reference, which ``release`` checks) is.
    """
    if bundle_dir is None:
        bundle_dir = getattr(sys, "_MEIPASS", None)
        if bundle_dir is None:
            return None
    data = _load_marshal(os.path.join(bundle_dir, EMBEDDED_DIR, EMBEDDED_MARSHAL_NAME))
    if data is None:
        data = _load_json(os.path.join(bundle_dir, EMBEDDED_DIR, EMBEDDED_NAME))
        if data is None:
            return None
    config = {k: (list(v) if isinstance(v, list) else v) for k, v in DEFAULTS.items()}
    config.update(data)
    return config


def _load_marshal(path: str) -> "dict | None":
    """The marshal copy (written by the hook, inside the app's own bundle); None if absent or unsound."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError:
        return None
    try:
        data = marshal.loads(raw)
    except (EOFError, ValueError, TypeError):
        return None
    return data if isinstance(data, dict) else None


def _load_json(path: str) -> "dict | None":
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except FileNotFoundError:
        return None
    import json

    try:
        data = json.loads(raw.decode("utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        from .errors import ConfigError

        raise ConfigError(
            f"the embedded update configuration {path} is corrupt ({exc}); rebuild the app"
        ) from None
    return data
