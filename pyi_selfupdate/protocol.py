"""The go-selfupdate wire protocol, in one place for the client and the release side.

Everything a server, a Go client and a Python client must agree on lives here:
the URLs (with Go's ``url.QueryEscape`` escaping), the relative paths of the
static release tree, the ``<GOOS>-<GOARCH>`` platform names, and the manifest,
encoded exactly as the Go CLI writes it and decoded as a Go client reads it
(a manifest a Go client could read otherwise is refused). Nothing here does I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
import platform as _platform
import struct
import sys
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional
from urllib.parse import quote_plus

from .errors import ManifestError, InvalidNameError
from .settings import DEV_VERSION, FILE, FOLDER, KINDS

__all__ = [
    "DEV_VERSION",
    "Manifest",
    "KIND_KEY",
    "NOTES_KEY",
    "FILE",
    "FOLDER",
    "KINDS",
    "escape",
    "manifest_url",
    "patch_url",
    "full_url",
    "manifest_path",
    "full_path",
    "patch_path",
    "GOOS",
    "GOARCH",
    "parse_platform",
    "current_platform",
    "go_platform",
    "encode_manifest",
    "decode_manifest",
    "go_key",
    "validate_name",
]



# --------------------------------------------------------------------------- names


def validate_name(value: str, what: str) -> str:
    """Return ``value`` if it is safe as one path segment and one URL segment.

    Refuses what could escape a folder of the release tree or a URL segment:
    empty strings, ``.`` and ``..``, ``/``, ``\\``, NUL and other control
    characters, lone UTF-16 surrogates (no UTF-8 name holds them). ``what``
    names the field in the error ("version", "cmd name", ...).
    """
    if not isinstance(value, str) or value == "":
        raise InvalidNameError(f"the {what} is empty; give a non-empty {what}")
    if value in (".", ".."):
        raise InvalidNameError(f"the {what} {value!r} would escape its folder; choose another {what}")
    if any("\ud800" <= c <= "\udfff" for c in value):
        raise InvalidNameError(
            f"the {what} {value!r} holds a lone UTF-16 surrogate, which no file or URL name can "
            f"hold; use a {what} of valid Unicode text"
        )
    bad = sorted({c for c in value if c in "/\\" or ord(c) < 0x20 or ord(c) == 0x7F})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        raise InvalidNameError(
            f"the {what} {value!r} contains {shown}, which could escape its folder or URL "
            f"segment; use a {what} without path separators or control characters"
        )
    return value


# --------------------------------------------------------------------------- URLs


def escape(segment: str) -> str:
    """Escape one URL segment exactly as Go's ``url.QueryEscape`` does."""
    return quote_plus(segment, safe="")


def manifest_url(api_url: str, cmd_name: str, plat: str) -> str:
    """``ApiURL + esc(cmd) + "/" + esc(plat) + ".json"`` (the base must end in ``/``)."""
    return api_url + manifest_path(escape(cmd_name), escape(plat))


def patch_url(diff_url: str, cmd_name: str, current: str, new: str, plat: str) -> str:
    """``DiffURL + esc(cmd) + "/" + esc(cur) + "/" + esc(new) + "/" + esc(plat)``."""
    return diff_url + patch_path(escape(cmd_name), escape(current), escape(new), escape(plat))


def full_url(bin_url: str, cmd_name: str, new: str, plat: str) -> str:
    """``BinURL + esc(cmd) + "/" + esc(new) + "/" + esc(plat) + ".gz"``."""
    return bin_url + full_path(escape(cmd_name), escape(new), escape(plat))


# ------------------------------------------------------------ release tree paths
# Relative POSIX paths inside the published tree: the layout of the tree, from
# which the URLs above are built (with escaped segments); the server decodes
# the escaped URL segments back to these raw names.


def manifest_path(cmd_name: str, plat: str) -> str:
    """``<cmd>/<plat>.json``: the newest release's manifest."""
    return f"{cmd_name}/{plat}.json"


def full_path(cmd_name: str, version: str, plat: str) -> str:
    """``<cmd>/<version>/<plat>.gz``: the gzipped full binary."""
    return f"{cmd_name}/{version}/{plat}.gz"


def patch_path(cmd_name: str, old: str, new: str, plat: str) -> str:
    """``<cmd>/<old>/<new>/<plat>``: the bsdiff patch from ``old`` to ``new``."""
    return f"{cmd_name}/{old}/{new}/{plat}"


# ------------------------------------------------------------------- platforms

#: GOOS and GOARCH values Go knows (``go tool dist list``).
GOOS = frozenset(
    "aix android darwin dragonfly freebsd hurd illumos ios js linux netbsd openbsd "
    "plan9 solaris wasip1 windows zos".split()
)
GOARCH = frozenset(
    "386 amd64 arm arm64 loong64 mips mips64 mips64le mipsle ppc64 ppc64le riscv64 "
    "s390x sparc64 wasm".split()
)


def parse_platform(name: str) -> Optional[str]:
    """``name`` if it is a known ``<GOOS>-<GOARCH>`` platform name, else None."""
    goos, _, goarch = name.partition("-")
    return name if goos in GOOS and goarch in GOARCH else None


#: ``sys.platform`` values (or their prefixes) and the GOOS they run.
_GOOS = {
    "linux": "linux",
    "darwin": "darwin",
    "win32": "windows",
    "cygwin": "windows",
    "msys": "windows",
    "freebsd": "freebsd",
    "openbsd": "openbsd",
    "netbsd": "netbsd",
    "dragonfly": "dragonfly",
    "sunos": "solaris",
    "aix": "aix",
}

#: ``platform.machine()`` values and the GOARCH they run.
_GOARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "x64": "amd64",
    "i386": "386",
    "i486": "386",
    "i586": "386",
    "i686": "386",
    "x86": "386",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv8l": "arm",
    "armv7l": "arm",
    "armv7": "arm",
    "armv6l": "arm",
    "armv5tel": "arm",
    "arm": "arm",
    "ppc64le": "ppc64le",
    "ppc64": "ppc64",
    "s390x": "s390x",
    "riscv64": "riscv64",
    "loongarch64": "loong64",
    "mips64": "mips64",
    "mips": "mips",
}


def go_platform(sys_platform: str, machine: str, pointer_bits: int = 64) -> str:
    """Map Python's ``sys.platform`` and ``platform.machine()`` onto Go's ``GOOS-GOARCH``.

    ``pointer_bits`` is the interpreter's pointer size: a 32-bit Python on a
    64-bit x86 machine runs ``386`` executables.
    """
    key = sys_platform.lower()
    goos = _GOOS.get(key) or next(
        (v for k, v in _GOOS.items() if key.startswith(k)), None
    )
    if goos is None:
        raise InvalidNameError(
            f"unknown operating system {sys_platform!r}; pass the platform explicitly "
            "as <os>-<arch> (for example linux-amd64)"
        )
    goarch = _GOARCH.get(machine.lower())
    if goarch is None:
        raise InvalidNameError(
            f"unknown machine type {machine!r}; pass the platform explicitly "
            "as <os>-<arch> (for example linux-amd64)"
        )
    if pointer_bits == 32:
        goarch = {"amd64": "386", "arm64": "arm"}.get(goarch, goarch)
    return f"{goos}-{goarch}"


def current_platform() -> str:
    """This machine's platform name, as Go spells it (``linux-amd64``, ...)."""
    return go_platform(sys.platform, _platform.machine(), struct.calcsize("P") * 8)


# -------------------------------------------------------------------- manifest


#: The manifest field naming a release's kind, :data:`FOLDER` (Go clients ignore it);
#: a manifest without it, as go-selfupdate writes them, is a single :data:`FILE`.
KIND_KEY = "Kind"
#: The manifest field holding a release's notes, for the app to show (Go clients ignore it).
NOTES_KEY = "Notes"


@dataclass(frozen=True)
class Manifest:
    """One ``<plat>.json``: the newest version and the SHA-256 of its full binary.

    ``extra`` holds every other field, in order (signatures, sizes, ...): Go
    clients ignore them, and :func:`encode_manifest` writes them after
    ``Version`` and ``Sha256``.
    """

    version: str
    sha256: bytes
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """What the release is: :data:`FILE` (one executable) or :data:`FOLDER` (an app folder).

        A folder release carries ``"Kind": "folder"`` (:data:`KIND_KEY`); a manifest
        without it, as go-selfupdate writes them, is a single file.
        """
        kind = self.extra.get(KIND_KEY, FILE)
        if kind not in KINDS:
            raise ManifestError(
                f"the manifest's {KIND_KEY} is {kind!r}, not one of {', '.join(KINDS)}; "
                "republish the release with pyi-selfupdate release"
            )
        return kind

    @property
    def notes(self) -> str:
        """The release notes (:data:`NOTES_KEY`), or ``""``."""
        notes = self.extra.get(NOTES_KEY, "")
        return notes if isinstance(notes, str) else ""

    def __post_init__(self) -> None:
        if len(self.sha256) != 32:
            raise ManifestError(
                f"the manifest's Sha256 holds {len(self.sha256)} bytes, not 32; "
                "republish the release with pyi-selfupdate release"
            )
        for key in self.extra:
            if go_key(key) in _GO_FIELDS:
                raise ManifestError(
                    f"extra manifest field {key!r} would clash with a Go client's "
                    "case-insensitive Version/Sha256; rename it"
                )


_GO_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def _go_string(s: str) -> str:
    out = ['"']
    for ch in s:
        esc = _GO_ESCAPES.get(ch)
        if esc is not None:
            out.append(esc)
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        elif 0xD800 <= ord(ch) <= 0xDFFF:  # lone surrogate: Go writes U+FFFD
            out.append("\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _go_value(value: Any, indent: str) -> str:
    """Encode like Go's ``json.MarshalIndent(v, "", "    ")`` (HTML-escaped)."""
    inner = indent + "    "
    if isinstance(value, str):
        return _go_string(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return _go_string(base64.b64encode(bytes(value)).decode("ascii"))
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        items = [f"{inner}{_go_string(str(k))}: {_go_value(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        items = [f"{inner}{_go_value(v, inner)}" for v in value]
        return "[\n" + ",\n".join(items) + "\n" + indent + "]"
    raise TypeError(f"cannot encode {type(value).__name__} in a manifest")


def encode_manifest(manifest: Manifest) -> bytes:
    """The manifest bytes exactly as the Go CLI writes them (no trailing newline)."""
    doc = {"Version": manifest.version, "Sha256": manifest.sha256}
    doc.update(manifest.extra)
    return _go_value(doc, "").encode("utf-8")


def _simple_fold(ch: str) -> str:
    """``ch`` under Unicode simple case folding (CaseFolding.txt, status C and S).

    ``str.casefold`` is the full folding (``ß`` -> ``ss``); where it gives one
    character it is the simple one (status C). Where the full folding gives
    several, the simple one is the simple lower-case mapping when that is one
    character (status S: ``ẞ`` -> ``ß``), else the character itself (``ß``,
    ``İ``: Go's ``unicode.SimpleFold`` leaves ``İ`` and ``ı`` alone too).
    """
    folded = ch.casefold()
    if len(folded) == 1:
        return folded
    lower = ch.lower()
    return lower if len(lower) == 1 else ch


def go_key(key: str) -> str:
    """``key`` as Go's ``encoding/json`` compares object keys with struct fields.

    Go matches a key to a field by ``bytes.EqualFold``: equal under Unicode simple
    case folding, so ``VERSION``, ``version``, ``\\u017fha256`` (long s) and
    ``\\u212aind`` (Kelvin sign) name its ``Version``, ``Sha256`` and a ``Kind``
    field. Two keys name the same Go field exactly when their ``go_key`` are equal.
    """
    return "".join(ch.lower() if ch < "\\x80" else _simple_fold(ch) for ch in key)


#: The fields a Go client reads (go-selfupdate's ``Version`` and ``Sha256``), as :func:`go_key` gives them.
_GO_FIELDS = {go_key("Version"): "Version", go_key("Sha256"): "Sha256"}


def _refuse_constant(name: str) -> Any:
    raise ManifestError(f"holds {name}, which is not JSON (a Go client refuses the manifest)")


class _Pairs(dict):
    """A decoded JSON object that remembers its keys in order, duplicates included."""

    def __init__(self, pairs: list) -> None:
        super().__init__(pairs)
        self.keys_in_order = [key for key, _ in pairs]


def decode_manifest(data: bytes, *, source: str = "the manifest") -> Manifest:
    """Read a manifest exactly as a Go client reads its ``Version`` and ``Sha256``.

    Go's ``encoding/json`` matches keys to fields case-insensitively (Unicode
    simple folding, :func:`go_key`) and, when several keys match one field,
    keeps the last; Python's ``json`` keeps the last of keys that are equal
    byte for byte. So that no manifest reads one way here and another way in a
    Go client (or in the signature check), a manifest where two keys fold to
    the same name (``Version`` and ``version``, ``Sha256`` and ``\\u017fha256``,
    a key given twice) is refused; a single key matching ``Version`` or ``Sha256``
    in any case is read as it. Unknown fields are kept in ``extra``.

    Refused too, each a :class:`ManifestError` naming the problem: what is not
    UTF-8 JSON, ``NaN`` and ``Infinity`` (not JSON: Go refuses them), nesting
    too deep to decode, lone UTF-16 surrogates (Go reads them as U+FFFD), a
    missing or non-string ``Version``, a ``Sha256`` that is not standard base64
    of 32 bytes. ``source`` (a URL or path) names the manifest in error messages.
    """
    try:
        text = data.decode("utf-8-sig") if isinstance(data, bytes) else data
        doc = json.loads(text, object_pairs_hook=_Pairs, parse_constant=_refuse_constant)
    except ManifestError as exc:
        raise ManifestError(f"{source} {exc}; republish the release") from None
    except RecursionError:
        raise ManifestError(
            f"{source} nests arrays or objects too deeply to be a manifest; the server must "
            "serve the <plat>.json written by pyi-selfupdate release or go-selfupdate"
        ) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ManifestError(
            f"{source} is not valid JSON ({exc}); the server must serve the "
            "<plat>.json written by pyi-selfupdate release or go-selfupdate"
        ) from None
    if not isinstance(doc, dict):
        raise ManifestError(f"{source} is not a JSON object; republish the release")
    _check_decoded(doc, source)
    version: Optional[Any] = None
    sha_text: Optional[Any] = None
    extra: dict = {}
    for key, value in doc.items():
        field = _GO_FIELDS.get(go_key(key))
        if field == "Version":
            version = value
        elif field == "Sha256":
            sha_text = value
        else:
            extra[key] = value
    if not isinstance(version, str) or version == "":
        raise ManifestError(f"{source} has no Version string; republish the release")
    if not isinstance(sha_text, str):
        raise ManifestError(f"{source} has no Sha256 string; republish the release")
    try:
        sha = base64.b64decode(sha_text, validate=True)
    except (binascii.Error, ValueError):
        raise ManifestError(
            f"{source}: Sha256 is not standard base64; republish the release"
        ) from None
    if len(sha) != 32:
        raise ManifestError(
            f"{source}: Sha256 decodes to {len(sha)} bytes, not 32; republish the release"
        )
    return Manifest(version=version, sha256=sha, extra=extra)


def _check_decoded(doc: Any, source: str) -> None:
    """Refuse, at every level, two keys of one object that a Go client takes for one field,
    and lone UTF-16 surrogates (no UTF-8 name holds them; Go reads them as U+FFFD)."""
    todo = [doc]
    while todo:  # no recursion: json accepts nesting deeper than Python's own limit
        value = todo.pop()
        if isinstance(value, str):
            if any("\ud800" <= ch <= "\udfff" for ch in value):
                raise ManifestError(
                    f"{source} holds a lone UTF-16 surrogate in {value!r}, which a Go client reads "
                    "as U+FFFD and no file or URL name can hold; republish the release"
                )
        elif isinstance(value, list):
            todo.extend(value)
        elif isinstance(value, _Pairs):
            seen: dict = {}
            for key in value.keys_in_order:
                folded = go_key(key)
                if folded in seen:
                    first = seen[folded]
                    how = f"{key!r} twice" if first == key else f"as {first!r} and as {key!r}"
                    raise ManifestError(
                        f"{source} gives one key {how}: a Go client matches keys case-insensitively "
                        "and keeps the last, so it could read another value than this client; "
                        "refusing it. Republish the release with pyi-selfupdate release"
                    )
                seen[folded] = key
            todo.extend(value.keys_in_order)
            todo.extend(value.values())
