"""Shared pieces of the fault-injection suite (issue 5).

Everything here works on real files, real processes and the real HTTP server of
``tests/_server.py``: a small real executable released at two versions by hand
(bsdiff4 + gzip + ``protocol.encode_manifest``), a child process that runs the
``Updater`` API on it, the checks of the invariant (the target is byte-identical
to one released version and runs), and the outcome counters that end up in
RELIABILITY.md.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import random
import re
import signal
import stat
import subprocess
import threading
import sys
import tempfile
import textwrap
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import bsdiff4

from _installed import PATH_ENTRY, python_env
from _server import Fault

REPO = Path(__file__).resolve().parents[2]
CMD = "faultapp"
PLAT = "linux-amd64"
OLD, NEW = "1.0", "2.0"


# ------------------------------------------------------------------ settings


def trials(ci_default: int) -> int:
    """How many trials: ``FAULT_TRIALS`` (the long form) or the bounded CI default."""
    value = os.environ.get("FAULT_TRIALS")
    return max(1, int(value)) if value else ci_default


def scaled_trials(ci_default: int, share: float) -> int:
    """A smaller suite's share of ``FAULT_TRIALS`` (``share`` of it), or its CI default."""
    value = os.environ.get("FAULT_TRIALS")
    return max(ci_default, int(int(value) * share)) if value else ci_default


def seed() -> int:
    """``FAULT_SEED`` if set (to replay a run), else a fresh one (printed by every test)."""
    value = os.environ.get("FAULT_SEED")
    return int(value) if value else random.SystemRandom().randrange(1, 2**31)


# ------------------------------------------------------------ the executable


def script_version(version: str, size: int = 2 << 20, variant: int = 0) -> bytes:
    """A real executable (a POSIX shell script) of about ``size`` bytes.

    The shell stops reading at ``exit``, so the bytes after it (pseudo-random,
    seeded: incompressible, like a real binary) are never parsed. Two versions
    share that payload except for a few local edits, so the patch is small and
    the full ``.gz`` is as large as the file: a slow server stretches the full
    download, a patch stretches nothing but the install.
    """
    head = (
        "#!/bin/sh\n"
        f'echo "{CMD} {version}"\n'
        "exit 0\n"
    ).encode()
    rng = random.Random(1234 + variant)
    body = bytearray(rng.randbytes(size)) if hasattr(rng, "randbytes") else bytearray(
        rng.getrandbits(8) for _ in range(size)
    )
    edit = random.Random(version)
    for _ in range(8):  # local edits, as a changed module in a real build
        at = edit.randrange(0, size - 512)
        body[at : at + 256] = edit.getrandbits(8 * 256).to_bytes(256, "little")
    return head + bytes(body)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def publish(root: Path, cmd: str, plat: str, versions: Sequence[Tuple[str, bytes]]) -> Dict[str, Path]:
    """Write a go-selfupdate tree by hand: every ``.gz``, patches old -> newest, the manifest.

    Independent of the release package on purpose: the client is tested
    against the wire format alone. Returns the paths of the newest's files.
    """
    from pyi_selfupdate import protocol

    newest_version, newest = versions[-1]
    for version, data in versions:
        gz = root / protocol.full_path(cmd, version, plat)
        gz.parent.mkdir(parents=True, exist_ok=True)
        gz.write_bytes(gzip.compress(data, mtime=0))
    for version, data in versions[:-1]:
        patch = root / protocol.patch_path(cmd, version, newest_version, plat)
        patch.parent.mkdir(parents=True, exist_ok=True)
        patch.write_bytes(bsdiff4.diff(data, newest))
    manifest = root / protocol.manifest_path(cmd, plat)
    manifest.write_bytes(protocol.encode_manifest(protocol.Manifest(newest_version, sha256(newest))))
    return {
        "manifest": manifest,
        "full": root / protocol.full_path(cmd, newest_version, plat),
        "patch": root / protocol.patch_path(cmd, versions[0][0], newest_version, plat),
    }


def rel_url_path(path: Path, root: Path) -> str:
    """The server's fault key for a file of the tree (the unescaped relative path)."""
    return path.relative_to(root).as_posix()


# ------------------------------------------------------------- child process

#: The child that runs the Updater API, as a program using the library would.
#: It learns its current version by running the target (a real executable),
#: logs everything to stderr (one line per record, with a monotonic time) and
#: prints one JSON line with what happened.
UPDATER_CHILD = textwrap.dedent(
    r'''
    import json, logging, subprocess, sys, time
    args = json.loads(sys.argv[1])
    class _Fmt(logging.Formatter):
        def format(self, record):
            return "%.6f %s %s %s" % (time.monotonic(), record.levelname, record.name,
                                      super().format(record))
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Fmt("%(message)s"))
    logging.basicConfig(level=logging.DEBUG, handlers=[handler])
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    from pyi_selfupdate import Updater, SelfUpdateError
    from pyi_selfupdate import _staging
    target = args["target"]
    exe = args.get("exe", target)  # a folder app runs the executable inside it
    out = subprocess.run([exe], capture_output=True, text=True, check=True).stdout.split()
    current = out[-1]
    kwargs = dict(current_version=current, api_url=args["url"], cmd_name=args["cmd"],
                  platform=args["plat"], target=target, force_check=True,
                  kind=args.get("kind", "file"))
    if args.get("read_timeout"):
        from pyi_selfupdate.fetch import RequestsRequester
        kwargs["requester"] = RequestsRequester(connect_timeout=args["read_timeout"],
                                                read_timeout=args["read_timeout"])
    result = {"current": current}
    try:
        if args.get("cleanup"):
            _staging.cleanup_leftovers(target)
        res = getattr(Updater(**kwargs), args.get("call", "update"))()
        result["result"] = None if res is None else {
            "from": res.from_version, "to": res.to_version, "method": res.method,
            "installed": res.installed, "bytes": res.bytes_fetched}
    except SelfUpdateError as exc:
        result["error"] = type(exc).__name__
        result["message"] = str(exc)
        logging.getLogger("child").error("update failed: %s: %s", type(exc).__name__, exc)
    print(json.dumps(result), flush=True)
    '''
)


def child_env(extra: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """Environment for children: this run's pyi_selfupdate (the installed one), unbuffered output."""
    env = python_env()
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


def updater_cmd(target: Path, url: str, *, python: Optional[str] = None, **extra) -> List[str]:
    args = {"target": str(target), "url": url, "cmd": CMD, "plat": PLAT, **extra}
    return [python or sys.executable, "-c", UPDATER_CHILD, json.dumps(args)]


def python_for_user(preexec, env: Mapping[str, str]) -> Optional[Tuple[str, Dict[str, str]]]:
    """An interpreter an unprivileged user can run with this one's packages, and its env.

    The test interpreter may live where only root can reach it (``/root/.pyenv``);
    then a system interpreter of the same version runs with this interpreter's
    site-packages on ``PYTHONPATH``. None if neither works.
    """
    import site
    import shutil as _shutil

    ver = f"{sys.version_info[0]}.{sys.version_info[1]}"
    paths = [PATH_ENTRY] + [p for p in site.getsitepackages() if os.path.isdir(p)]
    candidates = [sys.executable, f"/usr/bin/python{ver}", _shutil.which(f"python{ver}"),
                  f"/usr/local/bin/python{ver}"]
    for cand in dict.fromkeys(c for c in candidates if c):
        run_env = dict(env)
        if cand != sys.executable:
            run_env["PYTHONPATH"] = os.pathsep.join(paths)
        try:
            probe = subprocess.run(
                [cand, "-c", "import bsdiff4, requests, pyi_selfupdate"], preexec_fn=preexec,
                env=run_env, capture_output=True, timeout=60,
            )
        except OSError:
            continue
        if probe.returncode == 0:
            return cand, run_env
    return None


def parse_child(stdout: str) -> Optional[dict]:
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def killpg(proc: subprocess.Popen) -> bool:
    """kill -9 the child's whole process group (a power cut for it); True if it was alive."""
    alive = proc.poll() is None
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    return alive


# ----------------------------------------------------------------- the invariant


@dataclass
class Verdict:
    state: str  # "old", "new" or "broken"
    detail: str = ""


def judge(
    target: Path, versions: Mapping[str, bytes], *, run: Sequence[str] = (),
    env: Optional[Mapping[str, str]] = None, execute: bool = True,
) -> Verdict:
    """Is ``target`` byte-identical to one released version, executable, and does it run?

    ``versions`` maps a state name ("old"/"new") to its bytes. Running it is part
    of the check: an executable that does not start is broken whatever its bytes.
    ``execute=False`` leaves the run to the caller (whose next launch proves it).
    """
    if not target.exists():
        return Verdict("broken", "the executable is missing")
    data = target.read_bytes()
    digest = sha256(data)
    state = next((name for name, ref in versions.items() if sha256(ref) == digest), None)
    if state is None:
        return Verdict("broken", f"{len(data)} bytes matching no released version")
    mode = target.stat().st_mode
    if not mode & stat.S_IXUSR:
        return Verdict("broken", f"not executable (mode {oct(mode)})")
    if not execute:
        return Verdict(state, "")
    run_env = None if env is None else {**os.environ, **env}
    proc = subprocess.run([str(target), *run], capture_output=True, text=True, timeout=120, env=run_env)
    if proc.returncode != 0:
        return Verdict("broken", f"exit {proc.returncode}: {proc.stderr[-300:]}")
    return Verdict(state, proc.stdout.strip()[-200:])


#: Files that legitimately stay beside the executable between runs: the
#: instance lock file and the schedule folder (``<dir>cktime``).
PERSISTENT = re.compile(r"^(\..*\.lock|update)$")


def leftovers(folder: Path, name: str) -> List[str]:
    """Everything in ``folder`` besides the executable and the persistent files."""
    return sorted(p.name for p in folder.iterdir() if p.name != name and not PERSISTENT.match(p.name))


def normalize(names: Iterable[str], name: str) -> str:
    """A leftover set as a stable label: the app name and random parts replaced."""
    out = set()
    for n in names:
        n = n.replace(name, "<app>")
        n = re.sub(r"[A-Za-z0-9_]{6,}(?=$|\.)", lambda m: m.group(0) if m.group(0).isalpha() else "*", n)
        n = re.sub(r"\d+", "N", n)
        out.add(n)
    return ",".join(sorted(out)) or "-"


def describe_leftovers(folder: Path, name: str, versions: Mapping[str, bytes]) -> str:
    """:func:`normalize` of the leftovers, each marked by content: ``=new``, ``=old`` or ``partial``.

    A ``.new`` file that already holds the whole new version means the kill fell
    between the finished write and the rename; a partial one, during the write.
    """
    digests = {sha256(v): k for k, v in versions.items()}
    labels = []
    for n in leftovers(folder, name):
        path = folder / n
        tag = ""
        if path.is_file() and not n.endswith(".json"):
            tag = "=" + digests.get(sha256(path.read_bytes()), "partial")
        labels.append(normalize([n], name) + tag)
    return ",".join(sorted(labels)) or "-"


_LOG_LINE = re.compile(r"^(\d+\.\d+) (\w+) (\S+) (.*)$")
_APP_LOG_LINE = re.compile(r"^pyi-selfupdate\[\d+\]: (.*)$")


def last_log(stderr: str) -> str:
    """The last library log line a killed child wrote: where in the update it was.

    Reads both the API child's format and the frozen app's (``PYI_SELFUPDATE_LOG``).
    """
    last = ""
    for line in stderr.splitlines():
        m = _LOG_LINE.match(line)
        if m and m.group(3).startswith("pyi_selfupdate"):
            last = m.group(4)
            continue
        m = _APP_LOG_LINE.match(line)
        if m:
            last = m.group(1)
    last = re.sub(r"https?://\S+", "<url>", last)
    last = re.sub(r"/\S+", "<path>", last)
    last = re.sub(r"\d+", "N", last)
    return last[:90] or "(no log yet)"


# ------------------------------------------------------------------- figures


@dataclass
class Tally:
    """Outcome counts of one fault kind, printed at the end and written for RELIABILITY.md."""

    name: str
    seed: int
    command: str
    trials: int = 0
    outcomes: Counter = field(default_factory=Counter)
    recovered: int = 0
    recovery_tried: int = 0
    landed: Counter = field(default_factory=Counter)
    notes: List[str] = field(default_factory=list)
    failures: List[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "name": self.name, "seed": self.seed, "command": self.command,
            "trials": self.trials, "outcomes": dict(self.outcomes),
            "recovered": self.recovered, "recovery_tried": self.recovery_tried,
            "landed": dict(self.landed.most_common()), "notes": self.notes,
            "failures": self.failures[:20],
        }

    def summary(self) -> str:
        lines = [
            f"{self.name}: {self.trials} trials, seed {self.seed}: "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
            + (f"; recovered {self.recovered}/{self.recovery_tried}" if self.recovery_tried else "")
        ]
        if self.landed:
            lines.append("  where kills landed (state after the kill | last log line):")
            lines += [f"    {v:4d}  {k}" for k, v in self.landed.most_common()]
        lines += [f"  note: {n}" for n in self.notes]
        lines += [f"  FAILURE: {f}" for f in self.failures[:10]]
        lines.append(f"  reproduce: {self.command}")
        return "\n".join(lines)


TALLIES: List[Tally] = []


def record(tally: Tally) -> Tally:
    TALLIES.append(tally)
    return tally


def reproduce(test: str, seed_value: int) -> str:
    n = os.environ.get("FAULT_TRIALS")
    prefix = f"FAULT_TRIALS={n} " if n else ""
    return f"{prefix}FAULT_SEED={seed_value} make test PYTEST_ARGS='{test}'"


def write_report() -> None:
    """Append the session's tallies to ``FAULT_REPORT`` (JSON lines) when it is set."""
    path = os.environ.get("FAULT_REPORT")
    if not path or not TALLIES:
        return
    with open(path, "a", encoding="utf-8") as fh:
        for tally in TALLIES:
            fh.write(json.dumps(tally.as_dict()) + "\n")


# ----------------------------------------------------------- folders for users


def shared_dir(prefix: str) -> Path:
    """A fresh folder under /tmp that an unprivileged user can traverse (pytest's are 0700)."""
    path = Path(tempfile.mkdtemp(prefix=f"pyi-faults-{prefix}-"))
    path.chmod(0o755)
    return path


def copy_exe(data: bytes, dest: Path, mode: int = 0o755) -> Path:
    dest.write_bytes(data)
    dest.chmod(mode)
    return dest


def wait_until(pred, timeout: float, step: float = 0.001) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


# -------------------------------------------------------- the real frozen app


@dataclass
class FrozenPair:
    """example_app (textstat) at two versions, and a hand-written release tree for them."""

    old_exe: Path
    new_exe: Path
    old: bytes
    new: bytes
    root: Path
    files: Dict[str, Path]
    port: int
    name: str = "textstat"
    old_version: str = "1.0"
    new_version: str = "1.1"

    @property
    def versions(self) -> Dict[str, bytes]:
        return {"old": self.old, "new": self.new}


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build_textstat_pair(frozen, root: Path, port: Optional[int] = None) -> FrozenPair:
    """Build example_app at 1.0 and 1.1 (one module changed) with the reproducible build.

    The build inputs are the end-to-end suite's (tests/e2e/conftest.py: the URL,
    ``check_time`` 0, ``exit_wait`` 60, the version, ``textstat_core.py``
    changed), so a session that runs both with the same port builds each
    version once (``FrozenBuilder`` memoizes by inputs).
    """
    from pyi_selfupdate.protocol import current_platform

    src = REPO / "example_app"
    port = port or free_port()
    core = (src / "textstat_core.py").read_text()
    exes = {}

    def inputs(version: str) -> dict:
        env = {
            "PYI_SELFUPDATE_API_URL": f"http://127.0.0.1:{port}/",
            "PYI_SELFUPDATE_CHECK_TIME": "0",
            "PYI_SELFUPDATE_EXIT_WAIT": "60",
            "PYI_SELFUPDATE_CURRENT_VERSION": version,
        }
        files = {}
        if version != "1.0":
            files["textstat_core.py"] = core.replace('__version__ = "1.0"', f'__version__ = "{version}"')
        return dict(name="textstat", env=env, files=files)

    frozen.prefetch(src, "textstat.py", **inputs("1.1"))  # builds beside 1.0
    for version in ("1.0", "1.1"):
        exes[version] = frozen.build(src, "textstat.py", **inputs(version))
    old, new = exes["1.0"].read_bytes(), exes["1.1"].read_bytes()
    files = publish(root, "textstat", current_platform(), [("1.0", old), ("1.1", new)])
    return FrozenPair(exes["1.0"], exes["1.1"], old, new, root, files, port)


def prebuilt_textstat_pair(info: Path, root: Path) -> FrozenPair:
    """A FrozenPair from apps built earlier (``{"old": path, "new": path, "port": n}``)."""
    from pyi_selfupdate.protocol import current_platform

    doc = json.loads(info.read_text())
    old_exe, new_exe = Path(doc["old"]), Path(doc["new"])
    old, new = old_exe.read_bytes(), new_exe.read_bytes()
    files = publish(root, "textstat", current_platform(), [("1.0", old), ("1.1", new)])
    return FrozenPair(old_exe, new_exe, old, new, root, files, int(doc["port"]))


def app_env(log: str = "debug", **extra: str) -> Dict[str, str]:
    """Environment of a frozen app launch: the bootstrap's log on stderr, no stray markers."""
    env = dict(os.environ)
    for key in ("PYI_SELFUPDATE_DISABLE", "PYI_SELFUPDATE_MAIN", "PYTHONPATH"):
        env.pop(key, None)
    if log:
        env["PYI_SELFUPDATE_LOG"] = log
    env.update(extra)
    return env


#: Running an executable only to look at it: the bootstrap stays out of the way.
LOOK_ENV = {"PYI_SELFUPDATE_DISABLE": "1"}


def server_faults(size: int, url_path: str, *, stall: float, long_length: bool = True) -> Dict[str, "Fault"]:
    """Each server fault kind for a body of ``size`` bytes served at ``url_path``.

    ``stall``: seconds the stalled socket holds after its headers;
    ``long_length``: include a Content-Length larger than the body.
    """
    half = max(1, size // 2)
    kinds = {
        "404": Fault(status=404),
        "500": Fault(status=500),
        "connection reset mid-body": Fault(reset_after=half),
        "truncated body (length announced, then close)": Fault(truncate_after=half),
        "wrong Content-Length (short)": Fault(content_length=half),
        "wrong Content-Length (long)": Fault(content_length=size + 4096),
        f"stalled socket (headers, then nothing for {stall:g} s)": Fault(stall=stall),
        "redirect loop": Fault(redirect=url_path),
        "garbage instead of the body": Fault(body=b"<html><body>502 Bad Gateway</body></html>\n" * 3),
    }
    if not long_length:
        del kinds["wrong Content-Length (long)"]
    return kinds


# ------------------------------------------------------------ killed children


def run_child(server, target: Path, logs: Path, *, want: str = "", kill_at=None, **extra):
    """Run :data:`UPDATER_CHILD` on ``target``; kill it per ``kill_at`` = ("window"|"install", seconds).

    "install" counts the seconds from the moment the server sent the last byte of
    ``want`` (a URL path). Returns what happened: killed, rc, stdout, stderr, the
    run's duration, when it started and when ``want`` was sent (monotonic).
    """
    sent = threading.Event()
    t_sent = []

    def on_sent(path: str, when: float) -> None:
        if path == want:
            t_sent.append(when)
            sent.set()

    server.on_sent = on_sent
    out = open(logs / "stdout", "w+")
    err = open(logs / "stderr", "w+")
    start = time.monotonic()
    proc = subprocess.Popen(
        updater_cmd(target, server.url, **extra), stdout=out, stderr=err,
        env=child_env(), start_new_session=True,
    )
    killed = False
    if kill_at is not None:
        schedule, delay = kill_at
        if schedule == "install":
            sent.wait(timeout=60)
        time.sleep(delay)
        killed = killpg(proc)
    else:
        proc.wait(timeout=120)
    end = time.monotonic()
    server.on_sent = None
    out.seek(0)
    err.seek(0)
    return {
        "killed": killed, "rc": proc.returncode, "stdout": out.read(), "stderr": err.read(),
        "total": end - start, "started_at": start, "sent_at": t_sent[0] if t_sent else None,
    }


def logged_at(stderr: str, needle: str) -> float:
    """The monotonic time of the child's first log line containing ``needle``."""
    for line in stderr.splitlines():
        if needle in line:
            return float(line.split(" ", 1)[0])
    raise AssertionError(f"no log line with {needle!r}:\n{stderr[-2000:]}")


#: How a kill trial slows the server: the run lasts long enough to be hit anywhere.
SLOW_SERVER = {
    "manifest": Fault(delay=0.05),
    "patch": Fault(chunk_size=512, chunk_delay=0.03),
    "full": Fault(chunk_size=64 << 10, chunk_delay=0.015),
}


def arm_slow(server, root: Path, files: dict, path_kind: str) -> str:
    """Slow the server for a kill trial; for the full path make the patch 404.

    ``files`` names the tree's manifest, patch and full files. Returns the URL path
    of the artifact whose last byte starts the install window.
    """
    server.faults.clear()
    server.faults[rel_url_path(files["manifest"], root)] = SLOW_SERVER["manifest"]
    if path_kind == "patch":
        server.faults[rel_url_path(files["patch"], root)] = SLOW_SERVER["patch"]
        return "/" + rel_url_path(files["patch"], root)
    server.faults[rel_url_path(files["patch"], root)] = Fault(status=404)
    server.faults[rel_url_path(files["full"], root)] = SLOW_SERVER["full"]
    return "/" + rel_url_path(files["full"], root)
