"""Built-in release plugin: the gzipped full binary, ``<version>/<plat>.gz``."""

from __future__ import annotations

import gzip

from .._model import Artifact, ReleaseContext
from ..hookspecs import hookimpl


def gzip_bytes(data: bytes) -> bytes:
    """gzip ``data`` at level 9 with no file name and a zero timestamp (reproducible)."""
    return gzip.compress(data, compresslevel=9, mtime=0)


@hookimpl(trylast=True)
def release_compress(context: ReleaseContext, artifact: Artifact, data: bytes) -> bytes:
    """gzip the full binary (any gzip stream works for go-selfupdate clients)."""
    return gzip_bytes(data)
