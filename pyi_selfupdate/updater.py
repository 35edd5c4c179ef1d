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
(:mod:`pyi_selfupdate._install`); a failure leaves the target untouched and
raises a :class:`~pyi_selfupdate.errors.SelfUpdateError`.

Versions are opaque strings: any version different from the current one is
installed (older ones too, go-selfupdate's rule), and ``"dev"`` never updates.

Tested on Linux only (POSIX code paths). The Windows paths (swap with a
renamed-aside ``.old``, byte-range lock) are written with care but untested.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Callable, Optional, Sequence, Tuple, Union

from . import _install, _schedule, signing as _signing
from ._patch import apply_patch, check_sha256, gunzip_to
from .errors import ConfigError, FetchError, SelfUpdateError, SignatureError
from .fetch import Requester, RequestsRequester, close_quietly
from .protocol import (
    DEV_VERSION,
    Manifest,
    current_platform,
    decode_manifest,
    full_url,
    manifest_url,
    patch_url,
    validate_name,
)

# _install and _schedule import these on first use (the usual launch of a frozen app
# needs none of them). Every install goes through this module and nothing may be
# imported once an install replaced the executable: import them now.
import base64, datetime, json, random, secrets  # noqa: E401,E402,F401,I001

__all__ = ["Updater", "UpdateResult", "MAX_MANIFEST_BYTES", "MAX_BINARY_BYTES"]

log = logging.getLogger("pyi_selfupdate")

#: The most bytes read from a manifest.
MAX_MANIFEST_BYTES = 64 * 1024
#: The largest executable accepted (decompressed size of a ``.gz``, result of a patch).
MAX_BINARY_BYTES = 1 << 30
#: Slack over the current file's size for the patch download and the patched result.
_PATCH_SLACK = 64 << 20
_CHUNK = 1 << 16

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
      launch (:meth:`Updater.install_staged`).
    """

    from_version: str
    to_version: str
    method: str
    bytes_fetched: int
    target: Path
    installed: bool


class _Counter:
    def __init__(self, seconds: Optional[float] = None) -> None:
        self.n = 0
        #: time.monotonic() after which every read fails (the overall deadline)
        self.deadline = None if seconds is None else time.monotonic() + seconds
        self.seconds = seconds


class Updater:
    """Checks for, downloads, verifies and installs updates of one executable.

    Keyword arguments mirror go-selfupdate's ``Updater`` fields:

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
    - ``deadline``: seconds one check-and-download may take in all (manifest,
      patch and full binary), however slowly the server sends; None: no limit.

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
        dir: str = "update/",
        cmd_name: str,
        force_check: bool = False,
        check_time: float = 0,
        randomize_time: float = 0,
        requester: Optional[Requester] = None,
        on_successful_update: Optional[Callable[[UpdateResult], None]] = None,
        target: Optional[_PathLike] = None,
        platform: Optional[str] = None,
        public_keys: Optional[Sequence[str]] = None,
        allow_http: Optional[bool] = None,
        deadline: Optional[float] = 900,
    ) -> None:
        self.current_version = validate_name(current_version, "current version")
        self.api_url = _base_url(api_url, "api_url")
        self.bin_url = _base_url(bin_url if bin_url is not None else api_url, "bin_url")
        self.diff_url = _base_url(diff_url if diff_url is not None else api_url, "diff_url")
        if not isinstance(dir, str):
            raise ConfigError(f"dir must be a string such as 'update/', not {dir!r}")
        self.dir = dir
        self.cmd_name = validate_name(cmd_name, "cmd name")
        self.platform = validate_name(
            platform if platform is not None else current_platform(), "platform"
        )
        self.force_check = bool(force_check)
        self.check_time = _hours(check_time, "check_time")
        self.randomize_time = _hours(randomize_time, "randomize_time")
        if requester is not None and not callable(getattr(requester, "fetch", None)):
            raise ConfigError("requester must have a fetch(url) method returning a binary stream")
        self.requester: Requester = requester if requester is not None else RequestsRequester()
        self.on_successful_update = on_successful_update
        if target is None:
            if not getattr(sys, "frozen", False):
                raise ConfigError(
                    "target is required outside a frozen app: pass target=<path of the "
                    "file to update>"
                )
            target = sys.executable
        self.target = Path(os.path.realpath(os.fspath(target)))
        self.public_keys = _signing.check_public_keys(public_keys)
        if allow_http not in (None, True, False):
            raise ConfigError(f"allow_http must be true, false or unset, not {allow_http!r}")
        self.allow_http = allow_http
        for what, url in (("api_url", self.api_url), ("bin_url", self.bin_url),
                          ("diff_url", self.diff_url)):
            _signing.check_transport(url, what, signed=bool(self.public_keys), allow_http=allow_http)
        if deadline is not None and not (isinstance(deadline, (int, float)) and deadline > 0):
            raise ConfigError(f"deadline must be a positive number of seconds or None, not {deadline!r}")
        self.deadline = None if deadline is None else float(deadline)
        #: what the last verified signed manifest promised (size, serial, expiry)
        self._signed: Optional[_signing.SignedInfo] = None
        #: asked under the exclusive lock right before :meth:`install_staged` swaps:
        #: a reason not to swap now (the frozen-app bootstrap: other processes
        #: still run the file), or None. The update then stays staged.
        self._swap_guard: Optional[Callable[[], Optional[str]]] = None

    # ----------------------------------------------------------- public API

    @property
    def cktime_path(self) -> Path:
        """Where the schedule is kept: ``<target folder>/<dir>cktime``."""
        return _schedule.cktime_path(self.target, self.dir)

    @property
    def serial_path(self) -> Path:
        """Where the highest accepted serial is kept: ``<target folder>/<dir>serial``."""
        cktime = self.cktime_path
        return cktime.with_name(cktime.name[: -len("cktime")] + "serial")

    def check_due(self) -> bool:
        """Whether :meth:`background_run` would check now (never for ``dev``)."""
        if self.current_version == DEV_VERSION:
            return False
        if self.force_check:
            return True
        return _schedule.is_due(self.cktime_path)

    def update_available(self) -> Optional[str]:
        """The version the server offers if it differs from the current one, else None.

        Fetches only the manifest; ``dev`` returns None without a request.
        """
        if self.current_version == DEV_VERSION:
            return None
        manifest = self._fetch_manifest(_Counter(self.deadline))
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

    def install_staged(self) -> Optional[UpdateResult]:
        """Install a complete, verified staged update, if there is one.

        Returns None when nothing is staged, when the staged update is stale
        (made for another current version) or corrupt (both are discarded with
        a log message), or when another instance holds the instance lock (it
        stays staged for a later launch).
        """
        if self.current_version == DEV_VERSION:
            return None
        info = _install.read_staged(self.target)
        if info is None:
            return None
        if info.from_version != self.current_version or info.to_version == self.current_version:
            _install.discard_staged(
                self.target,
                f"it updates {info.from_version} to {info.to_version}, but this is "
                f"{self.current_version}",
                warn=False,
            )
            return None
        try:
            validate_name(info.to_version, "staged version")
        except SelfUpdateError as exc:
            _install.discard_staged(self.target, str(exc))
            return None
        lock = _install.instance_lock(self.target)
        with lock.exclusive() as alone:
            if not alone:
                log.info("another instance of %s is running; the staged update %s is "
                         "installed at a later launch", self.target, info.to_version)
                return None
            private = _install.claim_staged(self.target)
            if private is None:
                return None
            try:
                digest = _install.file_sha256(private)
            except OSError as exc:
                _install._remove_quietly(private)
                _install.discard_staged(self.target, f"it cannot be read ({exc})")
                return None
            if digest != info.sha256:
                _install._remove_quietly(private)
                _install.discard_staged(self.target, "its SHA-256 does not match its sidecar")
                return None
            reason = self._swap_guard() if self._swap_guard is not None else None
            if reason:
                log.info("the staged update %s of %s stays staged: %s", info.to_version,
                         self.target, reason)
                _install.promote_to_staged(private, self.target, info)
                return None
            _install.swap(private, self.target)
            self._remove_sidecar_of(info)
        log.info("installed the staged update of %s: %s -> %s",
                 self.target, info.from_version, info.to_version)
        result = UpdateResult(info.from_version, info.to_version, info.method,
                              info.bytes_fetched, self.target, True)
        self._notify(result)
        return result

    # ------------------------------------------------------------- internals

    def _scheduled(self, *, install: bool) -> Optional[UpdateResult]:
        if self.current_version == DEV_VERSION:
            log.debug("version %r never updates", DEV_VERSION)
            return None
        try:
            result = self._run(install=install)
        except Exception as exc:
            log.warning("update of %s failed, the installed file is untouched: %s",
                        self.cmd_name, exc)
            when = _schedule.schedule_retry(self.cktime_path, self.check_time)
            log.info("update check failed; next attempt after %s", _schedule.format_rfc3339(when))
            raise
        _schedule.schedule_success(self.cktime_path, self.check_time, self.randomize_time)
        return result

    def _run(self, *, install: bool) -> Optional[UpdateResult]:
        counter = _Counter(self.deadline)
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
            new_path = self._claim_verified(manifest)
            method = staged.method
        if new_path is None:
            new_path, method = self._download(manifest, counter)
        try:
            installed = False
            if install:
                lock = _install.instance_lock(self.target)
                with lock.exclusive() as alone:
                    if alone:
                        _install.swap(new_path, self.target)
                        installed = True
            if not installed:
                _install.promote_to_staged(new_path, self.target, _install.StagedInfo(
                    self.current_version, manifest.version, manifest.sha256, method, counter.n))
        except BaseException:
            _install._remove_quietly(new_path)
            raise
        result = UpdateResult(self.current_version, manifest.version, method, counter.n,
                              self.target, installed)
        if installed:
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

    def _matching_staged(self, manifest: Manifest) -> Optional[_install.StagedInfo]:
        info = _install.read_staged(self.target)
        if (info is not None and info.from_version == self.current_version
                and info.to_version == manifest.version and info.sha256 == manifest.sha256):
            return info
        return None

    def _claim_verified(self, manifest: Manifest) -> Optional[Path]:
        private = _install.claim_staged(self.target)
        if private is None:
            return None
        try:
            ok = _install.file_sha256(private) == manifest.sha256
        except OSError:
            ok = False
        if not ok:
            _install._remove_quietly(private)
            _install.discard_staged(self.target, "its SHA-256 does not match the manifest")
            return None
        _install._remove_quietly(_install.sidecar_path(self.target))
        return private

    def _remove_sidecar_of(self, info: _install.StagedInfo) -> None:
        sidecar = _install.sidecar_path(self.target)
        try:
            if sidecar.read_bytes() == info.to_json():
                sidecar.unlink()
        except OSError:
            pass

    def _notify(self, result: UpdateResult) -> None:
        if self.on_successful_update is None:
            return
        try:
            self.on_successful_update(result)
        except Exception:
            log.exception("on_successful_update raised; the update itself succeeded")

    # ---------------------------------------------------------------- fetch

    def _open(self, url: str) -> BinaryIO:
        _signing.install_redirect_policy(self.requester)
        try:
            return self.requester.fetch(url)
        except SelfUpdateError:
            raise
        except Exception as exc:
            raise FetchError(f"cannot fetch {url}: {exc}; check the network and the URL") from None

    def _read_all(self, url: str, cap: int, counter: _Counter) -> bytes:
        stream = self._open(url)
        try:
            chunks = []
            size = 0
            read = _reader(stream, url, counter)
            while True:
                block = read(_CHUNK)
                if not block:
                    break
                size += len(block)
                if size > cap:
                    raise FetchError(f"{url} is larger than the limit of {cap} bytes; refusing it")
                chunks.append(block)
            return b"".join(chunks)
        finally:
            close_quietly(stream)

    def _fetch_manifest(self, counter: _Counter) -> Manifest:
        url = manifest_url(self.api_url, self.cmd_name, self.platform)
        log.info("checking for updates of %s %s at %s", self.cmd_name, self.current_version, url)
        data = self._read_all(url, MAX_MANIFEST_BYTES, counter)
        manifest = decode_manifest(data, source=url)
        validate_name(manifest.version, f"version in {url}")
        self._signed = None
        if self.public_keys:
            self._signed = self._verify_signed(manifest, url)
        return manifest

    def _verify_signed(self, manifest: Manifest, url: str) -> _signing.SignedInfo:
        """Verify ``manifest`` against ``public_keys`` and the remembered serial; record it."""
        try:
            state = _signing.read_serial_state(self.serial_path)
            info = _signing.verify_manifest(
                manifest, cmd_name=self.cmd_name, platform=self.platform,
                public_keys=self.public_keys,
                min_serial=state.serial if state else None,
                min_serial_version=state.version if state else None,
                source=url,
            )
        except SignatureError as exc:
            log.error("refusing the update of %s: %s", self.cmd_name, exc)
            raise
        log.info("%s: manifest signed by key %s, serial %d", self.cmd_name, info.key_id, info.serial)
        if state is None or info.serial > state.serial:
            self.serial_path.parent.mkdir(parents=True, exist_ok=True)
            _signing.write_serial_state(self.serial_path,
                                        _signing.SerialState(info.serial, manifest.version))
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

    def _download(self, manifest: Manifest, counter: _Counter) -> Tuple[Path, str]:
        """Patch path, else full path; returns a finished, verified temporary file."""
        url = patch_url(self.diff_url, self.cmd_name, self.current_version,
                        manifest.version, self.platform)
        try:
            return self._via_patch(url, manifest, counter), "patch"
        except Exception as exc:
            log.warning("patch %s failed (%s); falling back to the full binary", url, exc)
        return self._via_full(manifest, counter), "full"

    def _via_patch(self, url: str, manifest: Manifest, counter: _Counter) -> Path:
        size = os.path.getsize(self.target)
        patch = self._read_all(url, self._body_cap(min(MAX_BINARY_BYTES, size + _PATCH_SLACK)),
                               counter)
        with open(self.target, "rb") as fh:  # read only once a patch is there
            current = fh.read()
        new = apply_patch(current, patch, max_new_size=self._binary_cap(
            min(MAX_BINARY_BYTES, 4 * len(current) + _PATCH_SLACK)))
        del patch, current
        check_sha256(hashlib.sha256(new).digest(), manifest.sha256, f"the result of patch {url}")
        with _install.NewFile(self.target) as out:
            out.write(new)
            return out.finish()

    def _via_full(self, manifest: Manifest, counter: _Counter) -> Path:
        url = full_url(self.bin_url, self.cmd_name, manifest.version, self.platform)
        log.info("downloading %s", url)
        stream = self._open(url)
        try:
            with _install.NewFile(self.target) as out:
                body_cap = counter.n + self._body_cap(MAX_BINARY_BYTES)
                _size, digest = gunzip_to(_reader(stream, url, counter, cap=body_cap),
                                          out.write, max_size=self._binary_cap(MAX_BINARY_BYTES),
                                          source=url)
                check_sha256(digest, manifest.sha256, url)
                return out.finish()
        finally:
            close_quietly(stream)


def _reader(stream: Any, url: str, counter: _Counter,
            cap: Optional[int] = None) -> Callable[[int], bytes]:
    """``read(n)`` over a requester's stream: counts bytes, errors become FetchError."""

    def read(n: int) -> bytes:
        try:
            block = stream.read(n)
        except SelfUpdateError:
            raise
        except Exception as exc:
            raise FetchError(f"download of {url} failed: {exc}; retry later") from None
        if block is None:
            block = b""
        counter.n += len(block)
        if block and counter.deadline is not None and time.monotonic() > counter.deadline:
            raise FetchError(
                f"download of {url} is still unfinished after the overall deadline of "
                f"{counter.seconds:g} s (the server sends too slowly); giving up, retry later"
            )
        if cap is not None and counter.n > cap:
            raise FetchError(f"{url} is larger than the limit of {cap} bytes; refusing it")
        return bytes(block)

    return read


def _base_url(url: Any, what: str) -> str:
    if not isinstance(url, str) or not url:
        raise ConfigError(f"{what} is missing: give the base URL of the release tree, ending in '/'")
    if not url.endswith("/"):
        raise ConfigError(
            f"{what} {url!r} must end in '/' (URLs are concatenated as they are); "
            f"use {url + '/'!r}"
        )
    return url


def _hours(value: Any, what: str) -> float:
    try:
        hours = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number of hours, not {value!r}") from None
    if hours < 0 or hours != hours:
        raise ConfigError(f"{what} must be zero or more hours, not {value!r}")
    return hours
