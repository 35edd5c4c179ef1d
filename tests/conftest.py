from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from _server import ReleaseServer  # tests/ is on sys.path: pytest's ``pythonpath`` (pyproject.toml)

REPO = Path(__file__).resolve().parent.parent
#: payloads/ and public/ written by the go-selfupdate CLI itself (see its README.md).
VECTORS = Path(__file__).resolve().parent / "vectors" / "go-selfupdate"


def _expected_package_dir() -> Path:
    """The pyi_selfupdate this interpreter has installed: site-packages, or the checkout if editable."""
    import sysconfig
    from importlib import metadata
    from urllib.parse import unquote, urlsplit

    # Only the interpreter's own site-packages: an egg-info in the current folder is not installed.
    site = list(dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib")))
    dist = next(iter(metadata.distributions(name="pyi-selfupdate", path=site)), None)
    if dist is None:
        raise pytest.UsageError(
            f"pyi-selfupdate is not installed in {sys.executable}: the tests exercise the installed "
            "package (its PyInstaller hooks exist only there). Run them with `make test`."
        )
    direct = json.loads(dist.read_text("direct_url.json") or "{}")
    if direct.get("dir_info", {}).get("editable"):
        return Path(unquote(urlsplit(direct["url"]).path)).resolve() / "pyi_selfupdate"
    return Path(dist.locate_file("pyi_selfupdate/__init__.py")).resolve().parent


def pytest_sessionstart(session) -> None:
    """One pyi_selfupdate per run: the installed one, and no other copy importable beside it.

    A source tree on ``sys.path`` (e.g. ``python -m pytest`` from the checkout
    puts the current folder first) would shadow the installed package, or be
    importable beside it: the tests would then test something other than what
    is installed, and child processes something else again.
    """
    expected = _expected_package_dir()
    import pyi_selfupdate

    actual = Path(pyi_selfupdate.__file__).resolve().parent
    others = []
    for entry in sys.path:
        candidate = Path(entry or os.getcwd()) / "pyi_selfupdate" / "__init__.py"
        if candidate.is_file() and candidate.resolve().parent != expected:
            others.append(str(candidate.resolve().parent))
    if actual != expected or others:
        raise pytest.UsageError(
            "two copies of pyi_selfupdate: this run imports "
            f"{actual}, the installed one is {expected}"
            + (f"; also importable: {', '.join(dict.fromkeys(others))}" if others else "")
            + ". Run the tests with `make test` (or .venv/bin/pytest), not `python -m pytest` "
            "from the checkout, and do not put the source tree on PYTHONPATH."
        )


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(items) -> None:
    """Every test that builds a frozen app (the ``frozen`` fixture, directly or not) is ``e2e``."""
    for item in items:
        if "frozen" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def app_port() -> int:
    """One free port per session, embedded in every example_app build of the session.

    The end-to-end and fault suites build example_app with the same inputs, so
    the session-wide build cache builds each version once for both.
    """
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def go_vectors() -> Path:
    """``tests/vectors/go-selfupdate``: payloads/ and public/ written by the Go CLI."""
    assert (VECTORS / "payloads").is_dir() and (VECTORS / "public").is_dir(), VECTORS
    return VECTORS


@pytest.fixture
def serve():
    """``serve(root)`` starts a ReleaseServer on 127.0.0.1 for ``root``; stopped after the test."""
    servers = []

    def start(root: Path) -> ReleaseServer:
        server = ReleaseServer(Path(root))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


@pytest.fixture
def go_tree(tmp_path: Path, go_vectors: Path) -> Path:
    """A writable copy of the Go CLI's public/ tree."""
    dest = tmp_path / "public"
    shutil.copytree(go_vectors / "public", dest)
    return dest


@pytest.fixture(scope="session")
def frozen(tmp_path_factory):
    """Session-wide FrozenBuilder: ``frozen.build(src_dir, "app.py", name=...)`` builds once."""
    from _frozen import FrozenBuilder

    builder = FrozenBuilder(tmp_path_factory.mktemp("frozen"))
    yield builder
    builder.close()
