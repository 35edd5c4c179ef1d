"""Roll back: publish an already released version again, as the newest release."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from ..archive import Unpacker
from ..errors import ReleaseError, SelfUpdateError, SignatureError
from ..protocol import FILE, FOLDER, full_path, manifest_path
from ..settings import LIMITS
from ._builtin.sign import load_keys, signed_record, verify_with_keys
from ._model import ProgressCallback, ReleaseSummary
from ._pipeline import check_name, release
from ._tree import read_gz, read_tree_manifest, record_path, refuse_links
from .keys import PrivateKey

__all__ = ["rollback"]


def _expected(root: Path, cmd_name: str, version: str, plat: str,
              keys: List[PrivateKey]) -> Tuple[int, Optional[bytes], str]:
    """``(size bound, SHA-256 or None, kind)`` the ``.gz`` of ``version`` must match before it is re-released.

    Signing, they come from a manifest one of ``keys`` signed for this
    version: the current manifest, or the record ``<cmd>/<version>/<plat>.json``
    a signed release keeps. Without keys (an unsigned tree trusts its
    server), the bound is ``LIMITS.binary_bytes`` and the kind the current manifest's.
    """
    current_path = manifest_path(cmd_name, plat)
    try:
        current = read_tree_manifest(root, current_path)
    except ReleaseError:
        current = None
    if not keys:
        try:
            kind = current.kind if current is not None else FILE
        except SelfUpdateError:
            kind = FILE
        return LIMITS.binary_bytes, None, kind
    if current is not None and current.version == version:
        try:
            info = verify_with_keys(current, keys, cmd_name=cmd_name, platform=plat,
                                    source=str(root / current_path))
            return info.size, current.sha256, current.kind
        except (SignatureError, SelfUpdateError):
            pass
    found = signed_record(root, keys, cmd_name, version, plat)
    if found is not None:
        return found[1].size, found[0].sha256, found[0].kind
    raise ReleaseError(
        f"no manifest signed by the given key(s) names the hash of {cmd_name} {version} for {plat} "
        f"({record_path(cmd_name, version, plat)} is missing or not signed by them; releases signed "
        "before such records were kept have none), so its .gz in the tree cannot be trusted to be "
        f"re-signed; release the binary itself instead: pyi-selfupdate release PATH {version} "
        "--sign-key KEYFILE (the tree's .gz must then hold the same bytes)"
    )


def _restore(root: Path, cmd_name: str, version: str, plat: str, tmp: Path, keys: List[PrivateKey]) -> Path:
    """The released file, or app folder, of ``version`` for ``plat``, rebuilt from its ``.gz`` in ``tmp``.

    The ``.gz`` is decompressed as a stream, bounded and checked against the
    signed hash (:func:`_expected`). A single file becomes ``tmp/<plat>``; a
    folder release is unpacked to ``tmp/<plat>/<app>``, where the release tool
    finds it again and rebuilds the same archive.
    """
    relpath = full_path(cmd_name, version, plat)
    refuse_links(root, relpath.split("/"))
    gz = root / relpath
    max_size, sha256, kind = _expected(root, cmd_name, version, plat, keys)
    why = "" if sha256 is not None else "LIMITS.binary_bytes"  # signed: read_gz says so
    try:
        if kind != FOLDER:
            with open(tmp / plat, "wb") as dst:
                read_gz(gz, max_size=max_size, sha256=sha256, write=dst.write, why=why)
            return tmp / plat
        (tmp / plat).mkdir()
        unpacked = tmp / plat / cmd_name
        unpacker = Unpacker(unpacked)
        read_gz(gz, max_size=max_size, sha256=sha256, write=unpacker.write, why=why)
        unpacker.close()
    except ReleaseError:
        raise
    except (OSError, SelfUpdateError) as exc:
        raise ReleaseError(f"cannot read the released {gz} ({exc}); restore it from a backup") from None
    if (unpacked / "Contents" / "MacOS").is_dir():  # a macOS bundle keeps its .app name
        unpacked = unpacked.rename(unpacked.with_name(cmd_name + ".app"))
    return unpacked


def rollback(
    out: "str | os.PathLike[str]",
    cmd_name: str,
    version: str,
    *,
    platform: Optional[str] = None,
    options: Optional[Dict[str, Any]] = None,
    progress: Optional[ProgressCallback] = None,
) -> ReleaseSummary:
    """Publish the already released ``version`` again, as the newest release.

    Versions are opaque strings, so going back is going forward: the old
    binary (read back from ``OUT/<cmd>/<version>/<plat>.gz``) is released again,
    which writes patches from the newest other versions to it and a manifest with a
    higher ``Serial``, signed with ``options["sign_keys"]``. Signing, the
    ``.gz`` must match the hash a manifest signed by one of those keys gives
    that version (the current manifest, or the version's record
    ``<cmd>/<version>/<plat>.json``): a ``.gz`` planted in the tree is never
    signed. Clients that verify
    accept it because of the higher serial; a replayed old manifest stays
    refused. ``platform`` limits it to one platform (default: every platform
    released for ``version``). The same call with the current version re-signs
    it (for example to renew an ``Expires``). Returns the release summary.
    """
    check_name(cmd_name, "cmd name")
    check_name(version, "version")
    root = Path(os.fspath(out))
    refuse_links(root, [cmd_name, version])
    app = root / cmd_name
    folder = app / version
    available = sorted(p.name[: -len(".gz")] for p in folder.glob("*.gz")) if folder.is_dir() else []
    if platform is not None:
        available = [p for p in available if p == platform]
    if not available:
        versions = sorted(p.name for p in app.iterdir() if p.is_dir()) if app.is_dir() else []
        raise ReleaseError(
            f"{cmd_name} {version} was never released"
            + (f" for {platform}" if platform else "")
            + f" in {out} (versions there: {', '.join(versions) or 'none'}); "
            "roll back to a version that has a <plat>.gz in the tree"
        )
    tmp = Path(tempfile.mkdtemp(prefix="pyi-selfupdate-rollback-"))
    try:
        keys = load_keys((options or {}).get("sign_keys"))
        sources = {plat: _restore(root, cmd_name, version, plat, tmp, keys) for plat in available}
        if len(available) == 1:
            source = sources[available[0]]
            plat_arg: Optional[str] = available[0]
        else:
            source, plat_arg = tmp, None
        # Going back is the point, and these bytes were released before.
        options = dict(options or {}, allow_older=True, allow_no_updater=True)
        return release(source, version, out, platform=plat_arg, cmd_name=cmd_name,
                       options=options, progress=progress)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
