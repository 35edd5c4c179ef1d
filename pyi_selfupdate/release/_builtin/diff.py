"""Built-in release plugin: BSDIFF40 patches against earlier releases.

``old`` is the gunzipped ``<old>/<plat>.gz`` of an earlier release. Two
generators (option ``diff``, ``--diff``): ``fast`` (the default,
:mod:`.._syncdiff`: identical runs found first, ``bsdiff4`` only between them;
each patch is applied once before it is kept, and must rebuild the new bytes)
and ``bsdiff4`` (``bsdiff4.diff(old, new)`` over the whole file,
byte-identical to the go-selfupdate CLI's patches; seconds and 17x the size in
memory for an 18 MB app, hours for 450 MB). Both write BSDIFF40, which
``bsdiff4.patch``, ``bspatch`` and Go clients apply. The old ``.gz`` is decompressed as a stream, at most
``PatchJob.old_max_size`` bytes (a decompression bomb in the tree stops
there), and must hash to ``PatchJob.old_sha256`` when a verified manifest
gives it. Diffing a large binary takes seconds and a few hundred MB, so
the jobs run in a small pool of worker processes, each reading its own old
version: at most ``diff_workers`` old versions are in memory at once.
"""

from __future__ import annotations

import hashlib
import io
import logging
import multiprocessing
import os
import queue
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, Tuple

import bsdiff4

from ...errors import ReleaseError
from ...settings import LIMITS
from .. import _syncdiff
from .._model import Artifact, PatchJob, ReleaseContext, human_size, read_content
from .._tree import read_gz as _read_tree_gz
from ..hookspecs import hookimpl

log = logging.getLogger("pyi_selfupdate.release")

#: Default number of diff worker processes (the option ``diff_workers``, ``--jobs``, overrides it).
DEFAULT_WORKERS = 2
#: The patch generators (option ``diff``); the first is the default.
GENERATORS = ("fast", "bsdiff4")

#: In a worker process: where progress ``(old_version, done, total)`` goes (set by the pool).
_progress_queue: Any = None


def _init_worker(q: Any) -> None:
    global _progress_queue
    _progress_queue = q


def read_gz(path: "os.PathLike[str] | str", max_size: int = 0, sha256: Optional[bytes] = None) -> bytes:
    """The decompressed bytes of an earlier release's ``.gz``: at most ``max_size``
    (0: ``LIMITS.binary_bytes``), hashing to ``sha256`` when given."""
    buf = io.BytesIO()  # getvalue() hands over its buffer: the release is held once, not twice
    why = ("the size and SHA-256 its signed manifest gives" if sha256 is not None else
           "no verified manifest gives its size: at most the new release's size + LIMITS.release_base_slack")
    _read_tree_gz(Path(os.fspath(path)), max_size=max_size or LIMITS.binary_bytes, sha256=sha256,
                  write=buf.write, why=why)
    return buf.getvalue()


def _verify(old: bytes, patch: bytes, new_sha256: bytes, new_size: int) -> None:
    """Apply ``patch`` to ``old`` as a client does (streamed) and check it rebuilds the new bytes."""
    from ..._patch import patch_stream

    h = hashlib.sha256()
    patch_stream(lambda at, n: old[at:at + n], len(old), patch, h.update, max_new_size=new_size)
    if h.digest() != new_sha256:  # a generator bug: never published
        raise ReleaseError(
            "the fast patch generator made a patch that does not rebuild the new release; "
            "release again with --diff bsdiff4, and report the bug"
        )


def diff_one(old_gz: str, new_path: str, new_sha256: bytes, old_max_size: int = 0,
             old_sha256: Optional[bytes] = None, generator: str = GENERATORS[0],
             label: str = "", progress: Optional[Callable[[str, int, int], None]] = None) -> bytes:
    """One patch from the release in ``old_gz`` to ``new_path`` (worker entry point).

    ``new_path`` is the new executable, or the new app folder, whose canonical
    archive is diffed against the earlier archive (an earlier ``.gz`` holds it).
    ``generator`` is one of :data:`GENERATORS`; ``progress(label, done, total)``
    hears the new bytes matched so far (in a worker: sent to the pool's queue).
    """
    old = read_gz(old_gz, old_max_size, old_sha256)
    new = read_content(new_path)
    if hashlib.sha256(new).digest() != new_sha256:
        raise ReleaseError(
            f"{new_path} changed while it was being released; wait for the build to finish "
            "and run the release again"
        )
    if generator == "bsdiff4":
        return bsdiff4.diff(old, new)
    q = _progress_queue

    def report(done: int, total: int) -> None:
        if progress is not None:
            progress(label, done, total)
        elif q is not None:
            q.put((label, done, total))

    patch = _syncdiff.diff(old, new, report)
    _verify(old, patch, new_sha256, len(new))
    return patch


def _workers(context: ReleaseContext, n_jobs: int) -> int:
    """Worker processes to start; 0: diff in this process (``--jobs 1``)."""
    try:
        wanted = int(context.options.get("diff_workers", DEFAULT_WORKERS))
    except (TypeError, ValueError):
        wanted = DEFAULT_WORKERS
    if wanted <= 1:
        return 0
    return max(1, min(wanted, n_jobs, os.cpu_count() or 1))


def generator(context: ReleaseContext) -> str:
    """The patch generator the options ask for (``diff``); ReleaseError for an unknown one."""
    name = context.options.get("diff") or GENERATORS[0]
    if name not in GENERATORS:
        raise ReleaseError(f"there is no patch generator {name!r}; use --diff {' or --diff '.join(GENERATORS)}")
    return str(name)


def _plan(context: ReleaseContext, jobs: Sequence[PatchJob], new_size: int, workers: int, gen: str) -> None:
    """Log the memory plan: what one diff holds and what the pool holds at most."""
    # an earlier release's size is known when signed; otherwise taken as the new one's
    olds = [j.old_max_size if j.old_sha256 is not None and j.old_max_size else new_size for j in jobs]
    each = max((_syncdiff.memory_estimate(o, new_size) if gen == "fast" else 17 * o + new_size)
               for o in olds)
    log.info(
        "diff memory plan: %d patch(es) with %s, %d worker process(es) (0: in this process); each diff "
        "holds about %s "
        "(%s), so at most about %s at once (--jobs N changes the number of workers)",
        len(jobs), gen, workers, human_size(each),
        "old + new + index + one gap's bsdiff4" if gen == "fast" else "bsdiff4: 17x old + new",
        human_size(each * max(workers, 1)),
    )


class _Progress:
    """``progress(label, done, total)`` lines for the CLI, at most one per job every 2 s."""

    def __init__(self, context: ReleaseContext) -> None:
        self.context = context
        self.last: dict = {}

    def __call__(self, label: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self.last.get(label, 0.0) < 2.0:
            return
        self.last[label] = now
        self.context.report(f"diffing {label}: {human_size(done)} of {human_size(total)} matched "
                            f"({done / max(total, 1):.0%})")


def run_jobs(context: ReleaseContext, jobs: Sequence[PatchJob],
             new_size: int = 0) -> Iterable[Tuple[PatchJob, bytes]]:
    """``(job, patch)`` as each patch is done, in a process pool when useful (started at once:
    it works while the caller compresses the release)."""
    workers = _workers(context, len(jobs))
    gen = generator(context)
    progress = _Progress(context)
    if jobs:
        _plan(context, jobs, new_size or 1, workers, gen)

    def args(job: PatchJob) -> tuple:
        label = f"{job.old_version} -> {job.relpath.split('/')[-2]}"
        return (str(job.old_gz), str(job.new_path), job.new_sha256, job.old_max_size, job.old_sha256,
                gen, label)

    if workers == 0:  # in this process, when iterated
        return (
            (job, diff_one(*args(job), progress=progress)) for job in jobs
        )
    return _Pool(workers, [(job, args(job)) for job in jobs], progress)


class _Pool:
    """Patches computed by worker processes, started at once; iterate for ``(job, patch)`` as each is
    done; ``close()`` stops the workers (also when never iterated)."""

    def __init__(self, workers: int, work: list, progress: _Progress) -> None:
        self.queue = multiprocessing.get_context().Queue()
        self.pool = ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(self.queue,))
        self.progress = progress
        self.pending = {self.pool.submit(diff_one, *a): job for job, a in work}

    def __iter__(self) -> Iterator[Tuple[PatchJob, bytes]]:
        try:
            while self.pending:
                done, _ = wait(self.pending, timeout=0.5, return_when=FIRST_COMPLETED)
                _drain(self.queue, self.progress)
                for fut in done:
                    job = self.pending.pop(fut)
                    yield job, fut.result()
        finally:
            self.close()

    def close(self) -> None:
        for fut in self.pending:
            fut.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.queue.close()


def _drain(q: Any, progress: _Progress) -> None:
    while True:
        try:
            label, done, total = q.get_nowait()
        except queue.Empty:
            return
        progress(label, done, total)


@hookimpl
def release_prepare(context: ReleaseContext) -> None:
    """Refuse an unknown ``--diff`` before anything is written."""
    generator(context)


@hookimpl(trylast=True)
def release_diff(context: ReleaseContext, artifact: Artifact, jobs: Sequence[PatchJob]):
    """BSDIFF40 patches, computed in worker processes."""
    return run_jobs(context, jobs, artifact.size)
