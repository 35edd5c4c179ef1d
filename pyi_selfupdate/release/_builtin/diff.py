"""Built-in release plugin: bsdiff patches against earlier releases.

Each patch is ``bsdiff4.diff(old, new)`` where ``old`` is the gunzipped
``<old>/<plat>.gz`` of an earlier release: byte-identical to the go-selfupdate
CLI's patches. Diffing a large binary takes seconds and a few hundred MB, so
the jobs run in a small pool of worker processes, each reading its own old
version: at most ``diff_workers`` old versions are in memory at once.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Iterator, Sequence, Tuple

import bsdiff4

from ...errors import ReleaseError
from .._model import Artifact, PatchJob, ReleaseContext, read_content
from ..hookspecs import hookimpl

log = logging.getLogger("pyi_selfupdate.release")

#: Default number of diff worker processes (the option ``diff_workers`` overrides it).
DEFAULT_WORKERS = 2


def read_gz(path: "os.PathLike[str] | str") -> bytes:
    """The decompressed bytes of an earlier release's ``.gz``."""
    try:
        with gzip.open(path, "rb") as fh:
            return fh.read()
    except (OSError, EOFError) as exc:
        raise ReleaseError(
            f"cannot read the earlier release {os.fspath(path)} ({exc}); it is not a valid "
            "gzip file: restore it or remove that version's folder"
        ) from None


def diff_one(old_gz: str, new_path: str, new_sha256: bytes) -> bytes:
    """One patch from the release in ``old_gz`` to ``new_path`` (worker entry point).

    ``new_path`` is the new executable, or the new app folder, whose canonical
    archive is diffed against the earlier archive (an earlier ``.gz`` holds it).
    """
    old = read_gz(old_gz)
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
            yield job, diff_one(str(job.old_gz), str(job.new_path), job.new_sha256)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        pending = {
            pool.submit(diff_one, str(job.old_gz), str(job.new_path), job.new_sha256): job
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
