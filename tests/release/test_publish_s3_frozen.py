"""End to end: the frozen example_app, built with the bucket's URL, updates from a release published to S3.

One build of its own (textstat 1.0 whose ``api_url`` is the moto bucket's
path-style URL); 1.1 is the e2e tier's ``app_v2`` build, same inputs, so the
session's build cache serves it when the e2e tier runs too. The frozen
fixture marks the test e2e.
"""

from __future__ import annotations

import shutil
import subprocess
import sys

from _apps import APP_SRC, NAME, V1, V2, run_app, staged_files
from _installed import python_env


def _build(frozen, api_url: str, version: str, core_version: str = V1):
    env = {"PYI_SELFUPDATE_API_URL": api_url, "PYI_SELFUPDATE_CHECK_TIME": "0",
           "PYI_SELFUPDATE_EXIT_WAIT": "60", "PYI_SELFUPDATE_CURRENT_VERSION": version}
    files = {}
    if core_version != V1:
        core = (APP_SRC / "textstat_core.py").read_text()
        files["textstat_core.py"] = core.replace(f'__version__ = "{V1}"', f'__version__ = "{core_version}"')
    return frozen.build(APP_SRC, "textstat.py", name=NAME, env=env, files=files)


def test_the_frozen_app_built_with_the_bucket_url_updates_from_it(frozen, app_port, moto_s3, tmp_path):
    bucket = moto_s3.new_bucket()
    v1 = _build(frozen, f"{moto_s3.endpoint}/{bucket}/", V1)
    v2 = _build(frozen, f"http://127.0.0.1:{app_port}/", V2, core_version=V2)  # = the e2e tier's app_v2
    out = tmp_path / "public"
    for exe, version in ((v1, V1), (v2, V2)):
        proc = subprocess.run([sys.executable, "-m", "pyi_selfupdate", "release", "-o", str(out), str(exe), version,
                               "--publish", f"s3://{bucket}", "--endpoint-url", moto_s3.endpoint],
                              env=python_env(), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
    assert "uploaded 3 file(s)" in proc.stdout  # 1.1's .gz, the patch, the manifest
    shutil.rmtree(out)  # the bucket alone serves the app

    exe = tmp_path / "installed" / NAME
    exe.parent.mkdir()
    shutil.copy2(v1, exe)
    first = run_app(exe, "--version")
    assert (first.returncode, first.stdout) == (0, f"textstat {V1}\n"), first.stderr
    assert staged_files(exe) == [f".{NAME}.staged", f".{NAME}.staged.json"], first.stderr
    second = run_app(exe, "--version")
    assert (second.returncode, second.stdout) == (0, f"textstat {V2}\n"), second.stderr
    assert "installed staged update 1.0 -> 1.1" in second.stderr
    assert exe.read_bytes() == v2.read_bytes()
