"""A launch restarts at most once: a replaced-file check that misfires cannot loop.

Under Wine with the Z: drive, /proc/self/exe resolved to Linux's and every
launch "was updated by another instance" and restarted, hundreds deep. Here the
check is made to misfire on purpose, in a fake frozen app.
"""

from __future__ import annotations

import json
import marshal
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _installed import python_env


def _fake_app(tmp_path: Path) -> Path:
    from pyi_selfupdate._buildconfig import dumps
    from pyi_selfupdate.settings import DEFAULTS, EMBEDDED_MARSHAL_NAME, EMBEDDED_NAME, MARSHAL_VERSION

    full = dict(DEFAULTS, api_url="http://127.0.0.1:9/", current_version="1.0")
    bundle = tmp_path / "_MEI"
    (bundle / "pyi_selfupdate").mkdir(parents=True)
    data = dumps(full)
    (bundle / "pyi_selfupdate" / EMBEDDED_NAME).write_bytes(data)
    (bundle / "pyi_selfupdate" / EMBEDDED_MARSHAL_NAME).write_bytes(
        marshal.dumps(json.loads(data), MARSHAL_VERSION))
    (tmp_path / "app" / "update").mkdir(parents=True)
    (tmp_path / "app" / "update" / "cktime").write_text("2099-01-01T00:00:00Z")
    exe = tmp_path / "app" / "textstat"
    exe.write_bytes(b"not really an executable")
    return bundle


@pytest.mark.parametrize("restarted", [False, True])
def test_a_misfiring_replaced_check_restarts_once_then_never(tmp_path, restarted):
    bundle = _fake_app(tmp_path)
    code = f"""
import json, os, sys
sys.frozen = True
sys._MEIPASS = {str(bundle)!r}
sys.executable = {str(tmp_path / "app" / "textstat")!r}
from pyi_selfupdate import _bootstrap, _instances
_instances.replaced_since_start = lambda target: True  # the misfire, at every launch
calls = []
_bootstrap.restart = lambda *a: calls.append(a)
_bootstrap.run()
print(json.dumps({{"restarts": len(calls), "marker": os.environ.get("PYI_SELFUPDATE_RESTARTED"),
                   "ignored": sorted(_instances._ignored)}}))
"""
    env = python_env({k: v for k, v in os.environ.items() if not k.startswith("PYI_SELFUPDATE")})
    if restarted:
        env["PYI_SELFUPDATE_RESTARTED"] = "777777,777776"
    env["PYI_SELFUPDATE_LOG"] = "info"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["marker"] is None  # read once, not inherited by the app's own children
    if restarted:
        assert result["restarts"] == 0
        assert result["ignored"] == [777776, 777777]
        assert "restarts at most once" in out.stderr
    else:
        assert result["restarts"] == 1
