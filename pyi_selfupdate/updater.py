"""The client: :class:`Updater`, go-selfupdate's ``Updater`` for Python programs.

::

    from pyi_selfupdate import Updater

    updater = Updater(current_version="1.2", api_url="https://example.com/updates/",
                      cmd_name="myapp")
    result = updater.update()          # None when already current
    if result is not None and result.installed:
        print(f"updated {result.from_version} -> {result.to_version} via {result.method}")

The sequence is go-selfupdate's: GET the manifest ``<api_url><cmd>/<plat>.json``;
if its version differs from ``current_version``, GET the bsdiff patch from the
current version, apply it to the target file and check the SHA-256 the
manifest gives; on any failure of the patch path (HTTP error, network, corrupt
patch, hash mismatch; the reason is logged at WARNING) GET the full ``.gz``,
gunzip it as it streams into a temporary file beside the target, and check its
SHA-256. Only a verified file is ever installed, by an atomic rename
(:mod:`pyi_selfupdate._files`); a failure leaves the target untouched and
raises a :class:`~pyi_selfupdate.errors.SelfUpdateError`.

Versions are opaque strings: any version different from the current one is
installed (older ones too, go-selfupdate's rule), and ``"dev"`` never updates.

Tested on Linux only (POSIX code paths). The Windows paths (swap with a
renamed-aside ``.old``, byte-range lock) are written with care but untested.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple, Union

from . import _files, _instances, _schedule, _staging, signing as _signing
from ._patch import check_sha256, gunzip_to, patch_stream
from .archive import FolderArchive, Unpacker
from .errors import ConfigError, InstallError, PatchError, SelfUpdateError, SignatureError, VerificationError
from .fetch import (
    Budget,
    Requester,
    RequestsRequester,
    Transfer,
    check_transport,
    download,
    read_all,
)
from .protocol import (
    DEV_VERSION,
    FILE,
    FOLDER,
    KINDS,
    Manifest,
    current_platform,
    decode_manifest,
    full_url,
    manifest_url,
    patch_url,
    validate_name,
)
from .settings import DEFAULTS, LIMITS, SettingError, check

# _files, _staging and _schedule import these on first use (the usual launch of a frozen app
# needs none of them). Every install goes through this module and nothing may be
# imported once an install replaced the executable: import them now.
import base64, bisect, ctypes, datetime, json, random, secrets, shutil  # noqa: E401,E402,F401,I001

__all__ = ["Updater", "UpdateResult", "InstalledUpdate"]

log = logging.getLogger("pyi_selfupdate")

_PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class UpdateResult:
    """What :meth:`Updater.update`, :meth:`~Updater.stage` or :meth:`~Updater.install_staged` did.

    - ``from_version`` / ``to_version``: the versions before and after;
    - ``method``: ``"patch"`` (bsdiff patch applied) or ``"full"`` (the ``.gz``);
    - ``bytes_fetched``: bytes downloaded for it (manifest, patch attempt, full);
    - ``target``: the executable updated;
    - ``installed``: True if the target now holds ``to_version``; False if the
      verified binary was only staged beside it, to be installed at the next
      launch (:meth:`Updater.install_staged`), or (Windows folder apps,
      ``install_staged(at_exit=True)``) is switched in once the app has exited;
    - ``notes``: the release notes the manifest carries (``release --notes``), or ``""``.
    """

    from_version: str
    to_version: str
    method: str
    bytes_fetched: int
    target: Path
    installed: bool
    notes: str = ""


@dataclass(frozen=True)
class InstalledUpdate:
    """The update installed before this launch of a frozen app (:func:`pyi_selfupdate.installed_update`).

    ``when`` is the install time (seconds since the epoch), ``notes`` the release
    notes, if the release has any.
    """

    from_version: str
    to_version: str
    when: float
    method: str
    notes: str = ""


class Updater:
    """Checks for, downloads, verifies and installs updates of one executable.

    Keyword arguments mirror go-selfupdate's ``Updater`` fields; the settings a
    frozen app is built with have the same names and defaults
    (:data:`pyi_selfupdate.settings.SETTINGS`, the README's table):

    - ``current_version``: the version running now (``"dev"`` never updates);
    - ``api_url``: base URL of the manifests, ending in ``/``;
    - ``bin_url`` / ``diff_url``: base URLs of the full ``.gz`` binaries and of
      the patches (default: ``api_url``), ending in ``/``;
    - ``dir``: folder, relative to the target's folder, of the ``cktime``
      schedule file (``"update/"``; concatenated with ``"cktime"`` as is);
    - ``cmd_name``: the name in the URLs;
    - ``force_check``: :meth:`background_run` ignores the schedule;
    - ``check_time`` / ``randomize_time``: hours between checks, and the most
      random hours added to each wait;
    - ``requester``: an object with ``fetch(url) -> binary stream``
      (default: :class:`~pyi_selfupdate.fetch.RequestsRequester`);
    - ``on_successful_update``: called with the :class:`UpdateResult` after an
      install (not after a mere staging). It runs after the swap: in a frozen
      app it must not import anything new. An exception it raises is logged
      at ERROR and not propagated: the update has happened;
    - ``target``: the file to update (default: ``sys.executable`` in a frozen
      app; required otherwise). Symlinks are resolved: the real file is updated;
    - ``platform``: ``<os>-<arch>`` as Go names it (default: this machine's);
    - ``public_keys``: ``["ed25519:..."]`` keys that sign releases
      (``pyi-selfupdate keygen``). With keys, only a manifest signed by one of
      them for this cmd name and platform is accepted, never with a serial
      lower than one accepted before (kept in ``<dir>serial`` beside
      ``cktime``), never after its signed expiry, and every download is capped
      by the signed size. Without keys the client trusts the server, as
      go-selfupdate does. See SECURITY.md;
    - ``allow_http``: plain ``http://`` URLs to a non-loopback host are
      allowed by default only with ``public_keys``; True allows them anyway,
      False never;
    - ``redirect_hosts``: host names the server may redirect downloads to (a
      CDN, an object store), followed by the default requester over HTTPS;
      only with ``public_keys`` (a signed manifest binds what is installed,
      wherever it comes from); any other host is refused;
    - ``deadline``: seconds one check-and-download may take in all (manifest,
      patch and full binary), however slowly the server connects, answers,
      redirects or sends; the default requester's connection is shut at that
      moment, a custom requester is checked before each request and after
      each read; None: no limit;
    - ``kind``: ``"file"`` (default: ``target`` is one executable) or
      ``"folder"`` (``target`` is an app folder, a onedir app or a macOS
      ``.app``, updated as a whole through its canonical archive,
      :mod:`pyi_selfupdate.archive`); a release of the other kind is refused;
    - ``progress``: called as ``progress(done, total)`` after every block of
      a download (``total`` None when the server does not say), for a
      progress bar in a GUI app; it runs in the thread that downloads;
    - ``swap_guard``: called right before every swap (under the exclusive
      instance lock); a non-empty string it returns is a reason not to replace
      the target now (the frozen-app bootstrap: other processes still run the
      file), and the verified update is staged instead, for a later launch.

    Invalid settings raise :class:`~pyi_selfupdate.errors.ConfigError` (or
    :class:`~pyi_selfupdate.errors.InvalidNameError` for a name that could
    escape its URL segment).
    """

    def __init__(
        self,
        *,
        current_version: str,
        api_url: str,
        bin_url: Optional[str] = None,
        diff_url: Optional[str] = None,
        dir: str = DEFAULTS["dir"],
        cmd_name: str,
        force_check: bool = DEFAULTS["force_check"],
        check_time: float = DEFAULTS["check_time"],
        randomize_time: float = DEFAULTS["randomize_time"],
        requester: Optional[Requester] = None,
        on_successful_update: Optional[Callable[[UpdateResult], None]] = None,
        target: Optional[_PathLike] = None,
        platform: Optional[str] = None,
        public_keys: Optional[Sequence[str]] = None,
        allow_http: Optional[bool] = DEFAULTS["allow_http"],
        redirect_hosts: Optional[Sequence[str]] = None,
        deadline: Optional[float] = LIMITS.deadline,
        swap_guard: Optional[Callable[[], Optional[str]]] = None,
        kind: str = FILE,
        progress: Optional[Callable[[int, Optional[int]], None]] = None,
    ) -> None:
        self.current_version = validate_name(current_version, "current version")
        self.api_url = _setting("api_url", api_url)
        self.bin_url = _setting("bin_url", bin_url if bin_url is not None else api_url)
        self.diff_url = _setting("diff_url", diff_url if diff_url is not None else api_url)
        if not isinstance(dir, str):
            raise ConfigError(f"dir must be a string such as 'update/', not {dir!r}")
        self.dir = dir
        self.cmd_name = validate_name(cmd_name, "cmd name")
        self.platform = validate_name(
            platform if platform is not None else current_platform(), "platform"
        )
        self.force_check = bool(force_check)
        self.check_time = float(_setting("check_time", check_time))
        self.randomize_time = float(_setting("randomize_time", randomize_time))
        if requester is not None and not callable(getattr(requester, "fetch", None)):
            raise ConfigError("requester must have a fetch(url) method returning a binary stream")
        self.on_successful_update = on_successful_update
        if target is None:
            if not getattr(sys, "frozen", False):
                raise ConfigError(
                    "target is required outside a frozen app: pass target=<path of the "
                    "file to update>"
                )
            target = sys.executable
        self.target = Path(os.path.realpath(os.fspath(target)))
        if kind not in KINDS:
            raise ConfigError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
        if os.path.exists(self.target) and self.target.is_dir() != (kind == FOLDER):
            raise ConfigError(
                f"{self.target} is {'a folder' if self.target.is_dir() else 'a file'}: pass "
                f"kind={FOLDER if self.target.is_dir() else FILE!r} (a onedir app or a macOS .app is "
                "updated as a folder, a onefile app as a file)"
            )
        self.kind = kind
        self.public_keys = _signing.check_public_keys(public_keys)
        self.allow_http = _setting("allow_http", allow_http)
        for what, url in (("api_url", self.api_url), ("bin_url", self.bin_url),
                          ("diff_url", self.diff_url)):
            check_transport(url, what, signed=bool(self.public_keys), allow_http=allow_http)
        self.redirect_hosts: List[str] = _setting("redirect_hosts", redirect_hosts)
        if self.redirect_hosts and not self.public_keys:
            raise ConfigError(
                f"redirect_hosts {self.redirect_hosts!r} needs public_keys: a redirect to another host "
                "lets that host serve what the app installs, which only a signed manifest can bind; "
                "sign releases and set public_keys, or publish at the configured URLs instead"
            )
        self.requester: Requester = requester if requester is not None else RequestsRequester(
            redirect_hosts=self.redirect_hosts, allow_http=self.allow_http)
        if deadline is not None and not (isinstance(deadline, (int, float)) and deadline > 0):
            raise ConfigError(f"deadline must be a positive number of seconds or None, not {deadline!r}")
        self.deadline = None if deadline is None else float(deadline)
        if swap_guard is not None and not callable(swap_guard):
            raise ConfigError("swap_guard must be a function returning a reason not to swap, or None")
        self.swap_guard = swap_guard
        if progress is not None and not callable(progress):
            raise ConfigError("progress must be a function taking (bytes done, bytes in all or None)")
        #: what the current check-and-download is doing (read by the frozen app's exit)
        self.transfer = Transfer(progress)
        #: what the last verified signed manifest promised (size, serial, expiry)
        self._signed: Optional[_signing.SignedInfo] = None

    # ----------------------------------------------------------- public API

    @property
    def state_dir(self) -> Path:
        """The app's own state folder: ``<target folder>/<dir><cmd_name>/`` (see :mod:`._schedule`)."""
        return Path(_schedule.state_folder(self.target, self.dir, self.cmd_name))

    @property
    def cktime_path(self) -> Path:
        """Where the schedule is kept: ``<state_dir>/cktime``."""
        return self.state_dir / "cktime"

    @property
    def serial_path(self) -> Path:
        """Where the highest accepted serial is kept: ``<state_dir>/serial``."""
        return self.state_dir / "serial"

    @property
    def failures_path(self) -> Path:
        """How many checks failed in a row: ``<state_dir>/failures``."""
        return self.state_dir / "failures"

    def check_due(self) -> bool:
        """Whether :meth:`background_run` would check now (never for ``dev``)."""
        if self.current_version == DEV_VERSION:
            return False
        if self.force_check:
            return True
        return _schedule.is_due(_schedule.cktime_file(self.target, self.dir, self.cmd_name))

    def update_available(self) -> Optional[str]:
        """The version the server offers if it differs from the current one, else None.

        Fetches only the manifest; ``dev`` returns None without a request.
        """
        if self.current_version == DEV_VERSION:
            return None
        try:
            manifest = self._fetch_manifest(Budget(self.deadline, self.transfer))
        except Exception as exc:
            error = self._as_update_error(exc)
            if error is exc:
                raise
            raise error from exc
        return None if manifest.version == self.current_version else manifest.version

    def update(self) -> Optional[UpdateResult]:
        """Check, download, verify and install now; None if already current (or ``dev``).

        If another running instance holds the instance lock, the verified
        binary is staged instead (``result.installed`` is False) and installed
        at a later launch. On failure the target is untouched and a
        :class:`~pyi_selfupdate.errors.SelfUpdateError` is raised. The outcome
        is recorded in the schedule (``cktime``), as go-selfupdate does.
        """
        return self._scheduled(install=True)

    def stage(self) -> Optional[UpdateResult]:
        """Check, download and verify; stage the new binary beside the target.

        The binary goes to ``.<name>.staged`` and a ``.<name>.staged.json``
        sidecar marks it complete; :meth:`install_staged` installs it later.
        Returns None if already current; ``result.installed`` is False.
        """
        return self._scheduled(install=False)

    def background_run(self, *, install: bool = True) -> Optional[UpdateResult]:
        """go-selfupdate's ``BackgroundRun``: check only when due, then update.

        Nothing at all for ``dev``; without ``force_check``, nothing (no
        request) until the time in ``cktime`` has come. Then :meth:`update`
        (or :meth:`stage` with ``install=False``). After a successful check the
        next one is ``check_time`` + up to ``randomize_time`` hours away; after
        a failure, at most one hour. Errors are raised, as go returns them.
        """
        if not self.check_due():
            log.debug("no update check due for %s", self.cmd_name)
            return None
        return self.update() if install else self.stage()

    def install_staged(self, *, at_exit: bool = False) -> Optional[UpdateResult]:
        """Install a complete, verified staged update, if there is one.

        Returns None when nothing is staged, when the staged update is stale
        (made for another current version) or corrupt (both are discarded with
        a log message), or when another instance holds the instance lock (it
        stays staged for a later launch).

        ``at_exit=True`` says this process is about to exit. It matters for a
        folder app on Windows, which cannot be renamed while a program runs
        from it (this one): the verified folder is then handed to ``cmd.exe``,
        which switches it once no copy of the app runs any more, and the result
        has ``installed=False`` (the next launch runs the new version and
        :func:`pyi_selfupdate.installed_update` tells it so). Without it, such
        an update stays staged.
        """
        if self.current_version == DEV_VERSION:
            return None
        info = _staging.read_staged(self.target)
        if info is None:
            return None
        if info.from_version != self.current_version or info.to_version == self.current_version:
            _staging.discard_staged(
                self.target,
                f"it updates {info.from_version} to {info.to_version}, but this is "
                f"{self.current_version}",
                warn=False,
            )
            return None
        try:
            validate_name(info.to_version, "staged version")
        except SelfUpdateError as exc:
            _staging.discard_staged(self.target, str(exc))
            return None
        with _instances.instance_lock(self.target).exclusive() as alone:
            if not alone:
                log.info("another instance of %s is running; the staged update %s is "
                         "installed at a later launch", self.target, info.to_version)
                return None
            log.debug("installing the staged update %s of %s", info.to_version, self.target)
            done = _staging.install_claimed(self.target, info, self.swap_guard,
                                            state_dir=self.state_dir if at_exit else None)
            if not done:
                return None
        installed = done == _staging.INSTALLED
        result = UpdateResult(info.from_version, info.to_version, info.method,
                              info.bytes_fetched, self.target, installed, info.notes)
        self._record_install(result)
        if installed:
            log.info("installed the staged update of %s: %s -> %s",
                     self.target, info.from_version, info.to_version)
            self._notify(result)
        return result

    # ------------------------------------------------------------- internals

    def _scheduled(self, *, install: bool) -> Optional[UpdateResult]:
        if self.current_version == DEV_VERSION:
            log.debug("version %r never updates", DEV_VERSION)
            return None
        # Counted as failed until it succeeds: a check that never ends backs off too.
        when = _schedule.schedule_attempt(self.cktime_path, self.failures_path, self.check_time)
        try:
            self._prepare()
            result = self._run(install=install)
        except Exception as exc:
            error = self._as_update_error(exc)
            log.warning("update of %s failed, the installed file is untouched: %s",
                        self.cmd_name, error)
            log.info("update check failed; next attempt after %s", _schedule.format_rfc3339(when))
            _schedule.record_event(self.state_dir, f"check of {self.current_version} failed: {error}; "
                                                   f"next attempt after {_schedule.format_rfc3339(when)}")
            if error is exc:
                raise
            raise error from exc
        finally:
            self.transfer.begin("done")
        if result is None:
            _schedule.record_event(self.state_dir, f"checked: {self.current_version} is up to date")
        elif not result.installed:
            _schedule.record_event(self.state_dir, f"staged {result.to_version} via {result.method} "
                                                   f"({result.bytes_fetched} bytes)")
        _schedule.schedule_success(self.cktime_path, self.check_time, self.randomize_time,
                                   failures_path=self.failures_path)
        return result

    def _as_update_error(self, exc: Exception) -> SelfUpdateError:
        """``exc`` if it is a :class:`SelfUpdateError`, else one that names it and what to do.

        Every refusal of hostile input has its own message; this is the net under
        them, so that no failure of a check escapes as another exception type.
        """
        if isinstance(exc, SelfUpdateError):
            return exc
        if isinstance(exc, OSError):
            return InstallError(
                f"update of {self.cmd_name} failed: {exc}; {_files.write_advice(exc, self.target)}")
        return SelfUpdateError(
            f"update of {self.cmd_name} failed unexpectedly ({type(exc).__name__}: {exc}); the "
            "installed app is untouched. Please report this to the pyi-selfupdate project with the "
            f"update log {self.state_dir / 'log'}")

    def _prepare(self) -> None:
        """Before any request: the folder must be writable; clean what killed runs left there."""
        _files.check_writable(self.target)  # it could never be installed: fetch nothing
        _staging.cleanup_leftovers(self.target)

    def _run(self, *, install: bool) -> Optional[UpdateResult]:
        counter = Budget(self.deadline, self.transfer)
        manifest = self._fetch_manifest(counter)
        if manifest.version == self.current_version:
            log.info("%s %s is up to date", self.cmd_name, self.current_version)
            return None
        log.info("%s: update available %s -> %s", self.cmd_name, self.current_version,
                 manifest.version)
        staged = self._matching_staged(manifest)
        if staged is not None and not install:
            log.info("update %s is already staged beside %s", manifest.version, self.target)
            return UpdateResult(self.current_version, manifest.version, staged.method,
                                counter.n, self.target, False)
        new_path: Optional[Path] = None
        method = "full"
        if staged is not None:
            new_path = _staging.claim_verified(self.target, manifest.sha256)
            method = staged.method
        if new_path is None:
            new_path, method = self._download(manifest, counter)
        try:
            installed = False
            if install:
                with _instances.instance_lock(self.target).exclusive() as alone:
                    reason = self.swap_guard() if alone and self.swap_guard is not None else None
                    if reason:
                        log.info("update %s of %s is staged, not installed: %s",
                                 manifest.version, self.target, reason)
                    elif alone:
                        _files.swap(new_path, self.target)
                        installed = True
            if not installed:
                _staging.promote_to_staged(new_path, self.target, _staging.StagedInfo(
                    self.current_version, manifest.version, manifest.sha256, method, counter.n,
                    manifest.notes))
        except BaseException:
            _files.remove_quietly(new_path)
            raise
        result = UpdateResult(self.current_version, manifest.version, method, counter.n,
                              self.target, installed, manifest.notes)
        if installed:
            self._record_install(result)
            log.info("updated %s: %s -> %s via %s (%d bytes fetched)", self.target,
                     result.from_version, result.to_version, method, counter.n)
            self._notify(result)
        elif install:
            log.info("another instance of %s is running: update %s staged, it will install "
                     "at next launch", self.target, manifest.version)
        else:
            log.info("update %s staged beside %s via %s (%d bytes fetched)",
                     manifest.version, self.target, method, counter.n)
        return result

    def _matching_staged(self, manifest: Manifest) -> Optional[_staging.StagedInfo]:
        info = _staging.read_staged(self.target)
        if (info is not None and info.from_version == self.current_version
                and info.to_version == manifest.version and info.sha256 == manifest.sha256):
            return info
        return None

    def _record_install(self, result: UpdateResult) -> None:
        """For the app's next start (:func:`pyi_selfupdate.installed_update`) and its update log."""
        _schedule.write_installed(self.state_dir, {
            "from": result.from_version, "to": result.to_version, "when": time.time(),
            "method": result.method, "notes": result.notes})
        how = "" if result.installed else " (the folder switches once the app has exited)"
        _schedule.record_event(self.state_dir, f"installed {result.from_version} -> "
                                               f"{result.to_version} via {result.method}{how}")

    def _notify(self, result: UpdateResult) -> None:
        if self.on_successful_update is None:
            return
        try:
            self.on_successful_update(result)
        except Exception:
            log.exception("on_successful_update raised; the update itself succeeded")

    # ---------------------------------------------------------------- fetch

    def _fetch_manifest(self, counter: Budget) -> Manifest:
        url = manifest_url(self.api_url, self.cmd_name, self.platform)
        log.info("checking for updates of %s %s at %s", self.cmd_name, self.current_version, url)
        counter.transfer.begin("manifest")
        data = read_all(self.requester, url, LIMITS.manifest_bytes, counter)
        manifest = decode_manifest(data, source=url)
        validate_name(manifest.version, f"version in {url}")
        if manifest.version != self.current_version and manifest.kind != self.kind:
            raise VerificationError(
                f"{url} offers {manifest.version} as a {manifest.kind} release, but this app is "
                f"updated as a {self.kind} ({self.target}); a onefile app never installs a folder, "
                "nor a folder app a single file: the publisher must release the build of the "
                "same kind (see the README, changing an app's kind)"
            )
        self._signed = None
        if self.public_keys:
            self._signed = self._verify_signed(manifest, url)
        return manifest

    def _verify_signed(self, manifest: Manifest, url: str) -> _signing.SignedInfo:
        """Verify ``manifest`` against ``public_keys`` and the remembered serial; record it.

        Read, verified and recorded under the serial's lock: another process
        checking at the same moment cannot make the serial go down.
        """
        own = self.serial_path
        try:
            with _signing.serial_lock(own):
                legacy = Path(_schedule.legacy_file(self.target, self.dir, "serial"))
                state = _signing.read_serial_state(own if own.exists() or not legacy.exists() else legacy)
                info = _signing.verify_manifest(
                    manifest, cmd_name=self.cmd_name, platform=self.platform,
                    public_keys=self.public_keys,
                    min_serial=state.serial if state else None,
                    min_serial_version=state.version if state else None,
                    source=url,
                )
                log.info("%s: manifest signed by key %s, serial %d", self.cmd_name, info.key_id, info.serial)
                try:
                    _signing.write_serial_state(own, _signing.SerialState(info.serial, manifest.version))
                except OSError as exc:
                    raise InstallError(
                        f"cannot record the accepted serial in {own} ({exc.strerror or exc}); "
                        f"{_files.write_advice(exc, own)}"
                    ) from None
        except SignatureError as exc:
            log.error("refusing the update of %s: %s", self.cmd_name, exc)
            raise
        return info

    def _body_cap(self, unsigned_cap: int) -> int:
        """The most bytes one patch or ``.gz`` body may have."""
        if self._signed is None:
            return unsigned_cap
        return min(unsigned_cap, _signing.signed_body_cap(self._signed.size))

    def _binary_cap(self, unsigned_cap: int) -> int:
        """The largest new executable accepted: the signed size when there is one."""
        if self._signed is None:
            return unsigned_cap
        return min(unsigned_cap, self._signed.size)

    def _download(self, manifest: Manifest, counter: Budget) -> Tuple[Path, str]:
        """Patch path, else full path; returns a finished, verified temporary file."""
        url = patch_url(self.diff_url, self.cmd_name, self.current_version,
                        manifest.version, self.platform)
        try:
            return self._via_patch(url, manifest, counter), "patch"
        except Exception as exc:
            log.warning("patch %s failed (%s); falling back to the full binary", url, exc)
        return self._via_full(manifest, counter), "full"

    def _via_patch(self, url: str, manifest: Manifest, counter: Budget) -> Path:
        """Apply the patch to the installed file (or folder's archive), streaming into a new one."""
        with self._current() as (size, read_old):
            part = self._partial(url, manifest)
            download(self.requester, url, part, self._body_cap(
                min(LIMITS.binary_bytes, size + LIMITS.patch_slack)), counter, "patch")
            counter.transfer.begin("local")
            with self._finish_partial(part):
                patch = part.read_bytes()
                with _NewTarget(self.target, self.kind) as out:
                    patch_stream(read_old, size, patch, out.write, max_new_size=self._binary_cap(
                        min(LIMITS.binary_bytes, 4 * size + LIMITS.patch_slack)),
                        check=lambda: _check_deadline(counter, f"applying patch {url}"))
                    del patch
                    check_sha256(out.digest(), manifest.sha256, f"the result of patch {url}")
                    return out.finish()

    def _partial(self, url: str, manifest: Manifest) -> Path:
        """Where the download of ``url`` for this release is kept until it is complete and used."""
        key = hashlib.sha256(url.encode("utf-8") + manifest.sha256).hexdigest()[:24]
        return self.state_dir / "partial" / key

    @contextlib.contextmanager
    def _finish_partial(self, part: Path) -> Iterator[None]:
        """Remove a complete download once used, or once it proved wrong (the next run starts afresh)."""
        try:
            yield
        finally:
            for path in (part, part.with_name(part.name + ".json")):
                try:
                    path.unlink()
                except OSError:
                    pass

    @contextlib.contextmanager
    def _current(self) -> Iterator[Tuple[int, Callable[[int, int], bytes]]]:
        """``(size, read_at)`` of what the patch applies to: the file, or the folder's archive."""
        if self.kind == FOLDER:
            try:
                archive = FolderArchive(self.target)
            except SelfUpdateError as exc:
                raise PatchError(f"cannot rebuild the archive of {self.target}: {exc}") from None
            with archive:
                yield archive.size, archive.read_at
            return
        with open(self.target, "rb") as fh:
            def read_at(offset: int, n: int) -> bytes:
                fh.seek(offset)
                return fh.read(n)

            yield os.fstat(fh.fileno()).st_size, read_at

    def _via_full(self, manifest: Manifest, counter: Budget) -> Path:
        url = full_url(self.bin_url, self.cmd_name, manifest.version, self.platform)
        log.info("downloading %s", url)
        part = self._partial(url, manifest)
        download(self.requester, url, part, self._body_cap(LIMITS.binary_bytes), counter, "full")
        counter.transfer.begin("local")
        with self._finish_partial(part), open(part, "rb") as gz:
            with _NewTarget(self.target, self.kind) as out:
                _size, digest = gunzip_to(gz.read, out.write, max_size=self._binary_cap(LIMITS.binary_bytes),
                                          source=url)
                check_sha256(digest, manifest.sha256, url)
                return out.finish()


class _NewTarget:
    """Where a download is written: a new file, or a new folder the archive is unpacked into.

    Hashes what it is given (the executable, or the folder's canonical archive).
    Leaving the ``with`` block with an exception removes it.
    """

    def __init__(self, target: Path, kind: str) -> None:
        self._hasher = hashlib.sha256()
        self._unpacker: Optional[Unpacker] = None
        if kind == FOLDER:
            self._out: Any = _files.NewFolder(target)
            self._unpacker = Unpacker(self._out.path, self._out.advice,
                                      fsync_each=not _files.NewFolder.syncs_all)
        else:
            self._out = _files.NewFile(target)

    def write(self, data: bytes) -> None:
        self._hasher.update(data)
        (self._unpacker or self._out).write(data)

    def digest(self) -> bytes:
        return self._hasher.digest()

    def finish(self) -> Path:
        """The finished file or folder (a temporary name beside the target)."""
        if self._unpacker is not None:
            self._unpacker.close()
        return self._out.finish()

    def __enter__(self) -> "_NewTarget":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self._out.discard()


def _check_deadline(counter: Budget, what: str) -> None:
    """PatchError once the overall deadline of the check has passed (a patch that is slow to apply)."""
    if counter.deadline is not None and time.monotonic() > counter.deadline:
        raise PatchError(f"{what} is still unfinished after the overall deadline of {counter.seconds:g} s; "
                         "giving it up")


def _setting(name: str, value: Any) -> Any:
    """:func:`pyi_selfupdate.settings.check`, its refusal a :class:`ConfigError`."""
    try:
        return check(name, value)
    except SettingError as exc:
        raise ConfigError(str(exc)) from None
