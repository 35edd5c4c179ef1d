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
