"""Session fixtures for the end-to-end tests: real frozen textstat builds, a real release tree.

Every build embeds ``api_url = http://127.0.0.1:<P>/`` for one free port P picked
per session; each test serves its own copy of the release tree on that port
(``serve_app``). Builds check at every launch (``check_time = 0``) and wait up
to 60 s at exit for a background download.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from _apps import APP_SRC, NAME, V1, V2, release  # noqa: E402
from _server import ReleaseServer  # noqa: E402

# (pytestmark has no effect in a conftest: tests/conftest.py marks every test
# using these builds, i.e. the ``frozen`` fixture, e2e.)


def _build(frozen, port: int, *, version: str = V1, extra_env: Optional[Dict[str, str]] = None,
           core_version: str = V1, start: bool = False) -> Path:
    env = {
        "PYI_SELFUPDATE_API_URL": f"http://127.0.0.1:{port}/",
        "PYI_SELFUPDATE_CHECK_TIME": "0",
        "PYI_SELFUPDATE_EXIT_WAIT": "60",
        "PYI_SELFUPDATE_CURRENT_VERSION": version,
    }
    env.update(extra_env or {})
    files = {}
    if core_version != V1:  # the one module that changes between releases
        core = (APP_SRC / "textstat_core.py").read_text()
        files["textstat_core.py"] = core.replace(f'__version__ = "{V1}"', f'__version__ = "{core_version}"')
    return (frozen.prefetch if start else frozen.build)(APP_SRC, "textstat.py", name=NAME, env=env, files=files)


#: The builds of the fixtures below, by fixture name.
_VARIANTS = {
    "app_v1": dict(),
    "app_v2": dict(version=V2, core_version=V2),
    "app_dev": dict(version="dev"),
    "app_immediate": dict(extra_env={"PYI_SELFUPDATE_MODE": "immediate"}),
    # as shipped: a check a day, at most 10 s at exit
    "app_daily": dict(extra_env={"PYI_SELFUPDATE_CHECK_TIME": "24", "PYI_SELFUPDATE_EXIT_WAIT": "10"}),
}


@pytest.fixture(scope="session")
def _builds_started(frozen, app_port, request) -> None:
    """Start the builds the selected tests use, side by side, before the first one is needed."""
    wanted = set()
    for item in request.session.items:
        wanted |= set(getattr(item, "fixturenames", ())) & set(_VARIANTS)
    for name, inputs in _VARIANTS.items():
        if name in wanted:
            _build(frozen, app_port, start=True, **inputs)


@pytest.fixture(scope="session")
def app_v1(frozen, app_port, _builds_started) -> Path:
    """textstat 1.0, background mode."""
    return _build(frozen, app_port, **_VARIANTS["app_v1"])


@pytest.fixture(scope="session")
def app_v2(frozen, app_port, _builds_started) -> Path:
    """textstat 1.1 (textstat_core.py changed), background mode."""
    return _build(frozen, app_port, **_VARIANTS["app_v2"])


@pytest.fixture(scope="session")
def app_dev(frozen, app_port, _builds_started) -> Path:
    """textstat built as version ``dev``: never updates."""
    return _build(frozen, app_port, **_VARIANTS["app_dev"])


@pytest.fixture(scope="session")
def app_immediate(frozen, app_port, _builds_started) -> Path:
    """textstat 1.0 with ``mode = "immediate"``."""
    return _build(frozen, app_port, **_VARIANTS["app_immediate"])


@pytest.fixture(scope="session")
def app_daily(frozen, app_port, _builds_started) -> Path:
    """textstat 1.0 with the shipped schedule: ``check_time = 24``, ``exit_wait = 10``."""
    return _build(frozen, app_port, **_VARIANTS["app_daily"])


@pytest.fixture(scope="session")
def tree_v1(tmp_path_factory, app_v1) -> Path:
    """A release tree holding textstat 1.0 only (no update for 1.0)."""
    public = tmp_path_factory.mktemp("tree_v1") / "public"
    release(public, app_v1, V1)
    return public


@pytest.fixture(scope="session")
def tree_v2(tmp_path_factory, app_v1, app_v2) -> Path:
    """A release tree holding 1.0 then 1.1: manifest 1.1, 1.1's .gz, the patch 1.0 -> 1.1."""
    public = tmp_path_factory.mktemp("tree_v2") / "public"
    release(public, app_v1, V1)
    release(public, app_v2, V2)
    return public


@pytest.fixture
def copy_tree(tmp_path):
    """``copy_tree(tree)``: a per-test writable copy of a session release tree."""

    def copy(tree: Path) -> Path:
        dest = tmp_path / "public"
        shutil.copytree(tree, dest)
        return dest

    return copy


@pytest.fixture
def serve_app(app_port):
    """``serve_app(root)``: a ReleaseServer for ``root`` on the port the builds embed."""
    servers: List[ReleaseServer] = []

    def start(root: Path) -> ReleaseServer:
        server = ReleaseServer(Path(root), port=app_port)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def install(tmp_path):
    """``install(exe)``: copy a build into a fresh folder, as a user installs it; returns the path."""

    def do(exe: Path, folder: str = "installed") -> Path:
        dest = tmp_path / folder
        dest.mkdir(exist_ok=True)
        target = dest / NAME
        shutil.copy2(exe, target)
        return target

    return do
