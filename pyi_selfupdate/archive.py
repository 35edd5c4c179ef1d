"""The canonical archive of an app folder: what is hashed, gzipped and diffed for a folder release.

A onedir app (``dist/<app>/``: the executable and ``_internal/``) or a macOS
``.app`` bundle is updated as a whole. On the go-selfupdate wire it travels as
one file: the canonical archive of the folder, a pure function of the folder's
contents, computed by this same code on the release side (to hash, gzip and
diff it) and in the installed app (to rebuild the archive of its own folder,
apply a patch to it, and unpack the result).

The format is POSIX ustar (readable by any ``tar``), restricted so that one
folder has exactly one archive:

- one entry per directory (below the root; the root itself has none), regular
  file and symbolic link, sorted by their path (``/``-separated, UTF-8, as
  bytes); nothing else (a device, a socket or a FIFO is refused; hard links
  are stored as regular files);
- directories are named with a trailing ``/``, typeflag ``5``, mode 0755;
  regular files typeflag ``0``, mode 0755 if any execute bit is set, else
  0644; symbolic links typeflag ``2``, mode 0777, their target kept as it is,
  and it must be relative and stay inside the folder;
- uid, gid, mtime, devmajor and devminor are zero (``0000000``), uname and
  gname empty, magic ``ustar\\0`` and version ``00``;
- a name that does not fit the 100-byte name field is split at a ``/`` into
  prefix (<= 155 bytes) and name; a name or link target that still does not fit
  is carried by a pax extended header (typeflag ``x``, named
  ``././@PaxHeader``, with the ``path`` and then the ``linkpath`` record), the
  ustar header then holding the first 100 bytes;
- file data is padded with zeros to a multiple of 512 bytes; the archive ends
  with two zero blocks and nothing else (no tar record padding).

Two folders with the same files, links, folders and execute bits have the same
archive, whatever their times, owners, order on disk or location.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import BinaryIO, Callable, Dict, Iterator, List, Optional, Set, Tuple

from .errors import InstallError, SelfUpdateError

__all__ = ["Entry", "ArchiveError", "scan", "header", "FolderArchive", "Unpacker", "BLOCK"]

#: The tar block size.
BLOCK = 512
_ZERO_BLOCK = bytes(BLOCK)
_PAX_NAME = b"././@PaxHeader"


class ArchiveError(SelfUpdateError):
    """A folder cannot be archived (a special file, a link leaving it), or an archive is malformed."""


@dataclass(frozen=True)
class Entry:
    """One member of a canonical archive."""

    path: str  #: relative, ``/``-separated, no trailing ``/``
    kind: str  #: ``"dir"``, ``"file"`` or ``"link"``
    mode: int
    size: int = 0  #: bytes of a file
    link: str = ""  #: a link's target
    source: str = ""  #: the file's path on disk (files only; not part of the archive)


def _link_inside(path: str, link: str) -> bool:
    """True if the relative link ``link`` at ``path`` points inside the archive's root."""
    if not link or link.startswith("/") or "\\" in link or "\0" in link:
        return False
    parts = path.split("/")[:-1]
    for part in link.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                return False
            parts.pop()
        else:
            parts.append(part)
    return True


def _check_path(path: str) -> None:
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\0" in path:
        raise ArchiveError(f"archive member {path!r} is not a plain relative path")


def scan(root: "str | os.PathLike[str]") -> List[Entry]:
    """The entries of the canonical archive of the folder ``root``, in archive order.

    Raises :class:`ArchiveError` for what the format cannot hold: a special
    file, a symbolic link that is absolute or leads out of ``root``, a name
    that is not valid UTF-8.
    """
    root = os.fspath(root)
    if not os.path.isdir(root):
        raise ArchiveError(f"{root} is not a folder")
    entries: List[Entry] = []

    def walk(folder: str, rel: str) -> None:
        try:
            names = os.listdir(folder)
        except OSError as exc:
            raise ArchiveError(f"cannot list {folder} ({exc.strerror})") from None
        for name in names:
            full = os.path.join(folder, name)
            path = f"{rel}/{name}" if rel else name
            try:
                path.encode("utf-8")
            except UnicodeEncodeError:
                raise ArchiveError(f"{full}: the name is not valid UTF-8; rename it") from None
            st = os.lstat(full)
            if stat.S_ISLNK(st.st_mode):
                link = os.readlink(full)
                if not _link_inside(path, link):
                    raise ArchiveError(
                        f"{full} is a symbolic link to {link!r}, outside the app folder; "
                        "make it a relative link inside the folder, or copy what it points to"
                    )
                entries.append(Entry(path, "link", 0o777, link=link))
            elif stat.S_ISDIR(st.st_mode):
                entries.append(Entry(path, "dir", 0o755))
                walk(full, path)
            elif stat.S_ISREG(st.st_mode):
                mode = 0o755 if st.st_mode & 0o111 else 0o644
                entries.append(Entry(path, "file", mode, size=st.st_size, source=full))
            else:
                raise ArchiveError(
                    f"{full} is neither a file, a folder nor a symbolic link; remove it from the app folder"
                )

    walk(root, "")
    entries.sort(key=lambda e: e.path.encode("utf-8"))
    return entries


def _octal(value: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, value)


def _pax(records: List[Tuple[str, bytes]]) -> bytes:
    body = b""
    for key, value in records:
        item = b" " + key.encode("ascii") + b"=" + value + b"\n"
        length = len(item) + 1
        while len(str(length).encode()) + len(item) != length:
            length += 1
        body += str(length).encode() + item
    return body


def _ustar(name: bytes, prefix: bytes, mode: int, size: int, typeflag: bytes, link: bytes) -> bytes:
    header = bytearray(BLOCK)
    header[0:len(name)] = name
    header[100:108] = _octal(mode, 8)
    header[108:116] = _octal(0, 8)
    header[116:124] = _octal(0, 8)
    header[124:136] = _octal(size, 12)
    header[136:148] = _octal(0, 12)
    header[148:156] = b" " * 8
    header[156:157] = typeflag
    header[157:157 + len(link)] = link
    header[257:263] = b"ustar\0"
    header[263:265] = b"00"
    header[329:337] = _octal(0, 8)
    header[337:345] = _octal(0, 8)
    header[345:345 + len(prefix)] = prefix
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header)


def header(entry: Entry) -> bytes:
    """The header block(s) of ``entry``: one ustar block, or a pax header and its data before it."""
    name = entry.path.encode("utf-8") + (b"/" if entry.kind == "dir" else b"")
    link = entry.link.encode("utf-8")
    prefix = b""
    records: List[Tuple[str, bytes]] = []
    if len(name) > 100:
        cuts = [i for i in range(len(name)) if name[i:i + 1] == b"/" and i <= 155
                and 0 < len(name) - i - 1 <= 100]
        if cuts:  # the first "/" that leaves a name of at most 100 bytes
            prefix, name = name[:cuts[0]], name[cuts[0] + 1:]
        else:
            records.append(("path", name))
            name = name[:100]
    if len(link) > 100:
        records.append(("linkpath", link))
        link = link[:100]
    typeflag = {"dir": b"5", "file": b"0", "link": b"2"}[entry.kind]
    block = _ustar(name, prefix, entry.mode, entry.size, typeflag, link)
    if not records:
        return block
    data = _pax(records)
    pad = -len(data) % BLOCK
    return _ustar(_PAX_NAME, b"", 0o644, len(data), b"x", b"") + data + bytes(pad) + block


class FolderArchive:
    """The canonical archive of a folder, as a read-only file that is never written anywhere.

    ``size`` is the archive's length; :meth:`read_at` reads any range of it,
    taking file contents from the folder as they are needed, so a patch can be
    applied to the installed folder's archive without building it. :meth:`stream`
    yields it in order (to hash or gzip it).
    """

    def __init__(self, root: "str | os.PathLike[str]", entries: Optional[List[Entry]] = None) -> None:
        self.root = os.fspath(root)
        self.entries = scan(self.root) if entries is None else entries
        #: (offset, length, bytes or None, entry): a header, a file's data, or padding
        self._segments: List[Tuple[int, int, Optional[bytes], Optional[Entry]]] = []
        offset = 0
        for entry in self.entries:
            head = header(entry)
            self._segments.append((offset, len(head), head, None))
            offset += len(head)
            if entry.kind == "file" and entry.size:
                self._segments.append((offset, entry.size, None, entry))
                offset += entry.size
                pad = -entry.size % BLOCK
                if pad:
                    self._segments.append((offset, pad, bytes(pad), None))
                    offset += pad
        self._segments.append((offset, 2 * BLOCK, bytes(2 * BLOCK), None))
        self.size = offset + 2 * BLOCK
        self._starts = [seg[0] for seg in self._segments]
        self._open: Optional[Tuple[str, BinaryIO]] = None

    def read_at(self, offset: int, n: int) -> bytes:
        """``n`` bytes from ``offset`` (fewer at the end); ArchiveError if a file changed size."""
        import bisect

        out = []
        end = min(offset + n, self.size)
        i = max(0, bisect.bisect_right(self._starts, offset) - 1)
        pos = offset
        while pos < end:
            start, length, data, entry = self._segments[i]
            lo, hi = pos - start, min(end - start, length)
            if data is not None:
                out.append(data[lo:hi])
            else:
                out.append(self._file_bytes(entry, lo, hi - lo))
            pos = start + hi
            i += 1
        return b"".join(out)

    def _file_bytes(self, entry: Entry, offset: int, n: int) -> bytes:
        if self._open is None or self._open[0] != entry.source:
            self.close()
            try:
                self._open = (entry.source, open(entry.source, "rb"))
            except OSError as exc:
                raise ArchiveError(f"cannot read {entry.source} ({exc.strerror})") from None
        fh = self._open[1]
        fh.seek(offset)
        data = fh.read(n)
        if len(data) != n:
            raise ArchiveError(f"{entry.source} changed while it was being read")
        return data

    def stream(self, chunk: int = 1 << 20) -> Iterator[bytes]:
        """The whole archive, in pieces of at most ``chunk`` bytes."""
        offset = 0
        while offset < self.size:
            data = self.read_at(offset, chunk)
            yield data
            offset += len(data)

    def close(self) -> None:
        if self._open is not None:
            self._open[1].close()
            self._open = None

    def __enter__(self) -> "FolderArchive":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Unpacker:
    """Unpack a canonical archive, fed as a stream of bytes, into a new folder ``dest``.

    ``dest`` must not exist (it is created 0755) or be an empty folder. Only what the canonical format
    holds is accepted: plain relative paths, directories, files, links that
    stay inside ``dest``; nothing is ever written through a link. Feed the
    archive with :meth:`write` and end with :meth:`close`, which checks that the
    archive ended. Errors: :class:`ArchiveError` for a malformed archive,
    :class:`InstallError` for a write that failed (its message names the fix);
    the caller removes ``dest`` after an error.
    """

    def __init__(self, dest: "str | os.PathLike[str]",
                 advice: Optional[Callable[[OSError], str]] = None, fsync_each: bool = True) -> None:
        self.dest = os.fspath(dest)
        #: fsync every file as it is closed (off when the caller syncs the file system once at the end)
        self._fsync_each = fsync_each
        self._advice = advice or (lambda exc: "check the disk and retry")
        self._buf = bytearray()
        self._file: Optional[BinaryIO] = None
        self._file_left = 0
        self._pad = 0
        self._pax: Dict[str, str] = {}
        self._pax_left = -1
        self._pax_data = bytearray()
        self._links: Set[str] = set()
        self._made: Set[str] = {self.dest}
        self._ended = False
        self._zeros = 0
        try:
            os.mkdir(self.dest, 0o755)
        except FileExistsError:
            if not os.path.isdir(self.dest) or os.listdir(self.dest):
                raise InstallError(f"{self.dest} exists and is not an empty folder; remove it") from None
        except OSError as exc:
            raise InstallError(f"cannot create {self.dest} ({exc}); {self._advice(exc)}") from None

    # ---------------------------------------------------------------- writing

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._file is not None:
                n = min(self._file_left, len(view))
                self._put(view[:n])
                view = view[n:]
                self._file_left -= n
                if not self._file_left:
                    self._close_file()
                continue
            if self._pax_left > 0:
                n = min(self._pax_left, len(view))
                self._pax_data += view[:n]
                self._pax_left -= n
                view = view[n:]
                if not self._pax_left:
                    self._parse_pax()
                continue
            if self._pad:
                n = min(self._pad, len(view))
                if any(view[:n]):
                    raise ArchiveError("the archive has non-zero padding")
                self._pad -= n
                view = view[n:]
                continue
            n = min(BLOCK - len(self._buf), len(view))
            self._buf += view[:n]
            view = view[n:]
            if len(self._buf) == BLOCK:
                block = bytes(self._buf)
                self._buf.clear()
                self._header(block)

    def close(self) -> None:
        """Check that the archive is complete (ends with its two zero blocks)."""
        if not self._ended or self._buf or self._file is not None:
            self._close_file()
            raise ArchiveError("the archive is truncated (it does not end with two zero blocks)")

    # ---------------------------------------------------------------- parsing

    def _header(self, block: bytes) -> None:
        if self._ended:
            raise ArchiveError("the archive has data after its end")
        if block == _ZERO_BLOCK:
            self._zeros += 1
            if self._zeros == 2:
                self._ended = True
            return
        if self._zeros:
            raise ArchiveError("the archive has a single zero block before more members")
        if block[257:263] != b"ustar\0":
            raise ArchiveError("the archive is not in ustar format")
        check = block[:148] + b" " * 8 + block[156:]
        try:
            stored = int(block[148:156].split(b"\0")[0].strip() or b"-1", 8)
            mode = int(block[100:108].split(b"\0")[0] or b"0", 8)
            size = int(block[124:136].split(b"\0")[0] or b"0", 8)
        except ValueError:
            raise ArchiveError("the archive has a malformed header") from None
        if stored != sum(check):
            raise ArchiveError("an archive header's checksum is wrong")
        typeflag = block[156:157]
        name = block[0:100].split(b"\0")[0]
        prefix = block[345:500].split(b"\0")[0]
        link = block[157:257].split(b"\0")[0]
        if typeflag == b"x":
            if size > 1 << 16:
                raise ArchiveError("an archive's pax header is too large")
            self._pax_left = size
            self._pax_data = bytearray()
            self._pad = -size % BLOCK
            if not size:
                self._pax_left = -1
            return
        full = (prefix + b"/" + name) if prefix else name
        try:
            path = self._pax.pop("path", None) or full.decode("utf-8")
            target = self._pax.pop("linkpath", None) or link.decode("utf-8")
        except UnicodeDecodeError:
            raise ArchiveError("an archive member's name is not UTF-8") from None
        self._pax.clear()
        if typeflag == b"5":
            path = path.rstrip("/")
        _check_path(path)
        if any(path == link or path.startswith(link + "/") for link in self._links):
            raise ArchiveError(f"archive member {path!r} would be written through a link")
        full_path = os.path.join(self.dest, *path.split("/"))
        try:
            if typeflag == b"5":
                self._folder(full_path)
            elif typeflag == b"2":
                if not _link_inside(path, target):
                    raise ArchiveError(f"archive link {path!r} -> {target!r} leaves the folder")
                self._folder(os.path.dirname(full_path))
                os.symlink(target, full_path)
                self._links.add(path)
            elif typeflag == b"0":
                self._folder(os.path.dirname(full_path))
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
                fd = os.open(full_path, flags, 0o755 if mode & 0o111 else 0o644)
                self._file = os.fdopen(fd, "wb")
                self._file_left = size
                self._pad = -size % BLOCK
                if not size:
                    self._close_file()
            else:
                raise ArchiveError(f"archive member {path!r} has an unsupported type {typeflag!r}")
        except OSError as exc:
            raise InstallError(f"cannot write {full_path} ({exc}); {self._advice(exc)}") from None

    def _folder(self, path: str) -> None:
        """Create the folder ``path`` (and its parents) unless this unpacker already did."""
        if path not in self._made:
            os.makedirs(path, 0o755, exist_ok=True)
            self._made.add(path)

    def _parse_pax(self) -> None:
        data = bytes(self._pax_data)
        self._pax_left = -1
        while data:
            try:
                length = int(data.split(b" ", 1)[0])
                record = data[:length]
                key, value = record.split(b" ", 1)[1].rstrip(b"\n").split(b"=", 1)
                self._pax[key.decode("ascii")] = value.decode("utf-8")
            except (ValueError, IndexError, UnicodeDecodeError):
                raise ArchiveError("an archive pax header is malformed") from None
            if length <= 0:
                raise ArchiveError("an archive pax header is malformed")
            data = data[length:]

    def _put(self, data: memoryview) -> None:
        try:
            self._file.write(data)  # type: ignore[union-attr]
        except OSError as exc:
            self._close_file()
            raise InstallError(f"cannot write into {self.dest} ({exc}); {self._advice(exc)}") from None

    def _close_file(self) -> None:
        if self._file is not None:
            try:
                self._file.flush()
                if self._fsync_each:  # complete on disk before the folder is switched in
                    os.fsync(self._file.fileno())
                self._file.close()
            except OSError as exc:
                self._file = None
                raise InstallError(f"cannot write into {self.dest} ({exc}); {self._advice(exc)}") from None
            self._file = None
