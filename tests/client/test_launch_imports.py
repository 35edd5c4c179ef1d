"""What the usual launch of a frozen app imports, and the lazy public API.

The runtime hook imports ``pyi_selfupdate._bootstrap`` at every launch; the
usual launch (nothing staged, no check due) must not pay for the client
(``updater``, ``protocol``, ``signing``, ``fetch``) nor for ``logging``,
``json``, ``hashlib``, ``datetime``, ... Each check runs in a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _installed import python_env


#: Modules the usual launch must not import (the app may, later, on its own).
HEAVY = ["typing", "logging", "json", "hashlib", "_hashlib", "datetime", "random", "secrets", "base64",
         "platform", "pathlib", "urllib.parse", "requests", "bsdiff4", "pyi_selfupdate.updater", "pyi_selfupdate.protocol",
         "pyi_selfupdate.signing", "pyi_selfupdate.fetch", "pyi_selfupdate._patch"]


def _python(code: str, tmp_path: Path) -> dict:
    env = python_env({k: v for k, v in os.environ.items() if not k.startswith("PYI_SELFUPDATE")})
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def _frozen_app(tmp_path: Path, config: dict) -> Path:
    """A fake bundle (sys._MEIPASS) holding the embedded configuration, as the hook writes it."""
    import marshal

    from pyi_selfupdate._buildconfig import dumps
    from pyi_selfupdate.settings import DEFAULTS, EMBEDDED_MARSHAL_NAME, EMBEDDED_NAME, MARSHAL_VERSION

    full = dict(DEFAULTS, **config)
    bundle = tmp_path / "_MEI"
    (bundle / "pyi_selfupdate").mkdir(parents=True)
    data = dumps(full)
    (bundle / "pyi_selfupdate" / EMBEDDED_NAME).write_bytes(data)
    (bundle / "pyi_selfupdate" / EMBEDDED_MARSHAL_NAME).write_bytes(
        marshal.dumps(json.loads(data), MARSHAL_VERSION))
    app = tmp_path / "app"
    app.mkdir()
    return bundle


def test_usual_launch_imports_no_client_and_no_heavy_module(tmp_path):
    bundle = _frozen_app(tmp_path, {"api_url": "http://127.0.0.1:9/", "current_version": "1.0"})
    exe = tmp_path / "app" / "textstat"
    exe.write_bytes(b"not really an executable")
    (tmp_path / "app" / "update").mkdir()
    (tmp_path / "app" / "update" / "textstat").mkdir()
    (tmp_path / "app" / "update" / "textstat" / "cktime").write_text("2099-01-01T00:00:00Z")  # no check due
    code = f"""
import json, sys
sys.frozen = True
sys._MEIPASS = {str(bundle)!r}
sys.executable = {str(exe)!r}
before = set(sys.modules)
from pyi_selfupdate import _bootstrap
from pyi_selfupdate import _instances
_instances.replaced_since_start = lambda target: False  # the fake executable is not this interpreter
_bootstrap.run()
new = sorted(set(sys.modules) - before)
print(json.dumps({{"new": new, "config": _bootstrap.embedded_config(),
                   "lock": (_bootstrap._lock is not None), "thread": _bootstrap._thread is not None}}))
"""
    result = _python(code, tmp_path)
    assert result["config"]["current_version"] == "1.0"
    assert result["lock"] and not result["thread"]  # it ran: the instance lock is held, no check started
    assert [m for m in HEAVY if m in result["new"]] == []
    ours = {m for m in result["new"] if m.startswith("pyi_selfupdate")}
    assert ours == {"pyi_selfupdate", "pyi_selfupdate._bootstrap", "pyi_selfupdate.settings",
                    "pyi_selfupdate._files", "pyi_selfupdate._staging", "pyi_selfupdate._instances",
                    "pyi_selfupdate._lazy", "pyi_selfupdate._restart", "pyi_selfupdate._schedule",
                    "pyi_selfupdate.errors"}


def test_marshal_copy_is_read_and_json_is_the_fallback(tmp_path):
    from pyi_selfupdate.settings import EMBEDDED_MARSHAL_NAME, load_embedded

    bundle = _frozen_app(tmp_path, {"api_url": "http://127.0.0.1:9/", "current_version": "2.5"})
    assert load_embedded(str(bundle))["current_version"] == "2.5"
    (bundle / "pyi_selfupdate" / EMBEDDED_MARSHAL_NAME).write_bytes(b"\xff garbage")
    assert load_embedded(str(bundle))["current_version"] == "2.5"  # from the JSON
    (bundle / "pyi_selfupdate" / EMBEDDED_MARSHAL_NAME).unlink()
    assert load_embedded(str(bundle))["current_version"] == "2.5"


def test_public_names_resolve_lazily_and_completely(tmp_path):
    code = """
import json, sys
sys.frozen = True
import pyi_selfupdate
lazy = "pyi_selfupdate.updater" not in sys.modules and "logging" not in sys.modules
names = {n: getattr(pyi_selfupdate, n).__module__ for n in pyi_selfupdate.__all__}
from pyi_selfupdate import Updater, UpdateResult, restart, SelfUpdateError
print(json.dumps({"lazy": lazy, "names": names, "dir": dir(pyi_selfupdate),
                  "errors_mod": pyi_selfupdate.errors.__name__,
                  "same": Updater is pyi_selfupdate.updater.Updater}))
"""
    result = _python(code, tmp_path)
    assert result["lazy"]
    assert result["names"]["Updater"] == "pyi_selfupdate.updater"
    assert result["names"]["restart"] == "pyi_selfupdate._restart"
    assert result["names"]["updater_from_config"] == "pyi_selfupdate._bootstrap"
    assert result["names"]["ConfigError"] == "pyi_selfupdate.errors"
    assert set(result["names"]) <= set(result["dir"])
    assert result["errors_mod"] == "pyi_selfupdate.errors"
    assert result["same"]
    import pyi_selfupdate

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        pyi_selfupdate.nope  # noqa: B018


def test_deferred_logger_drops_nothing_once_logging_is_imported(tmp_path):
    code = """
import json, sys
sys.frozen = True
from pyi_selfupdate._lazy import log
log.warning("before logging is imported")  # nothing could show it: dropped, no import
dropped_without_import = "logging" not in sys.modules
import logging
seen = []
class H(logging.Handler):
    def emit(self, record):
        seen.append(record.getMessage())
logging.getLogger().addHandler(H())
log.warning("after %s", "import")
handlers = [type(h).__name__ for h in logging.getLogger("pyi_selfupdate").handlers]
print(json.dumps({"dropped": dropped_without_import, "seen": seen, "handlers": handlers}))
"""
    result = _python(code, tmp_path)
    assert result["dropped"]
    assert result["seen"] == ["after import"]
    assert result["handlers"] == ["NullHandler"]  # the package's, attached once


def test_client_import_loads_what_an_install_needs(tmp_path):
    # After an install replaced a frozen app's executable nothing may be imported:
    # importing the client must load every module the launch path defers.
    code = """
import json, sys
sys.frozen = True
import pyi_selfupdate.updater
print(json.dumps({"missing": [m for m in ("base64", "datetime", "hashlib", "json", "random", "secrets", "logging",
                                        "bisect", "ctypes", "shutil", "pyi_selfupdate.archive")
                              if m not in sys.modules]}))
"""
    assert _python(code, tmp_path)["missing"] == []
