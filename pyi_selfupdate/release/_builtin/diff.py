"""Built-in release plugin: bsdiff patches against earlier releases.

Each patch is ``bsdiff4.diff(old, new)`` where ``old`` is the gunzipped
``<old>/<plat>.gz`` of an earlier release: byte-identical to the go-selfupdate
CLI's patches. The old ``.gz`` is decompressed as a stream, at most
``PatchJob.old_max_size`` bytes (a decompression bomb in the tree stops
there), and must hash to ``PatchJob.old_sha256`` when a verified manifest
gives it. Diffing a large binary takes seconds and a few hundred MB, so
the jobs run in a small pool of worker processes, each reading its own old
version: at most ``diff_workers`` old versions are in memory at once.
"""

from __future__ import annotations

import hashlib
import logging
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Iterator, Optional, Sequence, Tuple

import bsdiff4

from ...errors import ReleaseError
from ...settings import LIMITS
from .._model import Artifact, PatchJob, ReleaseContext, read_content
from .._tree import read_gz as _read_tree_gz
from ..hookspecs import hookimpl

log = logging.getLogger("pyi_selfupdate.release")

#: Default number of diff worker processes (the option ``diff_workers`` overrides it).
DEFAULT_WORKERS = 2


def read_gz(path: "os.PathLike[str] | str", max_size: int = 0, sha256: Optional[bytes] = None) -> bytes:
    """The decompressed bytes of an earlier release's ``.gz``: at most ``max_size``
    (0: ``LIMITS.binary_bytes``), hashing to ``sha256`` when given."""
    buf = bytearray()
    why = ("the size and SHA-256 its signed manifest gives" if sha256 is not None else
           "no verified manifest gives its size: at most the new release's size + LIMITS.release_base_slack")
    _read_tree_gz(Path(os.fspath(path)), max_size=max_size or LIMITS.binary_bytes, sha256=sha256,
                  write=buf.extend, why=why)
    return bytes(buf)


def diff_one(old_gz: str, new_path: str, new_sha256: bytes, old_max_size: int = 0,
             old_sha256: Optional[bytes] = None) -> bytes:
    """One patch from the release in ``old_gz`` to ``new_path`` (worker entry point).

    ``new_path`` is the new executable, or the new app folder, whose canonical
    archive is diffed against the earlier archive (an earlier ``.gz`` holds it).
    """
    old = read_gz(old_gz, old_max_size, old_sha256)
    new = read_content(new_path)
    if hashlib.sha256(new).digest() != new_sha256:
        raise ReleaseError(
            f"{new_path} changed while it was being released; wait for the build to finish "
            "and run the release again"
        )
    return bsdiff4.diff(old, new)


def _workers(context: ReleaseContext, n_jobs: int) -> int:
    try:
        wanted = int(context.options.get("diff_workers", DEFAULT_WORKERS))
    except (TypeError, ValueError):
        wanted = DEFAULT_WORKERS
    return max(1, min(wanted, n_jobs, os.cpu_count() or 1))


def run_jobs(context: ReleaseContext, jobs: Sequence[PatchJob]) -> Iterator[Tuple[PatchJob, bytes]]:
    """Yield ``(job, patch)`` as each patch is done, in a process pool when useful."""
    workers = _workers(context, len(jobs))
    if workers == 1:
        for job in jobs:
            yield job, diff_one(str(job.old_gz), str(job.new_path), job.new_sha256,
                                job.old_max_size, job.old_sha256)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        pending = {
            pool.submit(diff_one, str(job.old_gz), str(job.new_path), job.new_sha256,
                        job.old_max_size, job.old_sha256): job
            for job in jobs
        }
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    job = pending.pop(fut)
                    yield job, fut.result()
        finally:
            for fut in pending:
                fut.cancel()


@hookimpl(trylast=True)
def release_diff(context: ReleaseContext, artifact: Artifact, jobs: Sequence[PatchJob]):
    """bsdiff4 patches, computed in worker processes."""
    return run_jobs(context, jobs)
