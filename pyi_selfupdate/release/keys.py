"""Release side of signed updates: private key files, keygen, and signing a release.

``pyi-selfupdate keygen`` writes a key with :func:`write_private_key`; the sign
plugin loads it with :func:`load_private_key` and adds :func:`sign_fields` to
each manifest. The signed format and its verification live in
:mod:`pyi_selfupdate.signing`, which the running app needs; nothing here is
part of a frozen app.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import stat
from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

from ..errors import ConfigError
from ..protocol import FILE, validate_name
from ..signing import (
    b64,
    check_int,
    nacl_signing,
    unb64,
    format_public_key,
    key_id,
    parse_expires,
    signed_message,
)

__all__ = [
    "PRIVATE_KEY_PREFIX",
    "PrivateKey",
    "generate_private_key",
    "write_private_key",
    "load_private_key",
    "format_expires",
    "sign_fields",
]

log = logging.getLogger("pyi_selfupdate.release")

#: Private key files hold one line ``ed25519-private:<base64 of the 32-byte seed>``.
PRIVATE_KEY_PREFIX = "ed25519-private:"


@dataclass(frozen=True)
class PrivateKey:
    """An Ed25519 signing key (the 32-byte seed) and where it came from."""

    seed: bytes
    source: str = "<memory>"

    def __repr__(self) -> str:  # never show the secret
        return f"PrivateKey(key_id={self.key_id!r}, source={self.source!r})"

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte public key."""
        return bytes(nacl_signing().SigningKey(self.seed).verify_key)

    @property
    def public_key_text(self) -> str:
        """The public key as ``ed25519:<base64>``."""
        return format_public_key(self.public_key)

    @property
    def key_id(self) -> str:
        """Short id of the public key, as written in ``Signatures[].KeyId``."""
        return key_id(self.public_key)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte Ed25519 signature of ``message``."""
        return bytes(nacl_signing().SigningKey(self.seed).sign(message).signature)


def generate_private_key() -> PrivateKey:
    """A new random Ed25519 key (seed from the operating system's CSPRNG)."""
    return PrivateKey(os.urandom(32))


def _key_file_text(key: PrivateKey) -> str:
    return (
        "# pyi-selfupdate Ed25519 private key for signing releases. Keep it secret:\n"
        "# whoever holds it can make every app that trusts it install anything.\n"
        f"# public key: {key.public_key_text}\n"
        f"{PRIVATE_KEY_PREFIX}{b64(key.seed)}\n"
    )


def write_private_key(path: Union[str, "os.PathLike[str]"], key: PrivateKey) -> None:
    """Create ``path`` holding ``key``, mode 0600; never overwrite an existing file.

    Raises :class:`ConfigError` if ``path`` exists (or cannot be created).
    """
    path = os.fspath(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise ConfigError(
            f"{path} already exists and is left untouched (a key is never overwritten: that "
            "would lock every app that trusts it out of updates); choose another file name"
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot create the key file {path}: {exc.strerror}; choose a writable path") from None
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fd = -1
            fh.write(_key_file_text(key))
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        if fd >= 0:
            os.close(fd)
        try:
            os.unlink(path)
        except OSError:
            pass
        raise


def load_private_key(path: Union[str, "os.PathLike[str]"]) -> PrivateKey:
    """Read a key file written by ``pyi-selfupdate keygen``.

    Logs a warning when the file is readable by others than its owner.
    """
    path = os.fspath(path)
    try:
        with open(path, "r", encoding="ascii") as fh:
            st = os.fstat(fh.fileno())
            text = fh.read(4096)
    except FileNotFoundError:
        raise ConfigError(
            f"signing key {path} does not exist; create one with `pyi-selfupdate keygen {path}`"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the signing key {path}: {exc}; check the path") from None
    if os.name == "posix" and stat.S_IMODE(st.st_mode) & 0o077:
        log.warning(
            "signing key %s is readable by other users (mode %o); run `chmod 600 %s`",
            path, stat.S_IMODE(st.st_mode), path,
        )
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(PRIVATE_KEY_PREFIX):
            try:
                seed = unb64(line[len(PRIVATE_KEY_PREFIX):], "the key", 32)
            except ValueError as exc:
                raise ConfigError(f"{path} is damaged ({exc}); restore it from your backup") from None
            return PrivateKey(seed, source=path)
    raise ConfigError(
        f"{path} is not a pyi-selfupdate signing key (no {PRIVATE_KEY_PREFIX!r} line); "
        "pass the file written by `pyi-selfupdate keygen`"
    )


# --------------------------------------------------------------------- signing


def format_expires(when: _dt.datetime) -> str:
    """RFC 3339 UTC with second precision: ``2026-12-01T00:00:00Z``."""
    if when.tzinfo is None:
        raise ValueError("expiry times must be timezone-aware")
    return when.astimezone(_dt.timezone.utc).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def _normalize_expires(expires: Union[None, str, _dt.datetime]) -> Optional[str]:
    if expires is None:
        return None
    if isinstance(expires, _dt.datetime):
        return format_expires(expires)
    parse_expires(expires)
    return expires


def sign_fields(
    private_keys: Sequence[PrivateKey],
    *,
    cmd_name: str,
    platform: str,
    version: str,
    sha256: bytes,
    size: int,
    serial: int,
    expires: Union[None, str, _dt.datetime] = None,
    kind: str = FILE,
    notes: Optional[str] = None,
) -> dict:
    """The extra manifest fields that sign one release with every key in ``private_keys``.

    Returns an ordered dict (``CmdName, Platform, Size, Serial, [Expires,] Signatures``)
    to merge into the manifest after ``Version`` and ``Sha256``.
    """
    if not private_keys:
        raise ConfigError("no signing key given; pass --sign-key KEYFILE (create one with keygen)")
    for value, what in ((cmd_name, "cmd name"), (platform, "platform"), (version, "version")):
        validate_name(value, what)
    if len(sha256) != 32:
        raise ValueError("sha256 must be the 32 raw bytes of the digest")
    check_int(size, "size")
    check_int(serial, "serial")
    exp = _normalize_expires(expires)
    msg = signed_message(
        cmd_name=cmd_name, platform=platform, version=version, sha256=bytes(sha256),
        size=size, serial=serial, expires=exp, kind=kind, notes=notes,
    )
    sigs: List[dict] = []
    seen = set()
    for key in private_keys:
        kid = key.key_id
        if kid in seen:
            continue
        seen.add(kid)
        sigs.append({"KeyId": kid, "Sig": b64(key.sign(msg))})
    fields: dict = {"CmdName": cmd_name, "Platform": platform, "Size": size, "Serial": serial}
    if exp is not None:
        fields["Expires"] = exp
    fields["Signatures"] = sigs
    return fields
