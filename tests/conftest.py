from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/_server.py and friends

from _server import ReleaseServer  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


#: payloads/ and public/ written by the go-selfupdate CLI itself (see its README.md).
VECTORS = Path(__file__).resolve().parent / "vectors" / "go-selfupdate"


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

    return FrozenBuilder(tmp_path_factory.mktemp("frozen"))
