"""``pyi-selfupdate ls [OUT]``: a release tree at a glance.

For each cmd name and platform: the current version (the manifest), its kind,
size and ``.gz`` size, whether it is signed (serial, expiry, key ids; with
``--public-key`` the signature is verified), every released version with its
``.gz`` size, and every patch (from -> to, size). Read only; symbolic links in
the tree are refused, as the release tool refuses them.
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from .. import signing
from ..errors import ReleaseError, SelfUpdateError
from ._model import human_size
from ._tree import read_tree_manifest

__all__ = ["PlatformListing", "list_tree", "format_listing"]


@dataclass
class PlatformListing:
    """One ``<cmd>/<plat>``: the manifest's promises, the releases and the patches."""

    cmd_name: str
    platform: str
    current: Optional[str] = None
    kind: str = "file"
    size: Optional[int] = None
    signed: bool = False
    serial: Optional[int] = None
    expires: Optional[str] = None
    key_ids: List[str] = field(default_factory=list)
    verified: str = ""  #: with public keys: "valid (key ...)" or why not
    releases: Dict[str, int] = field(default_factory=dict)  #: version -> .gz bytes
    patches: List[Tuple[str, str, int]] = field(default_factory=list)  #: (from, to, bytes)
    problems: List[str] = field(default_factory=list)


def list_tree(out: "str | os.PathLike[str]", public_keys: Sequence[str] = (),
              now: Optional[_dt.datetime] = None) -> List[PlatformListing]:
    """Everything :func:`format_listing` shows, per cmd name and platform (sorted)."""
    root = Path(out)
    if not root.is_dir():
        raise ReleaseError(f"{root} is not a release tree folder; give the -o folder of "
                           "`pyi-selfupdate release` (default: public)")
    keys = signing.check_public_keys(list(public_keys)) if public_keys else []
    listings: List[PlatformListing] = []
    for cmd_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink()):
        cmd = cmd_dir.name
        plats = {p.name[:-5] for p in cmd_dir.iterdir() if p.name.endswith(".json") and p.is_file()}
        versions = sorted(p for p in cmd_dir.iterdir() if p.is_dir() and not p.is_symlink())
        for v in versions:
            plats |= {f.name[:-3] for f in v.iterdir() if f.name.endswith(".gz")}
        for plat in sorted(plats):
            item = PlatformListing(cmd, plat)
            _manifest(root, item, keys, now)
            for v in versions:
                gz = v / f"{plat}.gz"
                if gz.is_file() and not gz.is_symlink():
                    item.releases[v.name] = gz.stat().st_size
                for new in sorted(p for p in v.iterdir() if p.is_dir() and not p.is_symlink()):
                    patch = new / plat
                    if patch.is_file() and not patch.is_symlink():
                        item.patches.append((v.name, new.name, patch.stat().st_size))
            if item.current is not None and item.current not in item.releases:
                item.problems.append(f"the current version {item.current} has no .gz: clients that "
                                     "cannot patch fail; release it again")
            listings.append(item)
    return listings


def _manifest(root: Path, item: PlatformListing, keys: List[str], now: Optional[_dt.datetime]) -> None:
    try:
        manifest = read_tree_manifest(root, f"{item.cmd_name}/{item.platform}.json")
    except ReleaseError as exc:
        item.problems.append(str(exc))
        return
    if manifest is None:
        item.problems.append("no manifest: clients see no release")
        return
    item.current = manifest.version
    try:
        item.kind = manifest.kind
    except SelfUpdateError as exc:
        item.problems.append(str(exc))
    extra = manifest.extra
    item.size = extra.get("Size") if isinstance(extra.get("Size"), int) else None
    sigs = extra.get("Signatures")
    item.signed = bool(sigs)
    if item.signed:
        item.serial = extra.get("Serial") if isinstance(extra.get("Serial"), int) else None
        item.expires = extra.get("Expires") if isinstance(extra.get("Expires"), str) else None
        item.key_ids = [s.get("KeyId", "?") for s in sigs if isinstance(s, dict)] if isinstance(sigs, list) else []
    if keys:
        try:
            info = signing.verify_manifest(manifest, cmd_name=item.cmd_name, platform=item.platform,
                                           public_keys=keys, now=now)
            item.verified = f"valid (key {info.key_id})"
        except SelfUpdateError as exc:
            item.verified = f"REFUSED: {exc}"


def _expiry(text: Optional[str], now: _dt.datetime) -> str:
    if not text:
        return "never"
    try:
        when = signing.parse_expires(text)
    except ValueError:
        return f"{text} (unreadable)"
    days = (when - now).total_seconds() / 86400
    return f"{text} ({'EXPIRED' if days <= 0 else f'in {days:.0f} d'})"


def format_listing(listings: List[PlatformListing], now: Optional[_dt.datetime] = None) -> str:
    """The listing for people: one block per cmd name and platform."""
    now = now or _dt.datetime.now(_dt.timezone.utc)
    if not listings:
        return "no release in this tree (write one with `pyi-selfupdate release PATH VERSION -o OUT`)"
    lines: List[str] = []
    for it in listings:
        head = f"{it.cmd_name} {it.platform}: current {it.current or '-'}"
        if it.current is not None:
            head += f" ({it.kind}" + (f", {human_size(it.size)}" if it.size is not None else "") + ")"
        lines.append(head)
        if it.current is not None:
            if it.signed:
                sig = (f"  signed: serial {it.serial}, expires {_expiry(it.expires, now)}, "
                       f"key(s) {', '.join(it.key_ids) or '-'}")
            else:
                sig = "  unsigned"
            lines.append(sig + (f"; signature {it.verified}" if it.verified else ""))
        if it.releases:
            lines.append("  releases: " + ", ".join(
                f"{v} (.gz {human_size(n)})" + (" *" if v == it.current else "")
                for v, n in it.releases.items()))
        if it.patches:
            lines.append("  patches:  " + ", ".join(f"{a} -> {b} ({human_size(n)})" for a, b, n in it.patches))
        else:
            lines.append("  patches:  none")
        if it.current is not None:
            missing = [v for v in it.releases if v != it.current
                       and (v, it.current) not in {(a, b) for a, b, _ in it.patches}]
            if missing:
                lines.append(f"  to {it.current} without a patch (full .gz): {', '.join(missing)}")
        for problem in it.problems:
            lines.append(f"  problem: {problem}")
    return "\n".join(lines)
