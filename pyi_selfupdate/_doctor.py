"""``pyi-selfupdate doctor APP``: why an installed app will, or will not, update.

:func:`diagnose` reads, and never writes:

- the configuration embedded in the app (a onefile executable, a onedir folder
  or its executable, a macOS ``.app``), with the reader the release tool uses;
- its state beside it (:mod:`pyi_selfupdate._schedule`: next check, failures,
  accepted serial, downloads in progress, the install not yet reported, the
  log; :mod:`pyi_selfupdate._staging`: a staged update and its sidecar);
- the server, as the app would ask it (the manifest, its signature checked
  with the embedded keys and the accepted serial, then the size of the patch
  or ``.gz`` the app would take, without downloading its body);
- whether the user running it can write the folder an update is written to.

It ends with one verdict line and an exit status (:data:`STATUS`). Nothing is
created, renamed or removed: no lock, no schedule, no probe file (writability
is asked with :func:`os.access`), no serial recorded.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from . import _schedule, _staging, signing as _signing
from .errors import ConfigError, FetchError, SelfUpdateError, SignatureError
from .fetch import Budget, RequestsRequester, check_transport, close_quietly, open_stream, read_all
from .protocol import DEV_VERSION, FILE, FOLDER, current_platform, decode_manifest, full_url, manifest_url, patch_url
from .settings import DEFAULTS, LIMITS, Settings

__all__ = ["Diagnosis", "diagnose", "STATUS", "UP_TO_DATE", "WILL_UPDATE", "CANNOT_UPDATE",
           "SERVER_DOWN", "REFUSED"]

#: Exit statuses of ``doctor`` (2 is the CLI's own: bad arguments, an unreadable path).
UP_TO_DATE, WILL_UPDATE, CANNOT_UPDATE, SERVER_DOWN, REFUSED = 0, 1, 3, 4, 5
STATUS = {
    UP_TO_DATE: "up to date",
    WILL_UPDATE: "will update: an update is staged, or the server offers one the app takes at its next check",
    CANNOT_UPDATE: "will not update by itself: the cause is in the app, its configuration or its folder",
    SERVER_DOWN: "the server cannot be reached, or answers an error for the manifest",
    REFUSED: "the app refuses what the server offers (signature, serial, expiry, kind), or the "
             "release lacks both the patch and the .gz",
}

#: Lines of the app's update log shown.
LOG_LINES = 8


@dataclass
class Diagnosis:
    """What :func:`diagnose` found: ``rows`` (label, text) for people, the verdict and its status."""

    rows: List[Tuple[str, str]] = field(default_factory=list)
    verdict: str = ""
    status: int = UP_TO_DATE
    log_tail: List[str] = field(default_factory=list)

    def add(self, label: str, text: str) -> None:
        self.rows.append((label, text))

    def format(self) -> str:
        width = max([len(label) for label, _ in self.rows] + [8])
        lines = [f"{label.ljust(width)}  {text}".rstrip() for label, text in self.rows]
        if self.log_tail:
            lines.append(f"{'log'.ljust(width)}  last {len(self.log_tail)} line(s):")
            lines += [f"{''.ljust(width)}    {line}" for line in self.log_tail]
        lines.append(f"verdict: {self.verdict}")
        return "\n".join(lines)


def _size(n: Optional[int]) -> str:
    if n is None:
        return "size unknown"
    from .release._model import human_size

    return human_size(n)


def _span(seconds: float) -> str:
    """``3 h``, ``12 min``, ``40 s``, ``2 d``."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h".replace(".0 h", " h")
    return f"{seconds / 86400:.1f} d".replace(".0 d", " d")


# ------------------------------------------------------------------------ the app


def find_app(path: str) -> Tuple[str, str, str, Optional[Dict[str, Any]]]:
    """``(target, kind, executable, config)`` of the app at ``path``.

    ``path`` is a onefile executable, a onedir app folder or its executable, or
    a macOS ``.app`` bundle (or its executable). ``config`` is None when the app
    embeds no pyi-selfupdate configuration.
    """
    from .release._builtin.frozen import read_embedded_config

    path = os.path.realpath(path)
    if not os.path.exists(path):
        raise ConfigError(f"{path} does not exist; give the path of an installed app "
                          "(its executable, its onedir folder or its .app bundle)")
    if os.path.isfile(path):
        folder = os.path.dirname(path)
        head, macos = os.path.split(folder)
        app, contents = os.path.split(head)
        if macos == "MacOS" and contents == "Contents" and app.endswith(".app"):
            return app, FOLDER, path, read_embedded_config(app)
        config = read_embedded_config(path)
        if config is not None:
            return path, FILE, path, config
        folder_config = read_embedded_config(folder)
        if folder_config is not None:  # the executable of a onedir app
            return folder, FOLDER, path, folder_config
        return path, FILE, path, None
    config = read_embedded_config(path)
    exe = _folder_executable(path)
    return path, FOLDER, exe, config


def _folder_executable(folder: str) -> str:
    """The executable of a onedir folder (named as the folder) or of a ``.app`` bundle."""
    if folder.endswith(".app"):
        macos = os.path.join(folder, "Contents", "MacOS")
        try:
            names = sorted(os.listdir(macos))
        except OSError:
            names = []
        return os.path.join(macos, names[0]) if names else folder
    base = os.path.basename(folder)
    for name in (base, base + ".exe"):
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    return folder


# ----------------------------------------------------------------------- the state


def _read_small(path: str, limit: int = 1 << 16) -> Optional[bytes]:
    try:
        with open(path, "rb") as fh:
            return fh.read(limit)
    except OSError:
        return None


def _staged(target: str) -> Tuple[Optional[Dict[str, Any]], str]:
    """The staged update's sidecar as the app would read it, without discarding anything."""
    sidecar = _staging.sidecar_file(target)
    raw = _read_small(sidecar)
    staged = os.fspath(_staging.staged_path(target))
    if raw is None:
        return None, ("an incomplete staging (no sidecar): the app removes it" if os.path.exists(staged) else "")
    try:
        doc = json.loads(raw.decode("utf-8"))
        if not isinstance(doc, dict) or not all(isinstance(doc.get(k), str) for k in ("from", "to", "sha256")):
            raise ValueError("fields missing")
    except ValueError as exc:
        return None, f"a corrupt sidecar {sidecar} ({exc}): the app discards it"
    if not os.path.exists(staged):
        return None, f"a sidecar without its staged update ({sidecar}): the app removes it"
    return doc, ""


def _tail(state: str) -> List[str]:
    lines: List[str] = []
    for name in ("log.1", "log"):
        raw = _read_small(os.path.join(state, name), LIMITS.log_bytes)
        if raw:
            lines += raw.decode("utf-8", "replace").splitlines()
    return lines[-LOG_LINES:]


def _writable(folder: str) -> bool:
    """Whether the user running this can create files in ``folder`` (asked, never tried)."""
    kwargs = {"effective_ids": True} if os.access in os.supports_effective_ids else {}
    return os.access(folder, os.W_OK | os.X_OK, **kwargs)


# --------------------------------------------------------------------- diagnose


def diagnose(path: str, *, deadline: float = 20.0, now: Optional[_dt.datetime] = None) -> Diagnosis:
    """Diagnose the app at ``path`` (see the module docstring); never writes anything."""
    d = Diagnosis()
    target, kind, exe, config = find_app(path)
    d.add("app", f"{target} ({'onefile' if kind == FILE else 'folder app'})")
    if config is None:
        d.verdict = (f"never updates: {exe} embeds no pyi-selfupdate configuration; build it with "
                     "`import pyi_selfupdate` in the app (or --hidden-import pyi_selfupdate) and "
                     "pyi-selfupdate installed, and ship that build")
        d.status = CANNOT_UPDATE
        return d
    s = Settings.from_mapping(config)
    cmd = s.cmd_name or os.path.basename(exe)[:-4 if exe.lower().endswith(".exe") else None]
    plat = s.platform or current_platform()
    version = str(s.current_version)
    keys = list(s.public_keys or [])
    api = s.api_url or ""
    bin_url, diff_url = s.bin_url or api, s.diff_url or api
    d.add("version", version)
    d.add("cmd name", cmd + ("" if s.cmd_name else " (the executable's name: not fixed at build time)"))
    d.add("platform", plat)
    d.add("mode", f"{s.mode}, a check every {s.check_time:g} h"
          + (f" + up to {s.randomize_time:g} h" if s.randomize_time else "")
          + (", at every launch (force_check)" if s.force_check else "")
          + ("" if s.enabled else ", DISABLED (enabled = false)"))
    d.add("urls", api + ("" if bin_url == api else f"; .gz {bin_url}") + ("" if diff_url == api else f"; patches {diff_url}"))
    if keys:
        ids = ", ".join(_signing.key_id(_signing.parse_public_key(k)) for k in keys)
        d.add("keys", f"{len(keys)} public key(s), id {ids}: only signed releases are installed")
    else:
        d.add("keys", "none: the app installs whatever the server offers (unsigned)")

    # --- state beside the app
    dir_ = s.dir if s.dir is not None else DEFAULTS["dir"]
    state = _schedule.state_folder(target, dir_, cmd)
    d.add("state", state + ("" if os.path.isdir(state) else " (not created yet: never checked)"))
    now = now or _dt.datetime.now().astimezone()
    cktime = _schedule.cktime_file(target, dir_, cmd)
    next_check = _schedule.read_next_check(cktime) if os.path.exists(cktime) else None
    failures = _schedule.read_failures(os.path.join(state, "failures"))
    due = s.force_check or next_check is None or now >= next_check
    if next_check is None:
        d.add("next check", "at the next launch (no schedule recorded)")
    else:
        wait = (next_check - now).total_seconds()
        d.add("next check", f"{_schedule.format_rfc3339(next_check)}, "
              + ("due now" if wait <= 0 else f"in {_span(wait)}")
              + (" (force_check: at every launch anyway)" if s.force_check and wait > 0 else ""))
    if failures:
        d.add("failures", f"{failures} failed check(s) in a row: backing off (the wait doubles each time, "
              f"at most {s.check_time:g} h)")
    serial_state = None
    serial_note = ""
    for serial_file in (os.path.join(state, "serial"), _schedule.legacy_file(target, dir_, "serial")):
        if os.path.exists(serial_file):
            try:
                serial_state = _signing.read_serial_state(serial_file)
            except SignatureError as exc:
                serial_note = str(exc)
            break
    if serial_state is not None:
        d.add("serial", f"{serial_state.serial} accepted (version {serial_state.version})")
    elif serial_note:
        d.add("serial", serial_note)
    partial = os.path.join(state, "partial")
    try:
        parts = [e for e in os.scandir(partial) if e.is_file() and not e.name.endswith(".json")]
    except OSError:
        parts = []
    if parts:
        d.add("downloads", f"{len(parts)} in progress, {_size(sum(e.stat().st_size for e in parts))} "
              "received: the next check resumes them")
    raw = _read_small(os.path.join(state, "installed.json"))
    if raw:
        try:
            rec = json.loads(raw.decode("utf-8"))
            d.add("installed", f"{rec.get('from')} -> {rec.get('to')} via {rec.get('method')}, "
                  "not yet reported to the app (pyi_selfupdate.installed_update())")
        except ValueError:
            pass
    staged, staged_note = _staged(target)
    if staged is not None:
        d.add("staged", f"{staged['from']} -> {staged['to']} via {staged.get('method', 'full')} "
              f"({_size(int(staged.get('bytes') or 0))} fetched)")
    elif staged_note:
        d.add("staged", staged_note)
    d.log_tail = _tail(state)

    folder = os.path.dirname(target)
    writable = _writable(folder)
    d.add("folder", f"{folder}: " + ("writable" if writable else "NOT writable by this user"))

    # --- what stops it whatever the server says
    blocker = ""
    if not s.enabled:
        blocker = "never updates: it was built with enabled = false; rebuild it with enabled = true"
    elif version == DEV_VERSION:
        blocker = f"never updates: version {DEV_VERSION!r} never does; build it with a real version"
    elif not writable:
        blocker = (f"cannot update: {folder} is not writable by this user, and an update is written "
                   "there; install the app per user (Windows %LOCALAPPDATA%\\Programs, macOS "
                   "~/Applications, Linux ~/.local) or make the folder writable by its users")
    try:
        for what, url in (("api_url", api), ("bin_url", bin_url), ("diff_url", diff_url)):
            check_transport(url, what, signed=bool(keys), allow_http=s.allow_http)
    except ConfigError as exc:
        blocker = blocker or f"cannot update: {exc}"

    # --- the server
    requester = RequestsRequester()
    budget = Budget(deadline)
    url = manifest_url(api, cmd, plat)
    try:
        manifest = decode_manifest(read_all(requester, url, LIMITS.manifest_bytes, budget), source=url)
    except FetchError as exc:
        d.add("server", f"{url}: {exc}")
        if blocker:
            return _end(d, blocker, CANNOT_UPDATE)
        backoff = ""
        if failures and next_check is not None and next_check > now:
            backoff = f"; the app backs off: next attempt in {_span((next_check - now).total_seconds())}"
        what = "the update server answers an error for the manifest" if " answered HTTP " in str(exc) \
            else "cannot reach the update server"
        return _end(d, f"{what}: {exc}{backoff}", SERVER_DOWN)
    except SelfUpdateError as exc:
        d.add("server", f"{url}: {exc}")
        return _end(d, blocker or f"refuses the server's manifest: {exc}", CANNOT_UPDATE if blocker else REFUSED)
    signed = manifest.extra.get("Signatures")
    shown = f"{url}: version {manifest.version}"
    if signed:
        shown += f", signed, serial {manifest.extra.get('Serial')}"
        if manifest.extra.get("Expires"):
            shown += f", expires {manifest.extra.get('Expires')}"
    else:
        shown += ", unsigned"
    d.add("server", shown)
    if keys:
        try:
            info = _signing.verify_manifest(
                manifest, cmd_name=cmd, platform=plat, public_keys=keys,
                min_serial=serial_state.serial if serial_state else None,
                min_serial_version=serial_state.version if serial_state else None, source=url)
            d.add("signature", f"valid, key {info.key_id}, serial {info.serial}")
        except SelfUpdateError as exc:
            d.add("signature", f"REFUSED: {exc}")
            return _end(d, blocker or f"refuses the update: {exc}", CANNOT_UPDATE if blocker else REFUSED)
    if manifest.version == version:
        if blocker and not blocker.startswith("cannot update:"):
            return _end(d, blocker, CANNOT_UPDATE)
        return _end(d, f"up to date: the server offers {version}, the version installed"
                    + (f"; but {blocker[len('cannot update: '):]}" if blocker else ""),
                    CANNOT_UPDATE if blocker else UP_TO_DATE)
    if manifest.kind != kind:
        return _end(d, f"refuses {manifest.version}: it is released as a {manifest.kind}, and this app "
                    f"updates as a {kind}; release the build of the same kind (README: changing an "
                    "app's kind)", REFUSED)

    # --- the download it would take
    cap = _signing.signed_body_cap(info.size) if keys else LIMITS.binary_bytes
    how = ""
    purl = patch_url(diff_url, cmd, version, manifest.version, plat)
    psize, perr = _probe(requester, purl, cap, budget)
    d.add("patch", f"{purl}: " + (perr or _size(psize)))
    if not perr:
        how = f"through a {_size(psize)} patch"
    else:
        gurl = full_url(bin_url, cmd, manifest.version, plat)
        gsize, gerr = _probe(requester, gurl, cap, budget)
        d.add("full", f"{gurl}: " + (gerr or _size(gsize)))
        if gerr:
            return _end(d, blocker or f"cannot update to {manifest.version}: the server has neither the "
                        f"patch nor the .gz ({gerr}); publish the whole release tree "
                        "(`pyi-selfupdate ls` shows what it holds)", CANNOT_UPDATE if blocker else REFUSED)
        how = f"through the full {_size(gsize)} .gz (no patch from {version})"
    if blocker:
        return _end(d, f"{blocker} (the server offers {manifest.version} {how})", CANNOT_UPDATE)

    # --- when
    if staged is not None and staged["from"] == version and staged["to"] == manifest.version \
            and staged["sha256"] == _signing.b64(manifest.sha256):
        if s.mode == "manual":
            return _end(d, f"{manifest.version} is staged: the app installs it when its code calls "
                        "Updater.install_staged() (mode manual)", WILL_UPDATE)
        return _end(d, f"installs {manifest.version} at its next launch (staged)", WILL_UPDATE)
    if s.mode == "manual":
        return _end(d, f"does not update by itself (mode manual): its code must call Updater; the "
                    f"server offers {manifest.version} {how}", CANNOT_UPDATE)
    after = "installs it at the launch after" if s.mode == "background" else "installs it and restarts"
    if due:
        return _end(d, f"updates to {manifest.version} at its next launch (the check is due), {how}; "
                    f"it downloads it then and {after}", WILL_UPDATE)
    wait = _span((next_check - now).total_seconds())  # type: ignore[operator]
    backing = f", after {failures} failed check(s) (backing off)" if failures else ""
    return _end(d, f"updates to {manifest.version} at its next check, in {wait}{backing}, {how}",
                WILL_UPDATE)


def _end(d: Diagnosis, verdict: str, status: int) -> Diagnosis:
    d.verdict, d.status = verdict, status
    return d


def _probe(requester: RequestsRequester, url: str, cap: int, budget: Budget) -> Tuple[Optional[int], str]:
    """``(size, "")`` of the file at ``url`` from its headers (the body is not read), or ``(None, why)``."""
    try:
        stream = open_stream(requester, url, budget=budget, cap=cap)
    except SelfUpdateError as exc:
        return None, f"unavailable ({exc})"
    try:
        return getattr(stream, "length", None), ""
    finally:
        close_quietly(stream)
