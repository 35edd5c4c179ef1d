"""Roll back: publish an already released version again, as the newest release."""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional

from ..archive import Unpacker
from ..errors import ReleaseError, SelfUpdateError
from ..protocol import FILE, FOLDER, decode_manifest, full_path, manifest_path
from ._model import ProgressCallback, ReleaseSummary
from ._pipeline import check_name, release

__all__ = ["rollback"]


def _restore(root: Path, cmd_name: str, version: str, plat: str, tmp: Path) -> Path:
    """The released file, or app folder, of ``version`` for ``plat``, rebuilt from its ``.gz`` in ``tmp``.

    A single file becomes ``tmp/<plat>``; a folder release (the current
    manifest says ``Kind: folder``) is unpacked to ``tmp/<plat>/<app>``, where
    the release tool finds it again and rebuilds the same archive.
    """
    gz = root / full_path(cmd_name, version, plat)
    kind = FILE
    try:
        kind = decode_manifest((root / manifest_path(cmd_name, plat)).read_bytes()).kind
    except (OSError, SelfUpdateError):
        pass
    try:
        with gzip.open(gz, "rb") as src:
            if kind != FOLDER:
                with open(tmp / plat, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                return tmp / plat
            (tmp / plat).mkdir()
            unpacked = tmp / plat / cmd_name
            unpacker = Unpacker(unpacked)
            for block in iter(lambda: src.read(1 << 20), b""):
                unpacker.write(block)
            unpacker.close()
    except (OSError, EOFError, SelfUpdateError) as exc:
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
    which writes patches from every other version to it and a manifest with a
    higher ``Serial``, signed with ``options["sign_keys"]``. Clients that verify
    accept it because of the higher serial; a replayed old manifest stays
    refused. ``platform`` limits it to one platform (default: every platform
    released for ``version``). The same call with the current version re-signs
    it (for example to renew an ``Expires``). Returns the release summary.
    """
    check_name(cmd_name, "cmd name")
    check_name(version, "version")
    root = Path(os.fspath(out))
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
        sources = {plat: _restore(root, cmd_name, version, plat, tmp) for plat in available}
        if len(available) == 1:
            source = sources[available[0]]
            plat_arg: Optional[str] = available[0]
        else:
            source, plat_arg = tmp, None
        return release(source, version, out, platform=plat_arg, cmd_name=cmd_name,
                       options=options, progress=progress)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
