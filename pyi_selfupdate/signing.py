"""Signed updates: the signed manifest fields, public keys, and their verification.

go-selfupdate trusts whoever serves the manifest: the SHA-256 it checks arrives
next to the file it checks. A signed manifest adds fields that a publisher's
Ed25519 key signs, so that a compromised bucket, CDN or DNS cannot make an app
install anything the publisher did not release:

``CmdName``, ``Platform``
    what the release is for (a manifest moved to another app's or platform's
    URL is refused);
``Size``
    bytes of the full, uncompressed executable (caps every download);
``Serial``
    an integer that grows with every release of this cmd name and platform
    (a client refuses a serial lower than one it accepted: no rollback, no replay);
``Expires``
    optional RFC 3339 UTC time after which the manifest is refused (no freeze);
``Signatures``
    a list of ``{"KeyId": ..., "Sig": ...}``, one per signing key (rotation).

None of these keys equals ``Version`` or ``Sha256`` in any case, so Go clients,
which match JSON keys case-insensitively and ignore unknown ones, still read the
manifest as before.

The signed message is ``b"pyi-selfupdate-manifest-v1\\n"`` followed by the
compact JSON (sorted keys, ASCII only) of::

    {"cmd": cmd_name, "expires": "YYYY-MM-DDTHH:MM:SSZ" or null,
     "platform": platform, "serial": int, "sha256": "<std base64>",
     "size": int, "version": version}

plus ``"kind": "folder"`` for a folder release (the manifest's ``Kind``), so a
signed folder release cannot be passed off as a single file or the reverse,
and ``"notes"`` for a release with notes (the manifest's ``Notes``).

JSON with sorted keys has a single encoding for these value types, and the
domain prefix keeps the signature from being valid for anything else.

The Ed25519 implementation is PyNaCl (libsodium): see SECURITY.md for why.
The running app only verifies; the release side signs, with the private keys
of :mod:`pyi_selfupdate.release.keys`.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as _dt
import hashlib
import json
import os
import time
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from . import _lazy
from ._files import write_atomic
from .errors import ConfigError, InstallError, SignatureError
from .protocol import FILE, KIND_KEY, NOTES_KEY, Manifest
from .settings import LIMITS

__all__ = [
    "PUBLIC_KEY_PREFIX",
    "DOMAIN",
    "SIGNED_KEYS",
    "SignedInfo",
    "UnsignedManifestError",
    "UntrustedKeyError",
    "BadSignatureError",
    "BindingMismatchError",
    "ExpiredManifestError",
    "RollbackError",
    "MixAndMatchError",
    "parse_public_key",
    "format_public_key",
    "key_id",
    "signed_message",
    "verify_manifest",
    "is_signed",
    "parse_expires",
    "SerialState",
    "read_serial_state",
    "write_serial_state",
    "serial_lock",
    "check_public_keys",
    "MAX_INT",
    "signed_body_cap",
]

log = _lazy.logger("pyi_selfupdate.signing")  # attaches the package's NullHandler (see _lazy)

#: Public keys are written ``ed25519:<standard base64 of the 32 raw bytes>``.
PUBLIC_KEY_PREFIX = "ed25519:"
#: Domain separation: a signature over a manifest is valid for nothing else.
DOMAIN = b"pyi-selfupdate-manifest-v1\n"

#: Every manifest key the signed format adds (none equals Version or Sha256 in any case).
SIGNED_KEYS = ("CmdName", "Platform", "Size", "Serial", "Expires", "Signatures")


# --------------------------------------------------------------------- errors


class UnsignedManifestError(SignatureError):
    """Keys are configured but the manifest carries no signature (or no signed fields)."""


class UntrustedKeyError(SignatureError):
    """The manifest is signed, but by no key the app trusts (e.g. a rotated-out key)."""


class BadSignatureError(SignatureError):
    """A trusted key's signature does not match the manifest's fields: they were altered."""


class BindingMismatchError(SignatureError):
    """A validly signed manifest is for another cmd name or platform than this app."""


class ExpiredManifestError(SignatureError):
    """The signed expiry time has passed: the server may be freezing the app on an old release."""


class RollbackError(SignatureError):
    """The manifest's serial is lower than one already accepted (rollback or replay)."""


class MixAndMatchError(SignatureError):
    """The manifest has the serial already accepted, but for a different version."""


# ----------------------------------------------------------------------- keys


def nacl_signing() -> Any:
    """``nacl.signing`` (PyNaCl), or a ConfigError saying how to install it."""
    try:
        import nacl.signing  # noqa: F401  (imported for its side effect and returned)
        import nacl.exceptions  # noqa: F401
    except ImportError as exc:  # pragma: no cover - dependency is declared
        raise ConfigError(
            f"signed updates need PyNaCl ({exc}); install it with `pip install pynacl` "
            "(a frozen app must be built in an environment that has it)"
        ) from None
    return nacl.signing


def b64(data: bytes) -> str:
    """Standard padded base64, as text (how keys, hashes and signatures are written)."""
    return base64.b64encode(data).decode("ascii")


def unb64(text: str, what: str, length: Optional[int] = None) -> bytes:
    """Strict standard base64 of ``length`` bytes; ValueError naming ``what`` otherwise."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not standard base64") from None
    if length is not None and len(raw) != length:
        raise ValueError(f"{what} decodes to {len(raw)} bytes, not {length}")
    return raw


def key_id(public_key: bytes) -> str:
    """Short, stable id of a raw 32-byte public key: 16 hex digits of its SHA-256."""
    return hashlib.sha256(public_key).hexdigest()[:16]


def format_public_key(public_key: bytes) -> str:
    """``ed25519:<base64>``: the form that pastes into ``public_keys = ["..."]``."""
    return PUBLIC_KEY_PREFIX + b64(public_key)


def parse_public_key(text: str) -> bytes:
    """Return the 32 raw bytes of a public key written ``ed25519:<base64>``.

    Raises :class:`ConfigError` naming the bad key and how to get a good one.
    """
    if not isinstance(text, str) or not text.strip().startswith(PUBLIC_KEY_PREFIX):
        raise ConfigError(
            f"public key {text!r} does not start with {PUBLIC_KEY_PREFIX!r}; paste the last "
            "line printed by `pyi-selfupdate keygen KEYFILE` into public_keys"
        )
    try:
        return unb64(text.strip()[len(PUBLIC_KEY_PREFIX):], "the public key", 32)
    except ValueError as exc:
        raise ConfigError(
            f"public key {text!r}: {exc}; paste the last line printed by "
            "`pyi-selfupdate keygen KEYFILE` into public_keys"
        ) from None


# --------------------------------------------------------------------- expiry


def parse_expires(text: str) -> _dt.datetime:
    """Parse the ``Expires`` field (exactly ``YYYY-MM-DDTHH:MM:SSZ``) as an aware UTC time."""
    if not isinstance(text, str) or len(text) != 20 or not text.endswith("Z"):
        raise ValueError(f"expiry {text!r} is not YYYY-MM-DDTHH:MM:SSZ")
    return _dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=_dt.timezone.utc)


# -------------------------------------------------------------------- signing


def signed_message(
    *,
    cmd_name: str,
    platform: str,
    version: str,
    sha256: bytes,
    size: int,
    serial: int,
    expires: Optional[str],
    kind: Optional[str] = None,
    notes: Optional[str] = None,
) -> bytes:
    """The exact bytes a manifest signature covers (see the module docstring)."""
    body = {
        "cmd": cmd_name,
        "expires": expires,
        "platform": platform,
        "serial": serial,
        "sha256": b64(sha256),
        "size": size,
        "version": version,
    }
    if kind is not None and kind != FILE:  # a single file signs as it always did
        body["kind"] = kind
    if notes:  # so do releases without notes
        body["notes"] = notes
    return DOMAIN + json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


#: The largest Size or Serial: a signed 64-bit integer, as every JSON reader holds exactly.
MAX_INT = (1 << 63) - 1


def check_int(value: Any, what: str) -> int:
    """``value`` if it is an int (not a bool) from 0 to :data:`MAX_INT`; ValueError naming ``what`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:40] + "..."
        raise ValueError(f"{what} must be an integer from 0 to 2**63-1, not {shown}")
    return value


# --------------------------------------------------------------- verification


@dataclass(frozen=True)
class SignedInfo:
    """What a verified manifest promises beyond Version and Sha256."""

    size: int
    serial: int
    expires: Optional[_dt.datetime]
    key_id: str


def _trusted(public_keys: Iterable[Union[str, bytes]]) -> dict:
    keys = {}
    for k in public_keys:
        raw = bytes(k) if isinstance(k, (bytes, bytearray)) else parse_public_key(k)
        if len(raw) != 32:
            raise ConfigError("a raw public key must be 32 bytes; use the ed25519:<base64> form")
        keys[key_id(raw)] = raw
    if not keys:
        raise ConfigError("verification needs at least one public key; set public_keys")
    return keys


def verify_manifest(
    manifest: Manifest,
    *,
    cmd_name: str,
    platform: str,
    public_keys: Sequence[Union[str, bytes]],
    min_serial: Optional[int] = None,
    min_serial_version: Optional[str] = None,
    now: Optional[_dt.datetime] = None,
    source: str = "the manifest",
) -> SignedInfo:
    """Check that ``manifest`` was signed for this app by a trusted key; return its promises.

    ``cmd_name`` and ``platform`` are the app's own (never taken from the manifest).
    ``min_serial`` is the highest serial this app accepted before and
    ``min_serial_version`` the version it named: a lower serial is a rollback or
    replay, the same serial with another version is mix-and-match.
    ``now`` (aware; default: the current UTC time) is compared with ``Expires``.
    Raises a :class:`~pyi_selfupdate.errors.SignatureError` subclass whose message
    says what was wrong and what the publisher must do.
    """
    trusted = _trusted(public_keys)
    extra = manifest.extra
    sigs = extra.get("Signatures")
    if not sigs:
        raise UnsignedManifestError(
            f"{source} is not signed, but this app only installs signed releases; the publisher "
            "must release with `pyi-selfupdate release --sign-key KEYFILE`"
        )
    try:
        if not isinstance(sigs, list) or len(sigs) > LIMITS.max_signatures:
            raise ValueError(f"Signatures must be a list of at most {LIMITS.max_signatures} entries")
        m_cmd = extra.get("CmdName")
        m_plat = extra.get("Platform")
        if not isinstance(m_cmd, str) or not isinstance(m_plat, str):
            raise ValueError("CmdName and Platform must be strings")
        for name in (KIND_KEY, NOTES_KEY):
            if extra.get(name) is not None and not isinstance(extra.get(name), str):
                raise ValueError(f"{name} must be a string")
        size = check_int(extra.get("Size"), "Size")
        serial = check_int(extra.get("Serial"), "Serial")
        exp_text = extra.get("Expires")
        expires = None if exp_text is None else parse_expires(exp_text)
    except ValueError as exc:
        raise UnsignedManifestError(
            f"{source} has malformed signed fields ({exc}); the publisher must republish it "
            "with `pyi-selfupdate release --sign-key KEYFILE`"
        ) from None

    entries: List[Tuple[str, bytes]] = []
    seen_ids = []
    for entry in sigs:
        if not isinstance(entry, Mapping):
            continue
        kid, sig_text = entry.get("KeyId"), entry.get("Sig")
        if not isinstance(kid, str) or not isinstance(sig_text, str):
            continue
        seen_ids.append(kid)
        if kid in trusted:
            try:
                entries.append((kid, unb64(sig_text, "Sig", 64)))
            except ValueError:
                entries.append((kid, b""))
    if not entries:
        raise UntrustedKeyError(
            f"{source} is signed by key(s) {', '.join(seen_ids) or 'none'}, none of which this app "
            f"trusts ({', '.join(sorted(trusted))}); a rotated-out or foreign key was used: the "
            "publisher must sign with a key listed in the app's public_keys"
        )

    msg = signed_message(
        cmd_name=m_cmd, platform=m_plat, version=manifest.version, sha256=manifest.sha256,
        size=size, serial=serial, expires=exp_text, kind=extra.get(KIND_KEY), notes=extra.get(NOTES_KEY),
    )
    signing = nacl_signing()
    from nacl.exceptions import BadSignatureError as _NaclBad

    good: Optional[str] = None
    for kid, sig in entries:
        if len(sig) != 64:
            continue
        try:
            signing.VerifyKey(trusted[kid]).verify(msg, sig)
        except (_NaclBad, ValueError, TypeError):
            continue
        good = kid
        break
    if good is None:
        raise BadSignatureError(
            f"{source}: the signature by trusted key {entries[0][0]} does not match the manifest "
            f"(Version {manifest.version!r}, its Sha256, Size, Serial or Expires were altered after "
            "signing); refusing it. The server or the network is serving forged data"
        )
    if m_cmd != cmd_name or m_plat != platform:
        raise BindingMismatchError(
            f"{source} is validly signed, but for {m_cmd!r} on {m_plat!r}, not for this app "
            f"({cmd_name!r} on {platform!r}); the server put another app's or platform's "
            "manifest at this URL: the publisher must fix the tree"
        )
    now = now or _dt.datetime.now(_dt.timezone.utc)
    if expires is not None and now >= expires:
        raise ExpiredManifestError(
            f"{source} expired at {exp_text} (version {manifest.version!r}, serial {serial}); "
            "an attacker may be freezing this app on an old release, or the publisher must "
            "re-sign the current release with a later --expires"
        )
    if min_serial is not None:
        if serial < min_serial:
            raise RollbackError(
                f"{source} has serial {serial} (version {manifest.version!r}), lower than serial "
                f"{min_serial} already accepted: an old manifest is being replayed to roll this app "
                "back; a deliberate rollback must be published with `pyi-selfupdate rollback`"
            )
        if serial == min_serial and min_serial_version is not None and manifest.version != min_serial_version:
            raise MixAndMatchError(
                f"{source} has serial {serial} for version {manifest.version!r}, but serial {serial} "
                f"was already accepted for version {min_serial_version!r}; two releases share a serial: "
                "the publisher must release again (the serial grows by one each time)"
            )
    return SignedInfo(size=size, serial=serial, expires=expires, key_id=good)


def is_signed(manifest: Manifest) -> bool:
    """True if the manifest carries a ``Signatures`` field."""
    return bool(manifest.extra.get("Signatures"))


# ---------------------------------------------------------------- serial state


@dataclass(frozen=True)
class SerialState:
    """The highest serial a client accepted, and the version it named."""

    serial: int
    version: str


def read_serial_state(path: Union[str, "os.PathLike[str]"]) -> Optional[SerialState]:
    """Read the state file; ``None`` if it does not exist.

    A damaged file is a :class:`SignatureError`: forgetting the serial would
    reopen the door to rollbacks, so the fix (deleting the file) is left to a person.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read(4096)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SignatureError(
            f"cannot read the accepted-serial file {path} ({exc.strerror}); fix its permissions"
        ) from None
    try:
        doc = json.loads(data.decode("utf-8"))
        return SerialState(check_int(doc["Serial"], "Serial"), str(doc["Version"]))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise SignatureError(
            f"the accepted-serial file {path} is damaged; delete it to accept the server's current "
            "release again (this re-allows any validly signed serial once)"
        ) from None


def write_serial_state(path: Union[str, "os.PathLike[str]"], state: SerialState) -> SerialState:
    """Record ``state`` unless the file holds a serial as high already; return what it holds then.

    Call it under :func:`serial_lock` (the read-compare-write must not interleave
    with another process's). The file is replaced atomically under a fresh,
    unpredictable temporary name (:func:`~pyi_selfupdate._files.write_atomic`).
    """
    current = read_serial_state(path)
    if current is not None and current.serial >= state.serial:
        return current
    data = json.dumps({"Serial": state.serial, "Version": state.version}).encode("utf-8")
    write_atomic(path, data)
    return state


@contextlib.contextmanager
def serial_lock(path: Union[str, "os.PathLike[str]"]) -> Iterator[None]:
    """Hold ``<path>.lock`` exclusively: one process at a time reads, checks and raises the serial.

    Without it two processes that each read serial 3 could write 5 and then 4,
    lowering it. The lock file is created mode 0600 (another user could hold a
    lock on a file he can open), never through a symlink. Waits at most
    ``LIMITS.state_lock_wait`` seconds for another process; :class:`InstallError`
    naming the lock file then, or when it cannot be opened.
    """
    from ._files import open_lock_file, try_lock, unlock

    lock_path = os.fspath(path) + ".lock"
    try:
        os.makedirs(os.path.dirname(os.path.abspath(lock_path)), exist_ok=True)
        fd = open_lock_file(lock_path)
    except OSError as exc:
        raise InstallError(
            f"cannot open {lock_path} ({exc.strerror or exc}) to record the accepted serial; make "
            f"{os.path.dirname(os.path.abspath(lock_path))} writable by the user running the app"
        ) from None
    try:
        deadline = time.monotonic() + LIMITS.state_lock_wait
        while not try_lock(fd):
            if time.monotonic() >= deadline:
                raise InstallError(
                    f"another process has held {lock_path} for over {LIMITS.state_lock_wait:g} s; "
                    "the accepted serial cannot be recorded: end that process (or remove the lock "
                    "file if it belongs to another user) and retry"
                )
            time.sleep(0.01)
        yield
    finally:
        unlock(fd)
        os.close(fd)


# ------------------------------------------------------------- client policy


def check_public_keys(public_keys: Any) -> List[str]:
    """Validate the ``public_keys`` setting; return it as a list of ``ed25519:...`` strings.

    ``None`` or an empty list means "no keys" (go-selfupdate's unauthenticated mode).
    """
    if public_keys is None:
        return []
    if isinstance(public_keys, (str, bytes)):
        public_keys = [public_keys]
    keys = []
    for item in public_keys:
        raw = bytes(item) if isinstance(item, (bytes, bytearray)) else parse_public_key(item)
        if len(raw) != 32:
            raise ConfigError("a raw public key must be 32 bytes; use the ed25519:<base64> form")
        keys.append(format_public_key(raw))
    return keys


def signed_body_cap(size: int) -> int:
    """The most bytes a patch or ``.gz`` body may have for a binary of ``size`` bytes.

    Compression of incompressible data adds well under 1 %; a quarter plus
    64 KiB bounds any real release while ending an endless body early.
    """
    return size + size // 4 + (64 << 10)
