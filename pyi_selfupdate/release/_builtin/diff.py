"""Built-in release plugin: BSDIFF40 patches against earlier releases.

``old`` is the gunzipped ``<old>/<plat>.gz`` of an earlier release. Two
generators (option ``diff``, ``--diff``): ``fast`` (the default,
:mod:`.._syncdiff`: identical runs found first, ``bsdiff4`` only between them;
each patch is applied once before it is kept, and must rebuild the new bytes)
and ``bsdiff4`` (``bsdiff4.diff(old, new)`` over the whole file,
byte-identical to the go-selfupdate CLI's patches; seconds and 17x the size in
memory for an 18 MB app, hours for 450 MB). Both write BSDIFF40, which
``bsdiff4.patch``, ``bspatch`` and Go clients apply.

The old ``.gz`` is decompressed as a stream into an anonymous temporary file
(``TMPDIR``: on a tmpfs that is memory, so point ``TMPDIR`` at a disk for
large apps), at most ``PatchJob.old_max_size`` bytes (a decompression bomb in
the tree stops there), and must hash to ``PatchJob.old_sha256`` when a
verified manifest gives it. The fast generator and the check read it where
they look; only ``--diff bsdiff4`` loads it whole. The new release is read
once and shared. Patches are computed by ``diff_workers`` threads (``--jobs``)
in the release's process, beside the compression of the ``.gz``, with nothing
held twice: bsdiff4, bzip2, zlib, SHA-256 and the comparisons release the GIL
(the fast generator's planning loop over unmatched bytes does not, so two
plannings take turns). Progress is reported from the caller's thread; a
release that stops (an error, Ctrl-C) stops its diffs at their next check,
except a ``--diff bsdiff4`` diff, which runs to its end.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import queue
import tempfile
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, Optional, Sequence, Tuple

import bsdiff4

from ...errors import ReleaseError
from ...settings import LIMITS
from .. import _syncdiff
from .._model import Artifact, PatchJob, ReleaseContext, human_size, read_checked
from .._tree import read_gz as _read_tree_gz
from ..hookspecs import hookimpl

log = logging.getLogger("pyi_selfupdate.release")

#: Default number of patches computed at once (the option ``diff_workers``, ``--jobs``, overrides it).
DEFAULT_WORKERS = 2
#: The patch generators (option ``diff``); the first is the default.
GENERATORS = ("fast", "bsdiff4")

#: The check applies a patch in pieces of this size (it holds about four).
_VERIFY_CHUNK = 1 << 18


def _stream_old(path: "os.PathLike[str] | str", max_size: int, sha256: Optional[bytes],
                write: Callable[[bytes], object]) -> int:
    """Decompress an earlier release's ``.gz`` into ``write``; its size. At most ``max_size``
    (0: ``LIMITS.binary_bytes``), hashing to ``sha256`` when given."""
    size, _ = _read_tree_gz(
        Path(os.fspath(path)), max_size=max_size or LIMITS.binary_bytes, sha256=sha256, write=write,
        why="" if sha256 is not None else
        "no verified manifest gives its size: at most the new release's size + LIMITS.release_base_slack")
    return size


def read_gz(path: "os.PathLike[str] | str", max_size: int = 0, sha256: Optional[bytes] = None) -> bytes:
    """The decompressed bytes of an earlier release's ``.gz``: at most ``max_size``
    (0: ``LIMITS.binary_bytes``), hashing to ``sha256`` when given."""
    buf = io.BytesIO()  # getvalue() hands over its buffer: the release is held once, not twice
    _stream_old(path, max_size, sha256, buf.write)
    return buf.getvalue()


def _verify(old: "_syncdiff.Data", patch: bytes, new_sha256: bytes, new_size: int,
            check: Optional[Callable[[], None]] = None) -> None:
    """Apply ``patch`` to ``old`` as a client does (streamed) and check it rebuilds the new bytes."""
    from ..._patch import patch_stream

    h = hashlib.sha256()
    patch_stream(lambda at, n: old[at:at + n], len(old), patch, h.update, max_new_size=new_size,
                 chunk=_VERIFY_CHUNK, check=check)
    if h.digest() != new_sha256:  # a generator bug: never published
        raise ReleaseError(
            "the fast patch generator made a patch that does not rebuild the new release; "
            "release again with --diff bsdiff4, and report the bug"
        )


def read_new(job: PatchJob) -> bytes:
    """The new release's bytes for ``job``: the ones the pipeline holds, else read and checked."""
    return job.new_content if job.new_content is not None else read_checked(job.new_path, job.new_sha256)


def diff_one(job: PatchJob, new: bytes, generator: str = GENERATORS[0],
             progress: Optional[Callable[[int, int], None]] = None,
             check: Optional[Callable[[], None]] = None) -> bytes:
    """One patch from the release in ``job.old_gz`` to ``new`` (the new executable's bytes, or
    the new app folder's canonical archive; an earlier ``.gz`` holds the same form).

    ``generator`` is one of :data:`GENERATORS`; ``progress(done, total)`` hears
    the new bytes matched so far; ``check()`` is called between steps. Either
    may raise to stop.
    """
    def write(chunk: bytes) -> None:
        if check is not None:
            check()
        tmp.write(chunk)

    with tempfile.TemporaryFile(prefix="pyi-selfupdate-old-") as tmp:
        size = _stream_old(job.old_gz, job.old_max_size, job.old_sha256, write)
        tmp.flush()
        old = _syncdiff.FileView(tmp.fileno(), size)
        if generator == "bsdiff4":
            return bsdiff4.diff(old[0:size], new)
        patch = _syncdiff.diff(old, new, progress, check)
        _verify(old, patch, job.new_sha256, len(new), check)
        return patch


def _workers(context: ReleaseContext, n_jobs: int) -> int:
    """Patches computed at once, in threads; 0: one at a time, in the caller's thread, when
    iterated (``--jobs 1``)."""
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


def _plan(jobs: Sequence[PatchJob], new_size: int, workers: int, gen: str) -> None:
    """Log the memory plan: what one diff holds and what the diffs hold at most."""
    # an earlier release's size is known when signed; otherwise taken as the new one's
    olds = [j.old_max_size if j.old_sha256 is not None and j.old_max_size else new_size for j in jobs]
    each = max((_syncdiff.memory_estimate(o, new_size) if gen == "fast" else 17 * o + new_size)
               for o in olds)
    log.info(
        "diff memory plan: %d patch(es) with %s, %d at once; the new release (%s) is held once, each "
        "diff adds about %s (%s), so about %s in all (--jobs N changes how many run at once)",
        len(jobs), gen, max(workers, 1), human_size(new_size), human_size(each),
        "index + one gap's bsdiff4 + compressors; the old release is read from a temporary file"
        if gen == "fast" else "bsdiff4: 17x old + new",
        human_size(new_size + each * max(workers, 1)),
    )


class _Stopped(Exception):
    """Raised in a diff thread when the release stops."""


class _Progress:
    """``progress(label, done, total)`` lines for the CLI, at most one per job every 2 s, reported
    from the thread that created it (diff threads queue theirs: :meth:`drain`); ``check()`` raises
    in a diff thread once the release stops."""

    def __init__(self, context: ReleaseContext) -> None:
        self.context = context
        self.last: Dict[str, float] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.owner = threading.get_ident()
        self.queued: "queue.SimpleQueue[str]" = queue.SimpleQueue()

    def check(self) -> None:
        if self.stop.is_set():
            raise _Stopped()

    def __call__(self, label: str, done: int, total: int) -> None:
        self.check()
        now = time.monotonic()
        with self.lock:
            if done < total and now - self.last.get(label, 0.0) < 2.0:
                return
            self.last[label] = now
        line = f"diffing {label}: {human_size(done)} of {human_size(total)} matched ({done / max(total, 1):.0%})"
        if threading.get_ident() == self.owner:
            self.context.report(line)
        else:
            self.queued.put(line)

    def drain(self) -> None:
        """Report the lines the diff threads queued."""
        while True:
            try:
                line = self.queued.get_nowait()
            except queue.Empty:
                return
            self.context.report(line)


def run_jobs(context: ReleaseContext, jobs: Sequence[PatchJob],
             new_size: int = 0) -> Iterable[Tuple[PatchJob, bytes]]:
    """``(job, patch)`` as each patch is done, by threads started at once (they work while the
    caller compresses the release); with ``--jobs 1``, one at a time when iterated."""
    workers = _workers(context, len(jobs))
    gen = generator(context)
    progress = _Progress(context)
    if not jobs:
        return ()
    _plan(jobs, new_size or 1, workers, gen)
    new = read_new(jobs[0])  # every job of an artifact diffs to the same bytes: read once

    def one(job: PatchJob) -> bytes:
        label = f"{job.old_version} -> {job.relpath.split('/')[-2]}"
        return diff_one(job, new, gen, lambda done, total: progress(label, done, total), progress.check)

    if workers == 0:  # in this thread, when iterated
        return ((job, one(job)) for job in jobs)
    return _Pool(workers, jobs, one, progress)


class _Pool:
    """Patches computed by threads, started at once; iterate for ``(job, patch)`` as each is done;
    ``close()`` stops the diffs (also when never iterated)."""

    def __init__(self, workers: int, jobs: Sequence[PatchJob], one: Callable[[PatchJob], bytes],
                 progress: _Progress) -> None:
        self.progress = progress
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pyi-selfupdate-diff")
        self.pending: Dict[Future, PatchJob] = {self.pool.submit(one, job): job for job in jobs}

    def __iter__(self) -> Iterator[Tuple[PatchJob, bytes]]:
        try:
            while self.pending:
                done, _ = wait(self.pending, timeout=0.5, return_when=FIRST_COMPLETED)
                self.progress.drain()
                for fut in done:
                    job = self.pending.pop(fut)
                    yield job, fut.result()
        finally:
            self.close()

    def close(self) -> None:
        """Cancel the diffs not started, stop the running ones at their next progress report, and
        wait for them."""
        self.progress.stop.set()
        for fut in self.pending:
            fut.cancel()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.progress.drain()


@hookimpl
def release_prepare(context: ReleaseContext) -> None:
    """Refuse an unknown ``--diff`` before anything is written."""
    generator(context)


@hookimpl(trylast=True)
def release_diff(context: ReleaseContext, artifact: Artifact, jobs: Sequence[PatchJob]):
    """BSDIFF40 patches, computed by threads."""
    return run_jobs(context, jobs, artifact.size)
