"""Every setting and every limit of the updater, defined once.

:data:`SETTINGS` lists each key a frozen app is built with (the
:class:`~pyi_selfupdate.Updater` keyword of the same name), with its default,
unit and meaning; :func:`check` validates one value. The build (merging the
environment, the spec file and ``pyproject.toml``), the configuration embedded
in the app, :class:`~pyi_selfupdate.Updater` and the runtime bootstrap all take
their defaults and their rules from here. :class:`Settings` is the typed,
frozen form of one app's configuration; :data:`LIMITS` holds every bound the
client enforces (sizes, waits, counts).

The frozen app imports this module at every launch, before its own code: it
imports nothing but ``marshal``, ``os`` and ``sys`` (``json`` only for an app
built without the marshal copy), and its classes are plain slotted classes, not
dataclasses, whose creation would cost every launch a few milliseconds.
"""

from __future__ import annotations

import marshal
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would cost every launch milliseconds
    from typing import Any, Dict, Iterator, List, Mapping, Optional, Tuple

__all__ = [
    "Setting", "SETTINGS", "DEFAULTS", "REQUIRED", "MODES", "LIMIT_ROWS", "DEV_VERSION", "FILE", "FOLDER", "KINDS", "defaults", "Settings", "Limits", "LIMITS",
    "check", "SettingError", "load_embedded",
    "EMBEDDED_DIR", "EMBEDDED_NAME", "EMBEDDED_MARSHAL_NAME", "MARSHAL_VERSION",
]

#: Values of ``mode``.
MODES = ("background", "immediate", "manual")

#: A build whose version is ``dev`` never updates (go-selfupdate's rule).
DEV_VERSION = "dev"

#: What a release updates: one executable (go-selfupdate's only kind), or an app
#: folder (onedir, macOS ``.app``) shipped as its canonical archive.
FILE = "file"
FOLDER = "folder"
KINDS = (FILE, FOLDER)


class _Frozen:
    """Read-only attributes, set once by ``__init__`` through :meth:`_set` (slotted: cheap to define)."""

    __slots__ = ()

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only: make a new one")

    def _items(self) -> Iterator[Tuple[str, Any]]:
        return ((name, getattr(self, name)) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and tuple(self._items()) == tuple(other._items())  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(tuple((k, repr(v)) for k, v in self._items()))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self._items())})"


class Setting(_Frozen):
    """One key: its name, default, kind (which fixes its validation), unit and meaning."""

    __slots__ = ("name", "default", "kind", "unit", "doc", "required")
    name: str
    default: Any
    kind: str  #: url, name, version, folder, hours, seconds, bool, tristate, mode, keys
    unit: str
    doc: str
    required: bool

    def __init__(self, name: str, default: Any, kind: str, unit: str, doc: str,
                 required: bool = False) -> None:
        for key, value in zip(self.__slots__, (name, default, kind, unit, doc, required)):
            self._set(key, value)


#: Every key, in the order the README's table lists them.
SETTINGS: Tuple[Setting, ...] = (
    Setting("api_url", None, "url", "URL", "base URL of the manifests, ends in `/`", True),
    Setting("bin_url", None, "url", "URL", "base URL of the full `.gz` binaries (default: `api_url`)"),
    Setting("diff_url", None, "url", "URL", "base URL of the patches (default: `api_url`)"),
    Setting("cmd_name", None, "name", "name",
            "the app's name in the URLs (default: the name the app is built with, fixed at build "
            "time, so renaming the executable changes nothing)"),
    Setting("platform", None, "name", "OS-ARCH",
            "the platform in the URLs, as Go names it (default: the build machine's, fixed at build time)"),
    Setting("current_version", None, "version", "version",
            "this build's version (default: `[project] version`); `dev` never updates", True),
    Setting("dir", "update/", "folder", "folder",
            "folder beside the executable for the `cktime` schedule and the `serial`"),
    Setting("check_time", 24, "hours", "hours", "hours between two checks"),
    Setting("randomize_time", 0, "hours", "hours", "up to this many random hours added to each wait"),
    Setting("force_check", False, "bool", "boolean", "check at every launch, ignoring `cktime`"),
    Setting("mode", "background", "mode", "mode",
            "`background` (stage now, install at the next launch), `immediate` (check at launch, "
            "install and restart at once), `manual` (your code calls `Updater`)"),
    Setting("enabled", True, "bool", "boolean", "false: the bootstrap does nothing"),
    Setting("exit_wait", 10, "seconds", "seconds",
            "the most a short-lived app waits at exit: for a download still receiving bytes and "
            "likely to finish in time (never for a check still connecting, nor a stalled one), or "
            "for other running copies to end before it installs a staged update"),
    Setting("immediate_wait", 5, "seconds", "seconds",
            "`immediate` mode: the most the launch waits for the check and download before the app "
            "starts as it is (the download then goes on in the background)"),
    Setting("public_keys", [], "keys", "keys", "Ed25519 keys that sign releases (see SECURITY.md)"),
    Setting("allow_http", None, "tristate", "boolean or unset",
            "plain HTTP to a non-loopback host: unset allows it only with `public_keys`, true "
            "always, false never"),
    Setting("redirect_hosts", [], "hosts", "host names",
            "other hosts the server may redirect downloads to (a CDN, an object store); followed "
            "only by apps with `public_keys` (see SECURITY.md)"),
)

#: Every key with its default (a fresh copy for mutable defaults: use :func:`defaults`).
DEFAULTS: Dict[str, Any] = {s.name: s.default for s in SETTINGS}
#: Keys a build must set.
REQUIRED = tuple(s.name for s in SETTINGS if s.required)
_BY_NAME = {s.name: s for s in SETTINGS}


def defaults() -> Dict[str, Any]:
    """Every key with its default, as a new dict (lists copied)."""
    return {k: (list(v) if isinstance(v, list) else v) for k, v in DEFAULTS.items()}


#: Every bound the client (and, for the rows that say so, the release tool) enforces: name, value, unit, meaning.
LIMIT_ROWS: Tuple[Tuple[str, Any, str, str], ...] = (
    ("manifest_bytes", 64 * 1024, "bytes",
     "the most bytes received for a manifest, as sent (compressed or not)"),
    ("binary_bytes", 1 << 30, "bytes", "the largest executable accepted (a decompressed `.gz`, a patch's result)"),
    ("patch_slack", 64 << 20, "bytes", "allowance over the current file's size for a patch and its result"),
    ("deadline", 900.0, "seconds", "how long one check-and-download may take in all, connects, headers and "
                                   "redirects included: the connection is shut at that moment (`Updater(deadline=)`)"),
    ("connect_timeout", 10.0, "seconds", "to connect to the server"),
    ("read_timeout", 30.0, "seconds", "the longest silence of the server while it answers"),
    ("max_redirects", 30, "redirects", "followed within the configured server, or to a `redirect_hosts` host (never elsewhere)"),
    ("max_signatures", 16, "entries", "signatures in one manifest (more is an attack, not a key rotation)"),
    ("lock_wait", 60.0, "seconds", "a launch waits this long for another instance's install"),
    ("state_lock_wait", 10.0, "seconds", "the longest wait for another process recording the accepted "
                                         "serial (held for milliseconds)"),
    ("burst", 5.0, "seconds", "a launch installing at exit waits for copies started at most this long before "
                              "it (the same burst of launches), not for older ones"),
    ("orphan_staged_age", 600.0, "seconds", "a staged binary without its sidecar is a leftover after this long"),
    ("backoff_first", 60.0, "seconds", "the wait after a first failed check; it doubles with each failure "
                                       "(with jitter), up to `check_time`"),
    ("stall", 2.0, "seconds", "a download that received nothing for this long does not hold the exit"),
    ("exit_check", 1.0, "seconds", "the most a check still waiting for its manifest holds the exit"),
    ("log_bytes", 64 * 1024, "bytes", "the app's update log in its state folder (two halves, rotated)"),
    ("switch_wait", 60.0, "seconds", "Windows: how long after the app's exit `cmd.exe` keeps trying to switch "
                                     "its folder to a staged update (it waits for every copy to end)"),
    ("release_base_slack", 64 << 20, "bytes", "release tool: an earlier release whose size no verified "
                                              "manifest gives is decompressed, to diff from, up to the new "
                                              "release's size plus this (more is refused as a decompression bomb)"),
    ("expires_days_max", 3653, "days", "release tool: the longest `--expires` (ten years)"),
    ("patches_from", 5, "releases", "release tool: patches are written from this many earlier releases of "
                                    "each platform, the newest (`--patches-from N`); older installs take the `.gz`"),
)


class Limits(_Frozen):
    """Every bound the client and the release tool enforce, in one place.

    :data:`LIMIT_ROWS` gives each one's unit and meaning.
    """

    __slots__ = tuple(row[0] for row in LIMIT_ROWS)
    manifest_bytes: int
    binary_bytes: int
    patch_slack: int
    deadline: float
    connect_timeout: float
    read_timeout: float
    max_redirects: int
    max_signatures: int
    lock_wait: float
    state_lock_wait: float
    burst: float
    orphan_staged_age: float
    backoff_first: float
    stall: float
    exit_check: float
    log_bytes: int
    switch_wait: float
    release_base_slack: int
    expires_days_max: int
    patches_from: int

    def __init__(self, **values: Any) -> None:
        unknown = set(values) - set(self.__slots__)
        if unknown:
            raise TypeError(f"unknown limits: {', '.join(sorted(unknown))}")
        for name, default, _unit, _doc in LIMIT_ROWS:
            self._set(name, values.get(name, default))


#: The limits in force.
LIMITS = Limits()


class SettingError(ValueError):
    """A value :func:`check` refuses: ``problem`` (what is wrong) and ``fix`` (what to write)."""

    def __init__(self, name: str, value: Any, problem: str, fix: str) -> None:
        super().__init__(f"{name} {value!r} {problem}; {fix}")
        self.name, self.value, self.problem, self.fix = name, value, problem, fix


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check(name: str, value: Any) -> Any:
    """Validate ``value`` for the key ``name``; return it normalized.

    Raises :class:`SettingError` (problem and fix) for a wrong value,
    :class:`~pyi_selfupdate.errors.InvalidNameError` for a name or version that
    could escape its URL segment, and :class:`~pyi_selfupdate.errors.ConfigError`
    for a malformed public key. ``None`` is accepted for keys whose default is None.
    """
    setting = _BY_NAME[name]
    kind = setting.kind
    if value is None and setting.default is None and not setting.required:
        return None
    if kind == "url":
        if not isinstance(value, str) or not value:
            raise SettingError(name, value, "is missing",
                               "give the base URL of the release tree, ending in '/'")
        if not value.endswith("/"):
            raise SettingError(name, value, "does not end in '/' (URLs are concatenated as they are)",
                               f"write {value + '/'!r}")
        return value
    if kind in ("name", "version"):
        from .protocol import validate_name

        if kind == "version" and _number(value):
            raise SettingError(name, value, "is a number, not a string", f"quote it: \"{value}\"")
        if not isinstance(value, str):
            raise SettingError(name, value, "is not a string",
                               "give the name used in the update URLs")
        return validate_name(value, "version" if kind == "version" else name.replace("_", " "))
    if kind == "folder":
        if not isinstance(value, str) or (value and not value.endswith("/")):
            raise SettingError(name, value, "must be a folder name ending in '/'",
                               f"write e.g. \"{setting.default}\"")
        return value
    if kind in ("hours", "seconds"):
        if not _number(value) or value < 0 or value != value:
            raise SettingError(name, value, "is not a number >= 0",
                               f"give a number of {kind}, zero or more, e.g. {setting.default}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise SettingError(name, value, "is not a boolean", "write true or false")
        return value
    if kind == "tristate":
        if not isinstance(value, (bool, type(None))):
            raise SettingError(name, value, "is not a boolean or null",
                               "write true, false or leave it unset")
        return value
    if kind == "mode":
        if value not in MODES:
            raise SettingError(name, value, "is not a known mode", f"use one of {', '.join(MODES)}")
        return value
    if kind == "keys":
        if value is None:
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(isinstance(k, str) and k for k in value):
            raise SettingError(name, value, "is not a list of strings",
                               "give a list like [\"ed25519:...\"]")
        from .signing import check_public_keys

        return check_public_keys(list(value))
    if kind == "hosts":
        if value is None:
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)) or not all(
                isinstance(h, str) and h and not any(c in h for c in "/:@ \t") for h in value):
            raise SettingError(name, value, "is not a list of host names",
                               "give bare host names like [\"cdn.example.com\"] (no scheme, port or path)")
        return [h.lower() for h in value]
    raise AssertionError(f"unknown kind {kind!r}")  # pragma: no cover - the table above


class Settings(_Frozen):
    """The self-update configuration of one app: every key of :data:`SETTINGS`.

    ``Settings(**values)`` takes the values as they are, the others get their
    defaults (the embedded configuration was validated by the build);
    :meth:`checked` validates each one with :func:`check` first. :meth:`as_dict`
    gives the embedded form.
    """

    __slots__ = tuple(s.name for s in SETTINGS)
    api_url: Optional[str]
    bin_url: Optional[str]
    diff_url: Optional[str]
    cmd_name: Optional[str]
    platform: Optional[str]
    current_version: Optional[str]
    dir: str
    check_time: float
    randomize_time: float
    force_check: bool
    mode: str
    enabled: bool
    exit_wait: float
    immediate_wait: float
    public_keys: List[str]
    allow_http: Optional[bool]
    redirect_hosts: List[str]

    def __init__(self, **values: Any) -> None:
        unknown = set(values) - set(self.__slots__)
        if unknown:
            raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
        for name, default in defaults().items():
            self._set(name, values.get(name, default))

    @classmethod
    def checked(cls, **values: Any) -> "Settings":
        """Validate every value with :func:`check`; unknown keys raise ``TypeError``."""
        return cls(**{k: check(k, v) for k, v in values.items()})

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> "Settings":
        """The settings in ``data``, ignoring keys this version does not know (a newer build)."""
        return cls(**{k: v for k, v in data.items() if k in _BY_NAME})

    def as_dict(self) -> Dict[str, Any]:
        """Every key and value (lists copied), the form embedded in the app."""
        return {k: (list(v) if isinstance(v, list) else v) for k, v in self._items()}




# --------------------------------------------------------------- embedded copy

#: Folder (inside the app's bundle) and file name of the embedded configuration.
EMBEDDED_DIR = "pyi_selfupdate"
EMBEDDED_NAME = "_embedded_config.json"
#: The same configuration in :mod:`marshal` form, which the app reads at launch
#: (importing :mod:`json` would cost every launch a few milliseconds).
EMBEDDED_MARSHAL_NAME = "_embedded_config.marshal"
#: marshal format 0 writes every string alike (interned or not): deterministic bytes.
MARSHAL_VERSION = 0


def load_embedded(bundle_dir: Optional[str] = None) -> Optional[Dict[str, Any]]:
    """The configuration embedded in this frozen app (every key, as a dict), or None.

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
    config = defaults()
    config.update(data)
    return config


def _read(path: str) -> Optional[bytes]:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None


def _load_marshal(path: str) -> Optional[dict]:
    """The marshal copy (written by the hook, inside the app's own bundle); None if absent or unsound."""
    try:
        data = marshal.loads(_read(path) or b"")
    except (OSError, EOFError, ValueError, TypeError):
        return None
    return data if isinstance(data, dict) else None


def _load_json(path: str) -> Optional[dict]:
    raw = _read(path)
    if raw is None:
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
