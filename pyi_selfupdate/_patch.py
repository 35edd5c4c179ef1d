"""Patch and verify: streamed bsdiff application, bounded gunzip, SHA-256 checks.

Nothing a download claims decides how much memory is used: a patch is applied
as a stream (:func:`patch_stream`: its bzip2 blocks decompressed as they are
consumed, the old file read where the control data points, the result written
a piece at a time), so it takes a few MiB whatever its header or control block
claims; the header's new size must not exceed the signed size, and each block
may not decompress to more than that size allows. A full binary is gunzipped
chunk by chunk into a file, up to the signed size.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from typing import Callable, Optional, Tuple

from .errors import PatchError, VerificationError

__all__ = [
    "BSDIFF_MAGIC",
    "bsdiff_header",
    "patch_stream",
    "gunzip_to",
    "check_sha256",
]

BSDIFF_MAGIC = b"BSDIFF40"
_HEADER_SIZE = 32
_CHUNK = 1 << 16


def _offtin(raw: bytes) -> int:
    """bsdiff's 64-bit sign-magnitude little-endian integer."""
    value = int.from_bytes(raw[:7] + bytes([raw[7] & 0x7F]), "little")
    return -value if raw[7] & 0x80 else value


def bsdiff_header(patch: bytes) -> Tuple[int, int, int]:
    """``(control_len, diff_len, new_size)`` of a BSDIFF40 patch; PatchError if malformed."""
    if len(patch) < _HEADER_SIZE or patch[:8] != BSDIFF_MAGIC:
        raise PatchError("the patch is not a BSDIFF40 file (bad header)")
    ctrl_len = _offtin(patch[8:16])
    diff_len = _offtin(patch[16:24])
    new_size = _offtin(patch[24:32])
    if ctrl_len < 0 or diff_len < 0 or new_size < 0:
        raise PatchError("the patch header holds a negative length")
    if _HEADER_SIZE + ctrl_len + diff_len > len(patch):
        raise PatchError("the patch is truncated (its header claims more bytes than it has)")
    return ctrl_len, diff_len, new_size


class _Block:
    """One bzip2 block of a patch, decompressed on demand, never more than ``limit`` bytes in all."""

    def __init__(self, data: "bytes | memoryview", limit: int, what: str) -> None:
        import bz2  # lazy: only the patch path needs it

        self._dec = bz2.BZ2Decompressor()
        self._pending = data
        self._left = limit
        self._what = what

    def read(self, n: int, *, exact: bool = True) -> bytes:
        """``n`` bytes (fewer only at the block's end or limit when not ``exact``); PatchError if
        the block is shorter than ``exact`` asks, corrupt, or over its limit."""
        if n > self._left:
            if exact or self._left == 0:
                raise PatchError(f"the patch's {self._what} block decompresses to more than its limit")
            n = self._left
        parts = []
        got = 0
        while got < n and not self._dec.eof:
            try:
                out = self._dec.decompress(self._pending, max_length=n - got)
            except (OSError, ValueError, EOFError) as exc:
                raise PatchError(f"the patch's {self._what} block is not valid bzip2 ({exc})") from None
            self._pending = b""
            if not out and self._dec.needs_input:
                raise PatchError(f"the patch's {self._what} block is truncated")
            parts.append(out)
            got += len(out)
        if exact and got < n:
            raise PatchError(f"the patch's {self._what} block is shorter than its control data says")
        self._left -= got
        return b"".join(parts)

    def finish(self) -> None:
        """PatchError unless the block ends here, whole (its bzip2 end and checksum read)."""
        left, self._left = self._left, 1
        if self.read(1, exact=False):
            raise PatchError(f"the patch's {self._what} block is longer than its control data says")
        if not self._dec.eof:  # pragma: no cover - read() raised already
            raise PatchError(f"the patch's {self._what} block is truncated")
        self._left = left


#: Control entries read and applied at a time (with one call into bsdiff4's C code).
_BATCH = 4096
_MAGNITUDE = (1 << 63) - 1


def patch_stream(
    read_old: Callable[[int, int], bytes],
    old_size: int,
    patch: bytes,
    write: Callable[[bytes], object],
    *,
    max_new_size: int,
    chunk: int = 1 << 20,
    check: Optional[Callable[[], None]] = None,
) -> int:
    """Apply a BSDIFF40 ``patch`` to an old file read through ``read_old(offset, n)``; stream the result.

    Nothing is held whole: the old bytes are read where the control data points,
    the patch's three bzip2 blocks are decompressed as they are consumed, and
    the new bytes go to ``write`` in pieces of at most ``chunk`` bytes. Runs of
    small control entries are applied together by ``bsdiff4``'s C code, so a
    patch of millions of tiny entries costs about a microsecond each. Memory
    stays about ``4 * chunk`` plus the patch, whatever the sizes it claims: the
    header's new size is checked against ``max_new_size`` first, and no block
    may decompress to more than the new size allows. ``check()``, if given, is
    called between batches (it raises to stop: the overall deadline). Returns
    the new size; :class:`PatchError` for a malformed patch or one that does not
    fit the old file.
    """
    ctrl_len, diff_len, new_size = bsdiff_header(patch)
    if new_size > max_new_size:
        raise PatchError(
            f"the patch claims a {new_size}-byte result, over the limit of {max_new_size} bytes"
        )
    import struct

    import bsdiff4.core  # lazy: a C extension only the patch path needs

    apply = bsdiff4.core.patch
    encode = bsdiff4.core.encode_int64
    p1 = _HEADER_SIZE
    p2 = p1 + ctrl_len
    p3 = p2 + diff_len
    view = memoryview(patch)
    for what, at in (("control", p1), ("diff", p2), ("extra", p3)):
        if bytes(view[at:at + 3]) != b"BZh":
            raise PatchError(f"the patch's {what} block is not bzip2 data")
    control = _Block(view[p1:p2], 24 * (new_size + 1), "control")
    diff = _Block(view[p2:p3], new_size, "diff")
    extra = _Block(view[p3:], new_size, "extra")
    window = 2 * chunk  # the most old bytes one batch may read

    def run(first: int, raw: "memoryview", entries: int, lo: int, hi: int, adds: int, copies: int) -> None:
        """Apply ``entries`` control entries (``raw``), the old file's bytes ``[lo, hi)`` in reach."""
        if check is not None:
            check()
        if hi <= lo:  # the run reads no old byte
            lo = hi = 0
        old = read_old(lo, hi - lo) if hi > lo else b""
        if len(old) != hi - lo:
            raise PatchError("the old file changed or is shorter than expected while patching")
        # bsdiff4 adds old[p - lo] where 0 <= p - lo < len(old): the window stands for the file,
        # and positions outside the file stay outside it; a first entry seeks to ``first``
        head = encode(0) + encode(0) + encode(first - lo)
        ctrl = head + bytes(raw[:24 * entries])
        try:
            out = apply(old, adds + copies, ctrl, diff.read(adds), extra.read(copies))
        except (ValueError, MemoryError, SystemError, OverflowError) as exc:  # pragma: no cover
            raise PatchError(f"the patch does not apply to the current file ({exc})") from None
        if out:
            write(out)

    newpos = oldpos = 0  # newpos: where the pending run's output starts
    limit = 1 << 62  # no real seek goes near it; keeps every position a 64-bit integer
    while newpos < new_size:
        raw = memoryview(control.read(24 * _BATCH, exact=False))
        if not raw or len(raw) % 24:
            raise PatchError("the patch's control block ends before the new file does")
        # the pending run: entries [start, i) of ``raw``, from old position ``first``, reading
        # the old bytes [lo, hi), adding ``adds`` diff and ``pending - adds`` extra bytes
        i = start = adds = pending = hi = 0
        first, lo = oldpos, old_size
        for add, copy, seek in struct.iter_unpack("<qqq", raw):
            if add < 0 or copy < 0:  # sign-magnitude: a set top bit is negative
                raise PatchError("the patch's control data is corrupt (a negative length)")
            if seek < 0:
                seek = -(seek & _MAGNITUDE)
            n = add + copy
            if newpos + pending + n > new_size:
                raise PatchError("the patch's control data is corrupt (it points outside the new file)")
            a = oldpos if oldpos > 0 else 0  # the old bytes [a, b) this entry reads
            b = oldpos + add if oldpos + add < old_size else old_size
            if pending + n > chunk or (a < b and (hi if hi > b else b) - (lo if lo < a else a) > window):
                if i > start:  # apply the run so far; this entry starts the next one
                    run(first, raw[24 * start:], i - start, lo, hi, adds, pending - adds)
                    newpos += pending
                start, first, lo, hi, adds, pending = i, oldpos, old_size, 0, 0, 0
            if n > chunk:  # alone, a chunk at a time
                _one_large(read_old, old_size, oldpos, add, copy, diff, extra, write, chunk, apply,
                           encode, check)
                newpos += n
                start, first = i + 1, oldpos + add + seek
            else:
                if a < b:
                    lo, hi = (lo if lo < a else a), (hi if hi > b else b)
                adds += add
                pending += n
            oldpos += add + seek
            i += 1
            if not -limit < oldpos < limit:
                raise PatchError("the patch's control data is corrupt (it seeks outside any file)")
            if newpos + pending == new_size:
                break
        if i > start:
            run(first, raw[24 * start:], i - start, lo, hi, adds, pending - adds)
            newpos += pending
    diff.finish()
    extra.finish()
    return new_size


def _one_large(read_old: Callable[[int, int], bytes], old_size: int, oldpos: int, add: int, copy: int,
               diff: _Block, extra: _Block, write: Callable[[bytes], object], chunk: int,
               apply: Callable[..., bytes], encode: Callable[[int], bytes],
               check: Optional[Callable[[], None]]) -> None:
    """One control entry too large for a batch, applied ``chunk`` bytes at a time."""
    done = 0
    while done < add:
        if check is not None:
            check()
        n = min(chunk, add - done)
        delta = diff.read(n)
        start = oldpos + done
        lo, hi = max(start, 0), min(start + n, old_size)
        old = read_old(lo, hi - lo) if hi > lo else b""
        if len(old) != max(hi - lo, 0):
            raise PatchError("the old file changed or is shorter than expected while patching")
        # new[i] = delta[i] + old[start + i] where that is inside the old file
        ctrl = encode(0) + encode(0) + encode(min(start, 0)) + encode(n) + encode(0) + encode(0)
        try:
            write(apply(old, n, ctrl, delta, b""))
        except (ValueError, MemoryError, SystemError, OverflowError) as exc:  # pragma: no cover
            raise PatchError(f"the patch does not apply to the current file ({exc})") from None
        done += n
    done = 0
    while done < copy:
        n = min(chunk, copy - done)
        write(extra.read(n))
        done += n


def gunzip_to(
    read: Callable[[int], bytes],
    write: Callable[[bytes], object],
    *,
    max_size: int,
    source: str,
) -> Tuple[int, bytes]:
    """Decompress a gzip stream chunk by chunk; return ``(size, sha256 digest)``.

    ``read(n)`` gives compressed bytes (``b""`` at the end), ``write(b)`` takes
    decompressed ones. Concatenated gzip members are accepted (as Go's gzip
    reader does). A decompressed size over ``max_size``, a corrupt or truncated
    stream, or trailing garbage raise :class:`VerificationError` naming ``source``.
    """
    hasher = hashlib.sha256()
    total = 0
    members = 0  # gzip members decompressed to their end
    dec = zlib.decompressobj(31)
    started = False  # the current member has been given bytes
    while True:
        chunk = read(_CHUNK)
        if not chunk:
            break
        pending = chunk
        drain = False  # the last call filled its output: zlib may hold more
        while pending or drain:
            started = True
            try:
                out = dec.decompress(pending, _CHUNK)
            except zlib.error as exc:
                raise VerificationError(
                    f"{source} is not a valid gzip file ({exc}); republish the release"
                ) from None
            if out:
                total += len(out)
                if total > max_size:
                    raise VerificationError(
                        f"{source} decompresses to more than {max_size} bytes; refusing it"
                    )
                hasher.update(out)
                write(out)
            drain = len(out) == _CHUNK
            if dec.eof:
                drain = False
                members += 1
                pending = dec.unused_data
                dec = zlib.decompressobj(31)
                started = False
            else:
                pending = dec.unconsumed_tail
    if started or members == 0:
        raise VerificationError(
            f"{source} is truncated or empty (the gzip stream does not end); "
            "retry, or republish the release"
        )
    return total, hasher.digest()


def check_sha256(digest: bytes, expected: bytes, what: str) -> None:
    """Raise :class:`VerificationError` unless ``digest == expected``."""
    if digest != expected:
        raise VerificationError(
            f"{what} has SHA-256 {base64.b64encode(digest).decode()} but the manifest "
            f"promises {base64.b64encode(expected).decode()}; the download is corrupt or "
            "the release is inconsistent: republish it"
        )
