"""Fixtures of the client tests: an installed "myapp" at some version, and its updater."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import pytest

from pyi_selfupdate import Updater

NEWEST = "1.4+meta"
PLAT = "linux-amd64"


def payload(go_vectors: Path, version: str) -> bytes:
    return (go_vectors / "payloads" / "single" / version).read_bytes()


@pytest.fixture
def install_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "app"
    folder.mkdir()
    return folder


@pytest.fixture
def make_app(install_dir: Path, go_vectors: Path) -> Callable[..., Path]:
    """``make_app(version, mode=0o755)``: write myapp holding that version's payload bytes."""

    def make(version: str, mode: int = 0o755) -> Path:
        target = install_dir / "myapp"
        target.write_bytes(payload(go_vectors, version))
        os.chmod(target, mode)
        return target

    return make


@pytest.fixture
def server(serve, go_tree: Path):
    """A ReleaseServer on 127.0.0.1 serving a writable copy of the Go CLI's public/ tree."""
    return serve(go_tree)


@pytest.fixture
def updater_for(server) -> Callable[..., Updater]:
    """``updater_for(target, version, **overrides)``: an Updater pointed at ``server``."""

    def make(target: Path, version: str, **kwargs) -> Updater:
        options = dict(
            current_version=version,
            api_url=server.url,
            cmd_name="myapp",
            platform=PLAT,
            target=target,
        )
        options.update(kwargs)
        return Updater(**options)

    return make


@pytest.fixture
def leftovers() -> Callable[[Path], set]:
    """``leftovers(folder)``: names beside myapp other than it, its lock file and update/."""

    def names(folder: Path) -> set:
        return {p.name for p in folder.iterdir()} - {"myapp", ".myapp.lock", "update"}

    return names


@pytest.fixture
def payload_of(go_vectors: Path) -> Callable[[str], bytes]:
    """``payload_of(version)``: the bytes of ``payloads/single/<version>``."""
    return lambda version: payload(go_vectors, version)
