"""Patch and verify: bounded bsdiff application, bounded gunzip, SHA-256 checks.

Every size a download claims is checked against a cap before memory is
allocated for it: the BSDIFF40 header's new size, each bzip2 block of the patch
(decompressed with a limit, so a small "bzip2 bomb" cannot exhaust memory), and
the gunzipped size of a full binary (decompressed chunk by chunk into a file).
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from typing import Callable, Tuple

from .errors import PatchError, VerificationError

__all__ = [
    "BSDIFF_MAGIC",
    "bsdiff_header",
    "apply_patch",
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


def _bunzip(data: bytes, limit: int, what: str) -> bytes:
    import bz2  # lazy: only the patch path needs it

    dec = bz2.BZ2Decompressor()
    try:
        out = dec.decompress(data, max_length=limit + 1)
    except (OSError, ValueError, EOFError) as exc:
        raise PatchError(f"the patch's {what} block is not valid bzip2 ({exc})") from None
    if len(out) > limit:
        raise PatchError(f"the patch's {what} block decompresses to more than {limit} bytes")
    if not dec.eof:
        raise PatchError(f"the patch's {what} block is truncated")
    return out


def apply_patch(current: bytes, patch: bytes, *, max_new_size: int) -> bytes:
    """Apply a BSDIFF40 ``patch`` to ``current`` and return the new bytes.

    The header's claimed new size is checked against ``max_new_size`` before
    anything is allocated, and each bzip2 block is decompressed with a limit
    derived from it. The blocks are then handed to ``bsdiff4.core.patch`` (the
    C routine behind ``bsdiff4.patch``), which checks the control data against
    the buffers. Raises :class:`PatchError` for any malformed patch.
    """
    ctrl_len, diff_len, new_size = bsdiff_header(patch)
    if new_size > max_new_size:
        raise PatchError(
            f"the patch claims a {new_size}-byte result, over the limit of {max_new_size} bytes"
        )
    import bsdiff4.core  # lazy: a C extension only the patch path needs

    p1 = _HEADER_SIZE
    p2 = p1 + ctrl_len
    p3 = p2 + diff_len
    ctrl_limit = min(24 * (new_size + 1), 1 << 28)
    bcontrol = _bunzip(patch[p1:p2], ctrl_limit, "control")
    if len(bcontrol) % 24:
        raise PatchError("the patch's control block is not a whole number of 24-byte entries")
    bdiff = _bunzip(patch[p2:p3], new_size, "diff")
    bextra = _bunzip(patch[p3:], new_size, "extra")
    try:
        new = bsdiff4.core.patch(current, new_size, bcontrol, bdiff, bextra)
    except (ValueError, MemoryError, SystemError, OverflowError) as exc:
        raise PatchError(f"the patch does not apply to the current file ({exc})") from None
    if len(new) != new_size:  # pragma: no cover - bsdiff4 guarantees it
        raise PatchError("the patch produced a result of the wrong size")
    return new


class _Block:
    """One bzip2 block of a patch, decompressed on demand, never more than ``limit`` bytes in all."""

    def __init__(self, data: bytes, limit: int, what: str) -> None:
        import bz2  # lazy: only the patch path needs it

        self._dec = bz2.BZ2Decompressor()
        self._pending = data
        self._left = limit
        self._what = what

    def read(self, n: int) -> bytes:
        """Exactly ``n`` bytes; PatchError if the block is shorter, corrupt or over its limit."""
        if n > self._left:
            raise PatchError(f"the patch's {self._what} block decompresses to more than its limit")
        parts = []
        got = 0
        while got < n:
            if self._dec.eof:
                raise PatchError(f"the patch's {self._what} block is shorter than its control data says")
            try:
                out = self._dec.decompress(self._pending, max_length=n - got)
            except (OSError, ValueError, EOFError) as exc:
                raise PatchError(f"the patch's {self._what} block is not valid bzip2 ({exc})") from None
            self._pending = b""
            if not out and self._dec.needs_input:
                raise PatchError(f"the patch's {self._what} block is truncated")
            parts.append(out)
            got += len(out)
        self._left -= n
        return b"".join(parts)


def patch_stream(
    read_old: Callable[[int, int], bytes],
    old_size: int,
    patch: bytes,
    write: Callable[[bytes], object],
    *,
    max_new_size: int,
    chunk: int = 1 << 20,
) -> int:
    """Apply a BSDIFF40 ``patch`` to an old file read through ``read_old(offset, n)``; stream the result.

    Unlike :func:`apply_patch` nothing is held whole: the old bytes are read
    where the control data points, the patch's three bzip2 blocks are
    decompressed as they are consumed, and the new bytes go to ``write`` in
    pieces of at most ``chunk`` bytes (the byte-wise addition runs in
    ``bsdiff4``'s C code). Memory stays about ``3 * chunk`` plus the patch,
    whatever the file sizes. Returns the new size; raises :class:`PatchError`
    for a malformed patch or one that does not fit the old file.
    """
    ctrl_len, diff_len, new_size = bsdiff_header(patch)
    if new_size > max_new_size:
        raise PatchError(
            f"the patch claims a {new_size}-byte result, over the limit of {max_new_size} bytes"
        )
    import bsdiff4.core  # lazy: a C extension only the patch path needs

    encode = bsdiff4.core.encode_int64
    p1 = _HEADER_SIZE
    p2 = p1 + ctrl_len
    p3 = p2 + diff_len
    view = memoryview(patch)
    control = _Block(view[p1:p2], 24 * (new_size + 1), "control")
    diff = _Block(view[p2:p3], new_size, "diff")
    extra = _Block(view[p3:], new_size, "extra")
    newpos = oldpos = 0
    while newpos < new_size:
        raw = control.read(24)
        add, copy, seek = _offtin(raw[0:8]), _offtin(raw[8:16]), _offtin(raw[16:24])
        if add < 0 or copy < 0 or newpos + add + copy > new_size:
            raise PatchError("the patch's control data is corrupt (it points outside the new file)")
        done = 0
        while done < add:
            n = min(chunk, add - done)
            delta = diff.read(n)
            start = oldpos + done
            lo, hi = max(start, 0), min(start + n, old_size)
            old = read_old(lo, hi - lo) if hi > lo else b""
            if len(old) != max(hi - lo, 0):
                raise PatchError("the old file changed or is shorter than expected while patching")
            # bsdiff4's own loop: new[i] = delta[i] + old[start + i] where that is inside the old file
            control_one = encode(0) + encode(0) + encode(min(start, 0)) + encode(n) + encode(0) + encode(0)
            try:
                write(bsdiff4.core.patch(old, n, control_one, delta, b""))
            except (ValueError, MemoryError, SystemError, OverflowError) as exc:  # pragma: no cover
                raise PatchError(f"the patch does not apply to the current file ({exc})") from None
            done += n
        newpos += add
        oldpos += add
        done = 0
        while done < copy:
            n = min(chunk, copy - done)
            write(extra.read(n))
            done += n
        newpos += copy
        oldpos += seek
    return new_size


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
