"""What the runtime hook runs in a frozen app, before the app's own code.

Flow of :func:`run` (each step logs to the ``pyi_selfupdate`` logger, none raises):

1. Read the configuration embedded at build time; stop if there is none, if it
   is disabled (``enabled = false`` or ``PYI_SELFUPDATE_DISABLE=1`` in the
   environment), or if the version is ``dev``.
2. Tell the app's main process from its children: the main process marks the
   environment with ``PYI_SELFUPDATE_MAIN=<pid>:<executable>``. Multiprocessing
   workers and other children started from ``sys.executable`` inherit it with
   another pid: they only hold the shared instance lock and stop there. (Another
   self-updating app started by this one sees another executable: it is a main
   process.) :func:`pyi_selfupdate.restart` removes the marker.
3. Hold the shared instance lock for the life of the process (an update is
   installed only when no other process of the app runs). While another
   instance holds it exclusively (installing), wait for it, up to 60 s.
4. If the executable was replaced since this process started (another instance
   installed an update meanwhile; Linux: ``/proc/self/exe`` against the file),
   restart at once as the new version. Clean the leftovers of an interrupted
   install. If a complete, verified update is staged and no other instance
   runs: install it and restart at once, so this launch continues as the new
   version, with the same arguments and standard streams. If other processes
   run the executable, one launch (the holder of the staged sidecar's
   ``flock``) runs as it is and installs at its exit, once the others have
   ended (waiting up to ``exit_wait`` seconds for them). Should the restart
   itself fail after an install, the process ends (exit status 75, a one-line
   message on stderr) rather than run on over a replaced file.
5. Most launches stop here: nothing staged and no check due (``cktime``) costs
   a few ``stat`` calls, no Updater, no thread. By ``mode``: ``background``
   (default) checks and downloads in a daemon thread when the schedule says so
   (``requests`` is imported in that thread only), staging the verified binary for the next
   launch; at exit the app waits, at most ``exit_wait`` seconds, only for a
   download that is receiving bytes and should finish in time (never for a
   check whose manifest has not come within ``LIMITS.exit_check``: a later
   launch resumes or checks again, after the back-off). ``immediate`` checks
   at launch, waiting at most ``immediate_wait`` seconds (then the app starts
   and the check goes on in the background), and if an update exists installs
   it and restarts at once. ``manual`` does nothing more: the app uses
   :func:`updater_from_config` and :func:`pyi_selfupdate.restart` itself.
   ``PYI_SELFUPDATE_FORCE_CHECK=1`` in the environment forces a check.
   Ctrl-C during any wait of the bootstrap ends the process at once (exit
   status 130) without a traceback.

Set ``PYI_SELFUPDATE_LOG=info`` (or ``debug``) in the environment to see these
steps on stderr without touching the app's logging configuration.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing is never imported at run time: it would cost every launch milliseconds
    from typing import Any, Dict, List, Optional, Tuple

from . import _files, _instances, _schedule, _staging
from ._lazy import log
from ._restart import MAIN_MARKER, restart, restarted_from
from .errors import ConfigError, SelfUpdateError
from .settings import DEFAULTS, DEV_VERSION, FILE, FOLDER, LIMITS, Settings, load_embedded

if TYPE_CHECKING:  # imported when needed: most launches need no Updater at all
    from .updater import InstalledUpdate, Updater

__all__ = ["run", "updater_from_config", "embedded_config", "installed_update", "app_target",
           "DISABLE_ENV", "LOG_ENV",
           "FORCE_CHECK_ENV"]

#: ``PYI_SELFUPDATE_DISABLE=1`` in the environment turns the bootstrap off.
DISABLE_ENV = "PYI_SELFUPDATE_DISABLE"
#: ``PYI_SELFUPDATE_LOG=<level>`` shows the bootstrap's log on stderr.
LOG_ENV = "PYI_SELFUPDATE_LOG"
#: ``PYI_SELFUPDATE_FORCE_CHECK=1`` checks at this launch, whatever the schedule.
FORCE_CHECK_ENV = "PYI_SELFUPDATE_FORCE_CHECK"

_TRUE = ("1", "true", "yes", "on")

# The process-wide state: the lock must live as long as the process.
_lock: Any = None
_thread: Optional[threading.Thread] = None
_config: Optional[Dict[str, Any]] = None
_install_claim: Optional[int] = None
_installed: Optional[Dict[str, Any]] = None
#: This launch already restarted once (the pids it restarted from): it never restarts again.
_restarted: Optional[List[int]] = None


def embedded_config() -> Optional[Dict[str, Any]]:
    """The update configuration embedded in this frozen app (a copy), or None if not frozen/absent."""
    global _config
    if _config is None:
        _config = load_embedded()
    return dict(_config) if _config is not None else None


def _settings() -> Optional[Settings]:
    config = embedded_config()
    return None if config is None else Settings.from_mapping(config)


def installed_update() -> "Optional[InstalledUpdate]":
    """The update installed before this launch of the frozen app, or None.

    Tells the app, at the first start of a new version, what was installed
    (from, to, when, how) and the release notes, if the release has any, so
    it can tell its user::

        news = pyi_selfupdate.installed_update()
        if news:
            print(f"Updated from {news.from_version} to {news.to_version}. {news.notes}")
    """
    if _installed is None:
        return None
    from .updater import InstalledUpdate

    return InstalledUpdate(str(_installed.get("from", "")), str(_installed.get("to", "")),
                           float(_installed.get("when") or 0), str(_installed.get("method", "")),
                           str(_installed.get("notes") or ""))


def _cmd_name(settings: Settings, target: str) -> str:
    if settings.cmd_name:
        return settings.cmd_name
    base = os.path.basename(target)
    if base.lower().endswith(".exe"):
        base = base[:-4]
    return base


def updater_from_config(**overrides: Any) -> "Updater":
    """An :class:`~pyi_selfupdate.Updater` configured as this frozen app was built.

    For apps that update themselves (``mode = "manual"``, or a "check for
    updates" command)::

        result = pyi_selfupdate.updater_from_config().update()
        if result is not None and result.installed:
            pyi_selfupdate.restart()   # at once: import nothing from the replaced file

    ``overrides`` replace :class:`Updater` keyword arguments (``requester``,
    ``on_successful_update``, ...). Raises
    :class:`~pyi_selfupdate.errors.ConfigError` outside a frozen app built with
    pyi-selfupdate.
    """
    settings = _settings()
    if settings is None:
        raise ConfigError(
            "this program carries no embedded self-update configuration (it is not a frozen "
            "app built with pyi-selfupdate); build it with PyInstaller and pyi_selfupdate "
            "installed, or create pyi_selfupdate.Updater(...) with explicit settings"
        )
    target, kind = app_target()
    if overrides.get("target") is not None:
        target = overrides.pop("target")
        kind = overrides.pop("kind", FOLDER if os.path.isdir(target) else FILE)
    kwargs: Dict[str, Any] = {
        "current_version": settings.current_version,
        "api_url": settings.api_url,
        "bin_url": settings.bin_url or settings.api_url,
        "diff_url": settings.diff_url or settings.api_url,
        "dir": settings.dir or DEFAULTS["dir"],
        "cmd_name": _cmd_name(settings, sys.executable),
        "platform": settings.platform,
        "force_check": bool(settings.force_check),
        "check_time": settings.check_time,
        "randomize_time": settings.randomize_time,
        "target": target,
        "kind": kind,
        "public_keys": list(settings.public_keys),
        "allow_http": settings.allow_http,
        "redirect_hosts": list(settings.redirect_hosts),
    }
    from .updater import Updater

    kwargs.update(overrides)
    return Updater(**kwargs)


def app_target(executable: Optional[str] = None) -> Tuple[str, str]:
    """``(path, kind)`` of what updates in this frozen app: its executable, or its folder.

    A onefile app (its bundle unpacked to a temporary ``_MEI...`` folder) is
    updated as one file, ``sys.executable``. A onedir app (its bundle in the
    executable's folder: ``_internal/``, or the folder itself) is updated as that
    folder, and a macOS ``.app`` (``<X>.app/Contents/MacOS/<exe>``) as the whole
    bundle. ``kind`` is ``"file"`` or ``"folder"`` (:data:`pyi_selfupdate.protocol.KINDS`).
    """
    exe = os.path.realpath(executable or sys.executable)
    folder = os.path.dirname(exe)
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle is None:
        return exe, FILE
    bundle = os.path.realpath(bundle)
    head, macos = os.path.split(folder)
    app, contents = os.path.split(head)
    if macos == "MacOS" and contents == "Contents" and app.endswith(".app") \
            and bundle.startswith(app + os.sep):
        return app, FOLDER
    if bundle == folder or (os.path.dirname(bundle) == folder
                            and not os.path.basename(bundle).startswith("_MEI")):
        return folder, FOLDER
    return exe, FILE


def _setup_logging() -> None:
    level = os.environ.get(LOG_ENV, "").strip()
    if not level:
        return
    import logging

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("pyi-selfupdate[%(process)d]: %(message)s"))
    log.addHandler(handler)
    number = logging.getLevelName(level.upper())
    log.setLevel(number if isinstance(number, int) else logging.INFO)


def run() -> None:
    """Run the self-update bootstrap of a frozen app; never raises into the app."""
    start = time.perf_counter()
    try:
        _run()
    except KeyboardInterrupt:  # Ctrl-C while waiting for another instance's install
        _quiet_exit()
    except SelfUpdateError as exc:
        log.warning("self-update skipped: %s", exc)
    except Exception:
        log.exception("self-update bootstrap failed; the app starts as it is")
    log.debug("bootstrap done in %.1f ms", (time.perf_counter() - start) * 1000)


def _run() -> None:
    global _lock
    _setup_logging()
    if os.environ.get(DISABLE_ENV, "").strip().lower() in _TRUE:
        log.debug("disabled by %s", DISABLE_ENV)
        return
    settings = _settings()
    if settings is None:
        log.debug("no embedded self-update configuration")
        return
    if not settings.enabled:
        log.debug("disabled by the build configuration (enabled = false)")
        return
    if settings.current_version == DEV_VERSION:
        log.debug("version %r never updates", DEV_VERSION)
        return

    exe = sys.executable
    target, kind = app_target(exe)
    # "<pid>:<executable>": another app built with pyi-selfupdate, started by this
    # one, is not a child of this app.
    me = f"{os.getpid()}:{os.path.realpath(exe)}"
    owner_pid = _parent_main(os.environ.get(MAIN_MARKER, ""), me)
    _lock = _instances.instance_lock(target)
    if not _lock.hold_shared(timeout=0) and _lock.unusable is None:
        # Another instance holds it exclusively: it is installing an update (the
        # swap takes well under a second, more on a slow disk). Running on meanwhile
        # could mean running on a file replaced under us: wait for it, then see
        # below whether our file was replaced.
        log.info("another instance of %s is installing an update; waiting for it", target)
        if not _lock.hold_shared(timeout=LIMITS.lock_wait):
            log.warning("the instance lock of %s stayed taken for %.0f s; going on without it",
                        target, LIMITS.lock_wait)
    if kind == FOLDER:
        _instances.hold_folder(target)
    if owner_pid is not None:
        log.debug("child process of %s: no update check", owner_pid)
        return
    os.environ[MAIN_MARKER] = me

    global _restarted
    _restarted = restarted_from()
    if _restarted is not None:
        _instances.ignore(_restarted)  # this launch's own processes, waiting for this one
    if _instances.replaced_since_start(exe):
        if _restarted is None:
            log.info("%s was updated by another instance since this launch; restarting", target)
            _restart_after_install()
        log.warning("%s looks replaced again since this launch restarted; going on (a launch "
                    "restarts at most once)", target)

    global _installed
    _installed = _schedule.take_installed(
        _schedule.state_folder(target, settings.dir or DEFAULTS["dir"], _cmd_name(settings, exe)),
        str(settings.current_version))
    _staging.cleanup_leftovers(target)
    mode = settings.mode
    staged = os.path.exists(_staging.sidecar_file(target))
    due = mode in ("background", "immediate") and _check_due(settings, target)
    if not staged and not due:  # the common launch: a few stats, no Updater, no thread
        log.debug("nothing staged and no update check due (mode %s)", mode)
        return
    try:  # an install the user cannot update: no Updater, no request
        _files.check_writable(target)
    except SelfUpdateError as exc:
        log.info("%s", exc)
        return

    # Asked again under the exclusive lock, right before a swap: a process
    # started meanwhile would read its modules from the replaced file.
    updater = updater_from_config(target=target, kind=kind,
                                  swap_guard=lambda: _instances.others_running(exe))
    exit_wait = float(settings.exit_wait or 0)
    if staged:
        _install_or_defer(updater, exe, exit_wait, "installed staged update")
    if not due:
        log.debug("mode %r: no update check due", mode)
    elif mode == "immediate":
        _immediate(updater, exe, exit_wait, float(settings.immediate_wait))
    else:
        _start_background(updater, exit_wait)


def _check_due(settings: Settings, target: str) -> bool:
    """The schedule of :meth:`Updater.check_due`, without building an Updater.

    ``PYI_SELFUPDATE_FORCE_CHECK=1`` in the app's environment forces a check, as
    ``force_check = true`` at build time does.
    """
    if settings.force_check or os.environ.get(FORCE_CHECK_ENV, "").strip().lower() in _TRUE:
        return True
    return _schedule.is_due(_schedule.cktime_file(target, settings.dir or DEFAULTS["dir"],
                                                  _cmd_name(settings, sys.executable)))


def _parent_main(marker: str, me: str) -> Optional[str]:
    """The pid of this app's main process if this process is its child (worker), else None.

    ``marker`` is the inherited ``PYI_SELFUPDATE_MAIN`` (``<pid>:<executable>``),
    ``me`` this process's own value. Set by another executable, or by this very
    process, it does not make this process a child.
    """
    pid, sep, exe = marker.partition(":")
    if not marker or not sep or marker == me or exe != me.partition(":")[2]:
        return None
    return pid


def _restart_after_install(version: Optional[str] = None) -> None:
    """Restart as the new executable; if that is impossible, end this process cleanly.

    The old process must not go on: its next import would read the new file.
    """
    try:
        restart()
    except SelfUpdateError as exc:
        what = f"was updated to {version}" if version else "was updated"
        log.critical("%s %s but cannot restart (%s)", sys.executable, what, exc)
        try:  # the one message the user must see, whatever the logging setup
            sys.stderr.write(f"{os.path.basename(sys.executable)} {what}; start it again ({exc})\n")
            sys.stderr.flush()
        except Exception:
            pass
        os._exit(75)  # EX_TEMPFAIL


def _immediate(updater: "Updater", exe: str, exit_wait: float, budget: float) -> None:
    """Check and download at launch, for at most ``budget`` seconds; then install and restart.

    Download and verify first (no swap yet), then install only if no other
    process runs this file: the window for a starting process is the swap
    alone. A check or download that takes longer goes on in the background
    while the app starts as it is (and installs at a later launch).
    """
    global _thread
    outcome: List[Any] = []
    thread = threading.Thread(target=lambda: outcome.append(_stage(updater)), name="pyi-selfupdate",
                              daemon=True)
    thread.start()
    thread.join(budget)
    if thread.is_alive():
        log.info("no update could be had within %.0f s (immediate_wait); the app starts as it is "
                 "and the download goes on in the background", budget)
        _thread = thread
        if exit_wait > 0:
            atexit.register(_wait_at_exit, thread, exit_wait, updater)
        return
    if outcome and outcome[0] is not None:
        _install_or_defer(updater, exe, exit_wait, "updated")


def _stage(updater: "Updater") -> Any:
    """``updater.stage()``; a failure is logged, never raised (the app runs on)."""
    try:
        return updater.stage()
    except SelfUpdateError as exc:
        log.warning("update check failed: %s", exc)
    except Exception:
        log.exception("update check failed")
    return None


def _quiet_exit() -> None:
    """Ctrl-C during one of the bootstrap's waits: end the process now, without a traceback."""
    for stream in (sys.stdout, sys.stderr):  # what the app wrote still reaches its reader
        try:
            if stream is not None:
                stream.flush()
        except Exception:
            pass
    os._exit(130)


def _install_or_defer(updater: "Updater", exe: str, exit_wait: float, done: str) -> None:
    """Install the staged update and restart as it, or leave it to an exit (:func:`_defer_install`).

    While other processes run this file a swap would crash those still starting
    (they read their modules from the file by path): then one launch of them
    all takes the install on, at its exit.
    """
    others = _instances.other_processes(exe)
    now = updater.kind != FOLDER or _files.RUNNING_FOLDER_RENAMES  # Windows: at exit only
    if not others and _restarted is None and now:  # a restarted launch never restarts again
        result = updater.install_staged()
        if result is not None and result.installed:
            log.info("%s %s -> %s; restarting", done, result.from_version, result.to_version)
            _restart_after_install(result.to_version)
    if os.path.exists(_staging.sidecar_file(updater.target)):
        _defer_install(updater, exe, others, exit_wait)


def _defer_install(updater: "Updater", exe: str, others: List[int], wait: float) -> None:
    """Install the staged update when this process exits, once no other process runs ``exe``.

    Of several launches that find an update staged while others run, exactly
    one takes this on: the one holding the ``flock`` of the staged sidecar (kept
    until the process ends). The others run as they are. At exit, after the
    app's own code, the holder waits up to ``wait`` seconds for the other
    processes to end, then installs; if they still run, a later launch installs.
    """
    global _install_claim
    if _install_claim is not None:
        return
    target = updater.target
    claim = _instances.claim_install(_staging.sidecar_file(target))
    pids = _instances.format_pids(others) or "another instance"
    if claim is None:
        log.info("other processes run %s (%s); another launch installs the staged update",
                 target, pids)
        return
    _install_claim = claim
    if others:
        log.info("other processes run %s (%s); the staged update is installed when this "
                 "process exits after them", target, pids)
    else:
        log.info("%s runs from its folder, which Windows does not rename; the staged update "
                 "is installed when this process exits", target)
    atexit.register(_install_at_exit, updater, exe, wait)


def _install_at_exit(updater: "Updater", exe: str, wait: float) -> None:
    """The atexit side of :func:`_defer_install` (registered before any other: runs last).

    Waits only for processes launched about when this one was (a burst of
    launches ends together); one running since well before it (a long-lived
    instance) will not end soon, so a later launch installs instead.
    """
    if _thread is not None and _thread.is_alive() and updater.transfer.phase not in ("idle", "manifest"):
        return  # still downloading or staging (exit_wait ran out): the staged files may change
    target = updater.target
    deadline = time.monotonic() + max(0.0, wait)
    since = _instances.start_time(os.getpid())
    others: List[int] = []
    try:
        while os.path.exists(_staging.sidecar_file(target)):
            others = _instances.other_processes(exe)
            if not others:
                result = updater.install_staged(at_exit=True)
                if result is not None and result.installed:
                    log.info("installed staged update %s -> %s at exit, after the other "
                             "instances ended", result.from_version, result.to_version)
                    return
                if result is not None:  # Windows: a folder switched once this process is gone
                    log.info("staged update %s -> %s: the folder switches once this process "
                             "has exited", result.from_version, result.to_version)
                    return
            elif since is not None and any(
                    (_instances.start_time(pid) or since) < since - LIMITS.burst for pid in others):
                log.info("other processes run %s since before this launch (pids %s); a later "
                         "launch installs the staged update", target, _instances.format_pids(others))
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(0.05)
    except KeyboardInterrupt:
        _quiet_exit()
    except Exception:
        log.exception("installing the staged update at exit failed; a later launch retries")
        return
    if os.path.exists(_staging.sidecar_file(target)):
        log.info("other processes still run %s (pids %s) after %.0f s; a later launch "
                 "installs the staged update", target, _instances.format_pids(others), wait)


def _background_stage(updater: "Updater") -> None:
    result = _stage(updater)
    if result is not None:
        log.info("update %s downloaded and verified; it is installed at the next launch",
                 result.to_version)
    else:
        log.debug("no update available")


def _start_background(updater: "Updater", exit_wait: float) -> None:
    global _thread
    _thread = threading.Thread(
        target=_background_stage, args=(updater,), name="pyi-selfupdate", daemon=True
    )
    _thread.start()
    if exit_wait > 0:
        atexit.register(_wait_at_exit, _thread, exit_wait, updater)


def _wait_at_exit(thread: threading.Thread, timeout: float, updater: "Updater") -> None:
    """At exit, wait for the background check only while it makes progress that should end in time.

    Never for a check whose manifest has not come within ``LIMITS.exit_check``,
    nor for a download that received nothing for ``LIMITS.stall`` or whose rate
    would not finish it within what is left of ``timeout`` (``exit_wait``); a
    later launch resumes an unfinished download. Ctrl-C ends the wait and the
    process at once.
    """
    try:
        deadline = time.monotonic() + timeout
        transfer = updater.transfer
        while thread.is_alive():
            left = deadline - time.monotonic()
            if left <= 0 or not transfer.likely_done_within(left, LIMITS.stall, LIMITS.exit_check):
                log.info("update %s unfinished at exit (%s); a later launch %s", transfer.phase,
                         "no progress" if left > 0 else f"exit_wait {timeout:g} s",
                         "resumes it" if transfer.phase in ("patch", "full") else "checks again")
                return
            thread.join(min(0.05, left))
    except KeyboardInterrupt:
        _quiet_exit()
