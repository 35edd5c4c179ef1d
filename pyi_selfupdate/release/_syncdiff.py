"""A fast BSDIFF40 generator for large inputs: identical runs found by anchors, bsdiff4 on the rest.

``bsdiff4.diff`` suffix-sorts the whole old file (O(n log n) time, about 17n
bytes of memory): 5 s and 350 MB for an 18 MB app, hours for 450 MB. Between
two builds of one app most bytes are identical runs, merely shifted where a
member grew or shrank. :func:`diff` finds those runs first and runs
``bsdiff4.diff`` only on what lies between them, old and new gaps of a bounded
size, then stitches everything into one ordinary BSDIFF40 patch (one control,
one diff, one extra bzip2 block), which ``bsdiff4.patch``, Debian's
``bspatch`` and Go clients apply unchanged.

How runs are found, all in C except one loop over the bytes no run covers:

- an index of the old file: its ``_KEY``-byte strings at every ``_STRIDE``-th
  offset (a few hundred KB for 300 MB);
- walking the new file: where the last run ended, the same offset shift is
  tried first (a changed byte in place), then each following position is
  looked up in the index; a hit is extended both ways with slice comparisons
  (memcmp), and kept if it is at least ``_MIN_RUN`` bytes;
- a run is extended forward in doubling blocks, so an identical megabyte
  costs a few comparisons.

Memory: the new file, the index (about 120 bytes per ``_STRIDE`` old bytes),
one gap's ``bsdiff4`` (at most ``_MAX_GAP`` new bytes against
``_MAX_GAP_OLD`` old ones, about 17 x 4 MiB at worst) and the bzip2
compressors. The old file may be a :class:`FileView`: it is then read where
the diff looks, a window at a time, and never held. Inputs of at most
:data:`SMALL` bytes go to ``bsdiff4.diff`` whole: their patches are the
reference ones, byte for byte.
"""

from __future__ import annotations

import bz2
import os
import struct
import time
from typing import Callable, List, Optional, Tuple, Union

import bsdiff4

__all__ = ["diff", "FileView", "SMALL", "memory_estimate"]

#: Inputs up to this size are diffed whole by ``bsdiff4.diff`` (the reference patch).
SMALL = 4 << 20
_KEY = 32  # bytes of an index key
_STRIDE = 1024  # old offsets indexed: one in _STRIDE
_MIN_RUN = 512  # the shortest identical run taken out of bsdiff's hands
_MAX_GAP = 4 << 20  # the most new bytes one bsdiff4 call sees
_MAX_GAP_OLD = 4 << 20  # the most old bytes one bsdiff4 call sees
_CONTEXT = 64 << 10  # at most this many old bytes on each side of a gap also go to bsdiff4
_BLOCK = 1 << 12  # the first block a run is compared in; doubled up to _MAX_BLOCK
_MAX_BLOCK = 1 << 18
_WINDOW = 1 << 16  # a FileView reads this much around a small read
_ZEROS = bytes(1 << 20)

Progress = Callable[[int, int], None]


class FileView:
    """Read-only, bytes-like access to an open file: ``len(view)``, ``view[i]`` (an int) and
    ``view[a:b]`` (bytes), read with ``os.pread`` (Windows: seek and read) through a small
    window, so a diff reads the old release where it looks instead of holding it. The caller
    owns ``fd``; a view is used by one thread at a time."""

    def __init__(self, fd: int, size: int) -> None:
        self.fd = fd
        self.size = size
        self._at = 0
        self._window = b""

    def __len__(self) -> int:
        return self.size

    def _read(self, at: int, n: int) -> bytes:
        end = min(self.size, at + n)
        if at >= end:
            return b""
        w = self._at
        if w <= at and end <= w + len(self._window):
            return self._window[at - w:end - w]
        start = max(0, min(at - 1024, self.size - _WINDOW))  # a little before: reads walk back too
        if end > start + _WINDOW:  # does not fit in a window from there: read it alone
            return _pread(self.fd, end - at, at)
        self._at = start
        self._window = _pread(self.fd, _WINDOW, start)
        return self._window[at - start:end - start]

    def __getitem__(self, key: "int | slice") -> "bytes | int":
        if isinstance(key, slice):
            start, stop, step = key.indices(self.size)
            if step != 1:
                raise ValueError("FileView slices have no step")
            return self._read(start, stop - start)
        if key < 0:
            key += self.size
        if not 0 <= key < self.size:
            raise IndexError("FileView index out of range")
        return self._read(key, 1)[0]


#: ``os.pread``, or None where there is none (Windows): a view then seeks and reads (each view
#: belongs to one thread).
_PREAD = getattr(os, "pread", None)


def _pread(fd: int, n: int, at: int) -> bytes:
    """Exactly ``n`` bytes at ``at`` (fewer only at the end of the file)."""
    parts = []
    while n > 0:
        if _PREAD is not None:
            chunk = _PREAD(fd, n, at)
        else:  # pragma: no cover - Windows
            os.lseek(fd, at, os.SEEK_SET)
            chunk = os.read(fd, n)
        if not chunk:
            break
        parts.append(chunk)
        n -= len(chunk)
        at += len(chunk)
    return parts[0] if len(parts) == 1 else b"".join(parts)


#: What the diff reads: bytes in memory, or a file read where it looks.
Data = Union[bytes, FileView]


def memory_estimate(old_size: int, new_size: int) -> int:
    """Bytes one diff holds at its peak besides the new file: the index, one gap's bsdiff4
    (17x its old side), the compressors; small inputs: bsdiff4 on the whole old file."""
    if old_size <= SMALL or new_size <= SMALL:
        return 17 * old_size + new_size
    index = (old_size // _STRIDE) * 120
    return index + 17 * _MAX_GAP_OLD + 3 * _MAX_GAP + 3 * (8 << 20)


def _run_length(new: Data, p: int, old: Data, o: int) -> int:
    """Length of the identical run ``new[p:] == old[o:]`` (both in range)."""
    limit = min(len(new) - p, len(old) - o)
    done = 0
    block = _BLOCK
    while done < limit:
        n = min(block, limit - done)
        if new[p + done:p + done + n] == old[o + done:o + done + n]:
            done += n
            block = min(block * 2, _MAX_BLOCK)
            continue
        lo, hi = 0, n  # the first difference is in [lo, hi): bisect
        while hi - lo > 64:
            mid = (lo + hi) // 2
            if new[p + done + lo:p + done + mid] == old[o + done + lo:o + done + mid]:
                lo = mid
            else:
                hi = mid
        while lo < hi and new[p + done + lo] == old[o + done + lo]:
            lo += 1
        return done + lo
    return done


def _back_length(new: Data, p: int, old: Data, o: int, limit: int) -> int:
    """How many bytes before ``new[p]`` and ``old[o]`` are identical, at most ``limit``
    (compared in growing slices from the end, not a byte at a time)."""
    limit = min(limit, p, o)
    n = 0
    step = 256
    while n < limit:
        k = min(step, limit - n)
        a, b = new[p - n - k:p - n], old[o - n - k:o - n]
        if a == b:
            n += k
            step *= 2
            continue
        j = k
        while a[j - 1] == b[j - 1]:  # they differ somewhere: this stops
            j -= 1
        return n + k - j
    return n


def _index(old: Data) -> dict:
    """``{hash(key): offset}`` of the old file's ``_KEY``-byte strings at every ``_STRIDE``-th offset
    (the first offset of each key), read a megabyte at a time."""
    index: dict = {}
    setdefault = index.setdefault
    size = len(old)
    step = _STRIDE << 10
    for base in range(0, max(size - _KEY, 0), step):
        chunk = old[base:min(size, base + step + _KEY)]
        for o in range(0, min(step, len(chunk) - _KEY), _STRIDE):
            setdefault(hash(chunk[o:o + _KEY]), base + o)
    return index


#: A step of the patch: (new start, new end, old start, old end, identical)
_Op = Tuple[int, int, int, int, bool]


def _plan(old: Data, new: Data, progress: Optional[Progress]) -> List[_Op]:
    """The identical runs and the gaps between them, covering ``new`` in order."""
    index = _index(old)
    get = index.get
    n, m = len(new), len(old)
    ops: List[_Op] = []
    old_end = 0  # where the last run ended in old
    shift = 0  # old offset - new offset of the last run
    gap_start = 0  # new bytes [gap_start, q) belong to no run yet
    last_report = time.monotonic()

    def close_gap(end: int, old_to: int) -> None:
        """Plan new[gap_start:end] as gaps against old bytes from old_end to old_to."""
        nonlocal gap_start
        start = gap_start
        lo = old_end
        hi = old_to if old_to >= lo else lo
        while start < end:
            stop = min(end, start + _MAX_GAP)
            if end - start > _MAX_GAP or hi - lo > _MAX_GAP_OLD:  # split, old in proportion
                share = (stop - start) * max(hi - lo, 0) // max(end - start, 1)
                o_lo, o_hi = lo, min(m, lo + min(max(share, stop - start), _MAX_GAP_OLD))
            else:
                o_lo, o_hi = lo, hi
            if o_hi - o_lo < 64:  # nothing to diff against: the old bytes around the position
                o_lo = max(0, min(lo, m) - (stop - start))
                o_hi = min(m, o_lo + min(2 * (stop - start), _MAX_GAP_OLD))
            ops.append((start, stop, o_lo, o_hi, False))
            lo = o_hi
            start = stop
        gap_start = end

    q = 0
    while q < n:
        found = -1
        # the same shift as the last run first (a byte changed in place), then the index
        o = q + shift
        if 0 <= o and o + _KEY <= m and new[q:q + _KEY] == old[o:o + _KEY]:
            found = o
        else:
            hit = get(hash(new[q:q + _KEY]))  # a false hit makes no run
            if hit is not None:
                found = hit
        if found < 0:
            q += 1
            continue
        run = _run_length(new, q, old, found)
        if run < _MIN_RUN:
            q += 1
            continue
        back = _back_length(new, q, old, found, q - gap_start)
        start, o_start = q - back, found - back
        if start > gap_start:
            close_gap(start, o_start)
        ops.append((start, q + run, o_start, found + run, True))
        q = gap_start = q + run
        old_end = found + run
        shift = old_end - q
        now = time.monotonic()
        if progress is not None and now - last_report >= 1.0:
            progress(q, n)
            last_report = now
    if gap_start < n:
        close_gap(n, m if old_end < m else old_end)
    return ops


def _context(lo: int, hi: int, size: int, old_size: int) -> Tuple[int, int]:
    """The old bytes ``[lo, hi)`` widened on each side (16x a ``size``-byte gap, from a quarter
    of ``_CONTEXT`` to ``_CONTEXT``, within the file and the ``_MAX_GAP_OLD`` bound)."""
    room = max(0, _MAX_GAP_OLD - (hi - lo)) // 2
    pad = min(_CONTEXT, max(_CONTEXT // 4, 16 * size), room)
    return max(0, lo - pad), min(old_size, hi + pad)


def _blocks(patch: bytes) -> Tuple[bytes, bytes, bytes]:
    """The decompressed control, diff and extra blocks of a BSDIFF40 patch."""
    ctrl_len, diff_len = struct.unpack("<qq", patch[8:24])
    p = 32
    return (bz2.decompress(patch[p:p + ctrl_len]), bz2.decompress(patch[p + ctrl_len:p + ctrl_len + diff_len]),
            bz2.decompress(patch[p + ctrl_len + diff_len:]))


def _offt(value: int) -> bytes:
    """bsdiff's sign-magnitude 64-bit little-endian integer."""
    if value < 0:
        return struct.pack("<Q", -value | (1 << 63))
    return struct.pack("<Q", value)


class _Writer:
    """Control entries ``(add, copy, old start)`` turned into a BSDIFF40 patch as they come."""

    def __init__(self) -> None:
        self.ctrl = bz2.BZ2Compressor(9)
        self.diff = bz2.BZ2Compressor(9)
        self.extra = bz2.BZ2Compressor(9)
        self.parts: List[List[bytes]] = [[], [], []]
        self.pending: Optional[Tuple[int, int, int]] = (0, 0, 0)  # a no-op first entry at old 0

    def entry(self, add: int, copy: int, old_start: int) -> None:
        pa, pc, ps = self.pending
        # the pending entry's seek moves the old position to this entry's start
        self._emit(pa, pc, old_start - (ps + pa))
        self.pending = (add, copy, old_start)

    def _emit(self, add: int, copy: int, seek: int) -> None:
        if add == copy == seek == 0:
            return
        self.parts[0].append(self.ctrl.compress(_offt(add) + _offt(copy) + _offt(seek)))

    def diff_bytes(self, data: bytes) -> None:
        self.parts[1].append(self.diff.compress(data))

    def diff_zeros(self, n: int) -> None:
        while n > 0:
            k = min(n, len(_ZEROS))
            self.parts[1].append(self.diff.compress(_ZEROS[:k] if k < len(_ZEROS) else _ZEROS))
            n -= k

    def extra_bytes(self, data: bytes) -> None:
        self.parts[2].append(self.extra.compress(data))

    def finish(self, new_size: int) -> bytes:
        pa, pc, _ = self.pending
        self._emit(pa, pc, 0)
        ctrl = b"".join(self.parts[0]) + self.ctrl.flush()
        dif = b"".join(self.parts[1]) + self.diff.flush()
        ext = b"".join(self.parts[2]) + self.extra.flush()
        return b"BSDIFF40" + _offt(len(ctrl)) + _offt(len(dif)) + _offt(new_size) + ctrl + dif + ext


def diff(old: Data, new: Data, progress: Optional[Progress] = None,
         check: Optional[Callable[[], None]] = None) -> bytes:
    """A BSDIFF40 patch turning ``old`` into ``new`` (``bsdiff4.diff``'s for small inputs).

    Either may be a :class:`FileView`. ``progress(done, total)`` is called
    about once a second with the new bytes planned so far; ``check()`` after
    each step of writing the patch. Either may raise to stop the diff.
    """
    if len(old) <= SMALL or len(new) <= SMALL:
        return bsdiff4.diff(old[0:len(old)], new[0:len(new)])
    ops = _plan(old, new, progress)
    out = _Writer()
    for n_start, n_end, o_start, o_end, same in ops:
        if same:
            out.entry(n_end - n_start, 0, o_start)
            out.diff_zeros(n_end - n_start)
        else:
            # old context around the gap: bsdiff finds short matches there too
            o_start, o_end = _context(o_start, o_end, n_end - n_start, len(old))
            patch = bsdiff4.diff(old[o_start:o_end], new[n_start:n_end])
            ctrl, dif, ext = _blocks(patch)
            pos = 0  # old position inside the gap's old bytes
            for add, copy, seek in struct.iter_unpack("<qqq", ctrl):
                if seek < 0:
                    seek = -(seek & ((1 << 63) - 1))
                out.entry(add, copy, o_start + pos)
                pos += add + seek
            out.diff_bytes(dif)
            out.extra_bytes(ext)
        if check is not None:
            check()
    if progress is not None:
        progress(len(new), len(new))
    return out.finish(len(new))
