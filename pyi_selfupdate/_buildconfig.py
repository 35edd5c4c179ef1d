"""Build-time configuration: merge the sources, validate, and serialize for embedding.

The keys, their defaults and their rules are :data:`pyi_selfupdate.settings.SETTINGS`
(the README's table). Sources, highest precedence first (each key is taken from
the first source that sets it):

1. ``PYI_SELFUPDATE_<KEY>`` environment variables of the build (upper-case key,
   e.g. ``PYI_SELFUPDATE_API_URL``), parsed by the key's kind: booleans
   ``1/0/true/false/yes/no/on/off``, numbers, lists comma-separated,
   ``none``/``null`` for keys that may be None. An empty variable counts as unset.
2. The spec file: ``Analysis(..., hooksconfig={"pyi_selfupdate": {...}})``.
3. ``[tool.pyi-selfupdate]`` in the ``pyproject.toml`` of the directory where
   PyInstaller runs (and ``[project] version`` there for ``current_version``).
4. The defaults.

A missing ``api_url`` or ``current_version``, an unknown key or a wrong value
fails the build with a message naming the fix and where the value was set.
Used by the PyInstaller hook (``hook-pyi_selfupdate.py``) and by ``pyi-selfupdate
init``; never shipped in the frozen app.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

from .errors import ConfigError
from .settings import DEFAULTS, DEV_VERSION, REQUIRED, SETTINGS, SettingError, check, defaults

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the backport, a dependency on these Pythons
    import tomli as tomllib

log = logging.getLogger("pyi_selfupdate.build")

ENV_PREFIX = "PYI_SELFUPDATE_"
PYPROJECT_TABLE = "pyi-selfupdate"
HOOKSCONFIG_NAME = "pyi_selfupdate"
#: The hook writes the embedded config under this name in PyInstaller's workpath.
WORKPATH_FILE = "pyi_selfupdate_embedded_config.json"

_KIND = {s.name: s.kind for s in SETTINGS}
_URL_KEYS = tuple(s.name for s in SETTINGS if s.kind == "url")

#: Where each source lives, for messages.
SOURCE_SPEC = "the spec file's hooksconfig"
SOURCE_PYPROJECT = "[tool.pyi-selfupdate] in pyproject.toml"
SOURCE_PROJECT_VERSION = "[project] version in pyproject.toml"
SOURCE_DEFAULT = "the default"

#: ``PYI_SELFUPDATE_*`` variables read by the running app, not by the build
#: (see ``pyi_selfupdate._bootstrap`` and ``_restart``): ignored here without a word.
RUNTIME_ENV = ("PYI_SELFUPDATE_DISABLE", "PYI_SELFUPDATE_MAIN", "PYI_SELFUPDATE_LOG")

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_NONE = ("none", "null")


# ------------------------------------------------------------------- messages


def _where_to_set(key: str, example: str) -> str:
    return (
        f"set it in one of: the spec file, Analysis(..., hooksconfig={{\"pyi_selfupdate\": "
        f"{{\"{key}\": {example}}}}}); pyproject.toml next to where PyInstaller runs, "
        f"[tool.pyi-selfupdate] {key} = {example}; or the environment, "
        f"{ENV_PREFIX}{key.upper()}={example.strip(chr(34))}"
    )


def _unknown_key(key: str, origin: str) -> ConfigError:
    close = difflib.get_close_matches(key.lower().replace("-", "_"), list(DEFAULTS), n=1, cutoff=0.5)
    hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(DEFAULTS)}"
    return ConfigError(f"unknown self-update setting {key!r} in {origin}; {hint}")


# -------------------------------------------------------------- environment


def parse_env_value(key: str, text: str) -> Any:
    """Parse the text of ``PYI_SELFUPDATE_<KEY>`` by the type of ``key``."""
    name = ENV_PREFIX + key.upper()
    low = text.strip().lower()
    kind = _KIND[key]
    if DEFAULTS[key] is None and low in _NONE:
        return None
    if kind in ("bool", "tristate"):
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError(f"{name}={text!r} is not a boolean; use 1/0, true/false or yes/no")
    if kind in ("hours", "seconds"):
        try:
            number = float(text)
        except ValueError:
            raise ConfigError(f"{name}={text!r} is not a number; give e.g. {name}={DEFAULTS[key]}") from None
        return int(number) if number.is_integer() and "." not in text else number
    if kind in ("keys", "hosts"):
        return [part.strip() for part in text.split(",") if part.strip()]
    return text.strip()


def config_from_env(environ: Mapping[str, str]) -> Dict[str, Any]:
    """The ``PYI_SELFUPDATE_<KEY>`` variables of ``environ`` as a partial config.

    Empty variables count as unset. Other ``PYI_SELFUPDATE_*`` names (run-time
    switches of the app, typos) are ignored with a warning naming the closest key.
    """
    out: Dict[str, Any] = {}
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in RUNTIME_ENV:
            continue
        value = environ[name]
        key = name[len(ENV_PREFIX):].lower()
        if key not in DEFAULTS:
            close = difflib.get_close_matches(key, list(DEFAULTS), n=1, cutoff=0.6)
            if close:
                log.warning(
                    "environment variable %s is not a build setting and is ignored; did you mean %s%s?",
                    name, ENV_PREFIX, close[0].upper(),
                )
            else:
                log.debug("environment variable %s is not a build setting; ignored", name)
            continue
        if value == "":
            continue
        out[key] = parse_env_value(key, value)
    return out


# ---------------------------------------------------------------- pyproject


def _load_toml(path: Path) -> Dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix the file") from None


def config_from_pyproject(directory: "str | os.PathLike[str]") -> Tuple[Dict[str, Any], Optional[str]]:
    """``([tool.pyi-selfupdate] table, [project] version)`` of ``directory/pyproject.toml``.

    Both are empty/None when the file or the table is absent.
    """
    path = Path(directory) / "pyproject.toml"
    if not path.is_file():
        return {}, None
    data = _load_toml(path)
    table = data.get("tool", {}).get(PYPROJECT_TABLE, {})
    if not isinstance(table, dict):
        raise ConfigError(f"[tool.pyi-selfupdate] in {path} must be a table of settings")
    project = data.get("project", {})
    version = project.get("version") if isinstance(project, dict) else None
    return dict(table), (str(version) if version is not None else None)


# --------------------------------------------------------------- validation


def validate(config: Mapping[str, Any], origins: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    """Check a complete config (every key present); return it with normalized values.

    Each value is checked by :func:`pyi_selfupdate.settings.check`; ``origins``
    maps a key to where its value came from, for the messages.
    """
    from .fetch import check_transport

    origins = origins or {}
    out = dict(config)
    for key in REQUIRED:
        if out.get(key) in (None, ""):
            example = '"https://example.com/updates/"' if key == "api_url" else '"1.0.0"'
            extra = " (or declare [project] version in pyproject.toml)" if key == "current_version" else ""
            raise ConfigError(f"the self-update setting {key} is missing{extra}; " + _where_to_set(key, example))
    for setting in SETTINGS:
        key = setting.name
        try:
            out[key] = check(key, out[key])
        except SettingError as exc:
            where = origins.get(key, SOURCE_DEFAULT)
            raise ConfigError(f"self-update setting {key} = {exc.value!r} (from {where}) "
                              f"{exc.problem}; {exc.fix}") from None
        if setting.kind == "url" and out[key] is not None and not re.match(r"^https?://[^/\s]+", out[key]):
            # The app's requester speaks HTTP(S); Updater(requester=...) may take other schemes.
            raise ConfigError(f"self-update setting {key} = {out[key]!r} (from "
                              f"{origins.get(key, SOURCE_DEFAULT)}) is not an http:// or https:// "
                              "URL; give a URL like \"https://example.com/updates/\"")
    # The client refuses plain HTTP to another host without signatures: fail the
    # build now rather than ship an app whose every check fails in its log.
    for key in _URL_KEYS:
        if out[key] is not None:
            try:
                check_transport(out[key], key, signed=bool(out["public_keys"]),
                                allow_http=out["allow_http"])
            except ConfigError as exc:
                raise ConfigError(f"self-update setting {exc} ({key} is set in "
                                  f"{origins.get(key, SOURCE_DEFAULT)})") from None
    if out["current_version"] == DEV_VERSION:
        log.info("current_version is %r: this build never updates", DEV_VERSION)
    return out


# -------------------------------------------------------------------- merge


def merge(
    *,
    spec: Optional[Mapping[str, Any]] = None,
    pyproject: Optional[Mapping[str, Any]] = None,
    project_version: Optional[str] = None,
    env: Optional[Mapping[str, Any]] = None,
) -> Tuple[Dict[str, Any], Dict[str, str]]:
    """Merge partial configs by precedence (env > spec > pyproject > defaults).

    Returns ``(config, origins)``; not yet validated. Unknown keys raise ConfigError.
    """
    config = defaults()
    origins: Dict[str, str] = {}
    if project_version is not None:
        config["current_version"] = project_version
        origins["current_version"] = SOURCE_PROJECT_VERSION
    layers = ((pyproject, SOURCE_PYPROJECT), (spec, SOURCE_SPEC), (env, "the environment"))
    for layer, origin in layers:
        if not layer:
            continue
        if not isinstance(layer, Mapping):
            raise ConfigError(f"{origin} must be a dict of settings, not {type(layer).__name__}")
        for key, value in layer.items():
            if key not in DEFAULTS:
                raise _unknown_key(str(key), origin)
            config[key] = value
            origins[key] = (ENV_PREFIX + key.upper()) if origin == "the environment" else origin
    return config, origins


def build_config(
    spec: Optional[Mapping[str, Any]] = None,
    *,
    cwd: "str | os.PathLike[str] | None" = None,
    environ: Optional[Mapping[str, str]] = None,
) -> Dict[str, Any]:
    """The validated configuration of a build, from all sources.

    ``spec`` is the spec file's ``hooksconfig["pyi_selfupdate"]``, ``cwd`` the
    directory whose pyproject.toml is read (default: the current directory),
    ``environ`` the environment (default: ``os.environ``).
    """
    table, version = config_from_pyproject(Path(cwd) if cwd is not None else Path.cwd())
    env = config_from_env(os.environ if environ is None else environ)
    config, origins = merge(spec=spec, pyproject=table, project_version=version, env=env)
    return validate(config, origins)


def dumps(config: Mapping[str, Any]) -> bytes:
    """The embedded form: compact JSON, sorted keys, ASCII, deterministic bytes."""
    return json.dumps(dict(config), sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


# ------------------------------------------------------------------ templates


def read_template(name: str) -> str:
    """The text of ``templates/<name>`` (installed as ``pyi_selfupdate._templates``)."""
    try:
        from importlib.resources import files

        return files("pyi_selfupdate._templates").joinpath(name).read_text(encoding="utf-8")
    except (ImportError, FileNotFoundError):  # running from a source checkout
        return (Path(__file__).resolve().parent.parent / "templates" / name).read_text(encoding="utf-8")


def render_spec(
    script: "str | os.PathLike[str]",
    *,
    name: Optional[str] = None,
    api_url: Optional[str] = None,
    version: Optional[str] = None,
    environ: Optional[Mapping[str, str]] = None,
) -> Tuple[Path, str]:
    """Render ``templates/selfupdate.spec`` for ``script``; return ``(spec path, text)``.

    The spec goes next to the script and is named after ``name`` (default: the
    script's stem), which is also written as ``cmd_name`` so that a renamed
    executable keeps its update URLs. ``api_url`` and ``version`` are validated;
    a required setting that is neither given nor found in ``pyproject.toml`` next
    to the script or in the environment is written as a commented reminder.
    """
    from string import Template

    from .protocol import validate_name

    script = Path(script)
    if not script.is_file():
        raise ConfigError(f"{script} does not exist; give the path of the app's main script")
    name = name or script.stem
    validate_name(name, "name")
    table, project_version = config_from_pyproject(script.resolve().parent)
    env = config_from_env(os.environ if environ is None else environ)
    probe = dict(DEFAULTS, api_url=api_url or "https://example.com/", current_version=version or "1")
    validate(probe, {"api_url": "--api-url", "current_version": "--version"})

    lines = []
    if api_url:
        lines.append(f'"api_url": {json.dumps(api_url)},')
    elif "api_url" not in table and "api_url" not in env:
        lines.append('# "api_url": "https://example.com/updates/",  # REQUIRED: set it here, in'
                     ' pyproject.toml or PYI_SELFUPDATE_API_URL')
    lines.append(f'"cmd_name": {json.dumps(name)},')
    if version:
        lines.append(f'"current_version": {json.dumps(version)},')
    elif not project_version and "current_version" not in table and "current_version" not in env:
        lines.append('# "current_version": "1.0.0",  # REQUIRED: set it here, as [project] version'
                     ' in pyproject.toml or PYI_SELFUPDATE_CURRENT_VERSION')
    else:
        lines.append("# current_version: taken from pyproject.toml or PYI_SELFUPDATE_CURRENT_VERSION")
    lines.append('"mode": "background",  # or "immediate" (install and restart at once) or "manual"')
    spec_path = script.parent / f"{name}.spec"
    text = Template(read_template("selfupdate.spec")).substitute(
        name=name,
        name_literal=json.dumps(name),
        spec_file=spec_path.name,
        script=json.dumps(script.name),
        config_lines="\n".join(" " * 8 + line for line in lines),
    )
    return spec_path, text
