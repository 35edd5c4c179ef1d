"""Build-time configuration: merge the sources, validate, and serialize for embedding.

The keys, defaults and precedence are documented in :mod:`pyi_selfupdate._config`.
Used by the PyInstaller hook (``hook-pyi_selfupdate.py``) and by ``pyi-selfupdate
init``; never shipped in the frozen app.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

from ._config import DEFAULTS, MODES, REQUIRED
from .errors import ConfigError

log = logging.getLogger("pyi_selfupdate.build")

ENV_PREFIX = "PYI_SELFUPDATE_"
PYPROJECT_TABLE = "pyi-selfupdate"
HOOKSCONFIG_NAME = "pyi_selfupdate"
#: The hook writes the embedded config under this name in PyInstaller's workpath.
WORKPATH_FILE = "pyi_selfupdate_embedded_config.json"

_URL_KEYS = ("api_url", "bin_url", "diff_url")
_NULLABLE_STR = ("bin_url", "diff_url", "cmd_name")
_BOOL_KEYS = ("force_check", "enabled")
_NUMBER_KEYS = ("check_time", "randomize_time", "exit_wait")

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
    if key in _BOOL_KEYS or key == "allow_http":
        if key == "allow_http" and low in _NONE:
            return None
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ConfigError(f"{name}={text!r} is not a boolean; use 1/0, true/false or yes/no")
    if key in _NUMBER_KEYS:
        try:
            number = float(text)
        except ValueError:
            raise ConfigError(f"{name}={text!r} is not a number; give e.g. {name}=24") from None
        return int(number) if number.is_integer() and "." not in text else number
    if key == "public_keys":
        return [part.strip() for part in text.split(",") if part.strip()]
    if key in _NULLABLE_STR and low in _NONE:
        return None
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
        import tomllib  # type: ignore[import-not-found]
    except ImportError:  # Python < 3.11
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            return _minimal_toml(path)
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix the file") from None


_SECTION = re.compile(r"^\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")
_KEYVAL = re.compile(r"^([A-Za-z0-9_\-]+|\"[^\"]+\")\s*=\s*(.+?)\s*$")


def _minimal_toml(path: Path) -> Dict[str, Any]:
    """Read the two tables we need without a TOML library (Python < 3.11, no tomli).

    Understands ``[project]`` and ``[tool.pyi-selfupdate]`` with one-line values:
    strings, numbers, booleans and arrays of those. Anything else asks for tomli.
    """
    wanted = {"project": ("project",), "tool.pyi-selfupdate": ("tool", PYPROJECT_TABLE),
              'tool."pyi-selfupdate"': ("tool", PYPROJECT_TABLE)}
    result: Dict[str, Any] = {}
    current: Optional[Dict[str, Any]] = None
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        m = _SECTION.match(stripped)
        if m and not stripped.startswith("[["):
            target = wanted.get(m.group(1).replace(" ", ""))
            current = None
            if target:
                node = result
                for part in target:
                    node = node.setdefault(part, {})
                current = node
            continue
        if current is None or stripped.startswith("[["):
            current = None if stripped.startswith("[[") else current
            continue
        kv = _KEYVAL.match(stripped)
        if not kv:
            continue
        key, raw = kv.group(1).strip('"'), kv.group(2)
        if current is result.get("project") and key != "version":
            continue
        try:
            current[key] = _toml_value(raw)
        except ValueError:
            raise ConfigError(
                f"{path}:{lineno}: cannot read {key} = {raw} without a TOML parser; "
                f"install tomli (pip install tomli) or write the value on one line"
            ) from None
    return result


def _toml_value(raw: str) -> Any:
    raw = re.sub(r"\s+#[^\"']*$", "", raw).strip()
    if raw in ("true", "false"):
        return raw == "true"
    if raw.startswith("'") and raw.endswith("'") and len(raw) >= 2:
        return raw[1:-1]
    if raw.startswith("[") and raw.endswith("]"):
        inner = raw[1:-1].strip().rstrip(",")
        if not inner:
            return []
        return [_toml_value(part.strip()) for part in _split_array(inner)]
    try:
        return json.loads(raw)
    except ValueError:
        raise ValueError(raw) from None


def _split_array(inner: str) -> list:
    parts, buf, quote = [], "", ""
    for ch in inner:
        if quote:
            buf += ch
            if ch == quote and not buf.endswith("\\" + quote):
                quote = ""
        elif ch in "\"'":
            quote = ch
            buf += ch
        elif ch == ",":
            parts.append(buf)
            buf = ""
        else:
            buf += ch
    parts.append(buf)
    return parts


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


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate(config: Mapping[str, Any], origins: Optional[Mapping[str, str]] = None) -> Dict[str, Any]:
    """Check a complete config (every key present); return it with normalized values.

    ``origins`` maps a key to where its value came from, for the messages.
    """
    from .protocol import DEV_VERSION, validate_name

    origins = origins or {}

    def bad(key: str, problem: str, fix: str) -> ConfigError:
        where = origins.get(key, SOURCE_DEFAULT)
        return ConfigError(f"self-update setting {key} = {config[key]!r} (from {where}) {problem}; {fix}")

    out = dict(config)
    for key in REQUIRED:
        if out.get(key) in (None, ""):
            example = '"https://example.com/updates/"' if key == "api_url" else '"1.0.0"'
            extra = " (or declare [project] version in pyproject.toml)" if key == "current_version" else ""
            raise ConfigError(f"the self-update setting {key} is missing{extra}; " + _where_to_set(key, example))
    for key in _URL_KEYS:
        value = out[key]
        if value is None:
            continue
        if not isinstance(value, str):
            raise bad(key, "is not a string", "give a URL like \"https://example.com/updates/\"")
        if not re.match(r"^https?://[^/\s]+", value):
            raise bad(key, "is not an http:// or https:// URL", "give a URL like \"https://example.com/updates/\"")
        if not value.endswith("/"):
            raise bad(key, "does not end in '/' (URLs are concatenated as they are)", f"write {value + '/'!r}")
    version = out["current_version"]
    if _is_number(version):
        raise bad("current_version", "is a number, not a string", f"quote it: \"{version}\"")
    validate_name(version, "version")
    if out["cmd_name"] is not None:
        if not isinstance(out["cmd_name"], str):
            raise bad("cmd_name", "is not a string", "give the command name used in the update URLs")
        validate_name(out["cmd_name"], "cmd name")
    if not isinstance(out["dir"], str) or (out["dir"] and not out["dir"].endswith("/")):
        raise bad("dir", "must be a folder name ending in '/'", "write e.g. \"update/\"")
    for key in _NUMBER_KEYS:
        if not _is_number(out[key]) or out[key] < 0 or out[key] != out[key]:
            raise bad(key, "is not a number >= 0", f"give e.g. {DEFAULTS[key]}")
    for key in _BOOL_KEYS:
        if not isinstance(out[key], bool):
            raise bad(key, "is not a boolean", "write true or false")
    if out["allow_http"] is not None and not isinstance(out["allow_http"], bool):
        raise bad("allow_http", "is not a boolean or null", "write true, false or leave it unset")
    if out["mode"] not in MODES:
        raise bad("mode", "is not a known mode", f"use one of {', '.join(MODES)}")
    keys = out["public_keys"]
    if isinstance(keys, str):
        keys = [keys]
    if not isinstance(keys, (list, tuple)) or not all(isinstance(k, str) and k for k in keys):
        raise bad("public_keys", "is not a list of strings", "give a list like [\"<public key>\"]")
    out["public_keys"] = list(keys)
    if keys:
        try:
            from .signing import check_public_keys
        except ImportError:  # pragma: no cover - signing is part of the package
            pass
        else:
            out["public_keys"] = check_public_keys(list(keys))
    # The client refuses plain HTTP to another host without signatures: fail the
    # build now rather than ship an app whose every check fails in its log.
    from .signing import check_transport

    for key in _URL_KEYS:
        if out[key] is not None:
            try:
                check_transport(out[key], key, signed=bool(out["public_keys"]),
                                allow_http=out["allow_http"])
            except ConfigError as exc:
                raise ConfigError(f"self-update setting {exc} ({key} is set in "
                                  f"{origins.get(key, SOURCE_DEFAULT)})") from None
    if version == DEV_VERSION:
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
    config: Dict[str, Any] = {k: (list(v) if isinstance(v, list) else v) for k, v in DEFAULTS.items()}
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
        config_lines="\n".join(" " * 12 + line for line in lines),
    )
    return spec_path, text
