"""A Windows process that starts, times and kills Windows processes (run by python.exe under Wine).

The tests of Windows semantics must act from Windows processes: a Linux process
is not bound by Windows file-sharing rules, and ``wine``'s own exit status is
cut to 8 bits. Prints one JSON line.

    harness.py launch N EXE ARG...        start N copies at once; each one's exit status, output, times
    harness.py exitcode EXE ARG...        run once; the exact 32-bit exit status
    harness.py kill SECONDS EXE ARG...    start, wait, TerminateProcess the tree (taskkill /F /T)
    harness.py hold SECONDS EXE ARG...    start with a stdin kept open SECONDS, then send TEXT (env)
    harness.py exitkill SECONDS EXE ARG... run to its end, then TerminateProcess what it left running
                                          (its children: a folder switch) SECONDS later
"""

import ctypes
import json
import os
import subprocess
import sys
import time
from ctypes import wintypes

k32 = ctypes.WinDLL("kernel32", use_last_error=True)


class PROCESSENTRY32W(ctypes.Structure):
    _fields_ = [("dwSize", wintypes.DWORD), ("cntUsage", wintypes.DWORD),
                ("th32ProcessID", wintypes.DWORD), ("th32DefaultHeapID", ctypes.c_void_p),
                ("th32ModuleID", wintypes.DWORD), ("cntThreads", wintypes.DWORD),
                ("th32ParentProcessID", wintypes.DWORD), ("pcPriClassBase", wintypes.LONG),
                ("dwFlags", wintypes.DWORD), ("szExeFile", wintypes.WCHAR * 260)]


k32.CreateToolhelp32Snapshot.restype = wintypes.HANDLE
k32.OpenProcess.restype = wintypes.HANDLE
k32.GetProcessTimes.argtypes = [wintypes.HANDLE] + [ctypes.POINTER(wintypes.FILETIME)] * 4


def created(pid):
    """The creation time of process ``pid`` (100 ns units), or None if it is gone."""
    handle = k32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        return None
    times = [wintypes.FILETIME() for _ in range(4)]
    ok = k32.GetProcessTimes(wintypes.HANDLE(handle), *[ctypes.byref(t) for t in times])
    k32.CloseHandle(wintypes.HANDLE(handle))
    return (times[0].dwHighDateTime << 32 | times[0].dwLowDateTime) if ok else None


def snapshot():
    """(pid, parent pid) of every process now."""
    snap = k32.CreateToolhelp32Snapshot(2, 0)
    entry = PROCESSENTRY32W()
    entry.dwSize = ctypes.sizeof(entry)
    found = []
    ok = k32.Process32FirstW(wintypes.HANDLE(snap), ctypes.byref(entry))
    while ok:
        found.append((entry.th32ProcessID, entry.th32ParentProcessID))
        ok = k32.Process32NextW(wintypes.HANDLE(snap), ctypes.byref(entry))
    k32.CloseHandle(wintypes.HANDLE(snap))
    return found


def follow(known, born):
    """Add to ``known`` (pid: creation time) the processes descending from it, created after ``born``.

    A process keeps its parent's pid after the parent ends, and pids are reused:
    a child counts only if created after the root (Wine's own services.exe,
    started earlier, may have a parent pid equal to a dead child's). Called
    often while the tree lives: a child found once stays known after its
    parent ends.
    """
    grew = True
    while grew:
        grew = False
        for pid, parent in snapshot():
            if parent in known and pid not in known:
                when = created(pid)
                if when is not None and born is not None and when >= born:
                    known[pid] = when
                    grew = True


def terminate(pid):
    handle = k32.OpenProcess(0x0001, False, pid)  # PROCESS_TERMINATE
    if not handle:
        return False
    ok = k32.TerminateProcess(wintypes.HANDLE(handle), 1)
    k32.CloseHandle(wintypes.HANDLE(handle))
    return bool(ok)


def kill_known(known, skip=()):
    """TerminateProcess each process of ``known`` still running (the same one: same creation time)."""
    killed = []
    for pid, when in list(known.items()):
        if pid not in skip and created(pid) == when and terminate(pid):
            killed.append(pid)
    return killed


def kill_tree(known, born, skip=()):
    """Kill ``known`` and whatever it spawns meanwhile, until nothing of it runs."""
    killed = []
    for _ in range(20):
        follow(known, born)
        round_ = kill_known(known, skip)
        killed += round_
        if not round_:
            break
        time.sleep(0.05)
    return killed


def start(cmd, stdin=subprocess.DEVNULL):
    return subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def text(data):
    return data.decode("utf-8", "replace")


def main():
    what, args = sys.argv[1], sys.argv[2:]
    if what == "launch":
        n, cmd = int(args[0]), args[1:]
        t0 = time.time()
        procs = [start(cmd) for _ in range(n)]
        results = []
        for p in procs:
            out, err = p.communicate()
            results.append({"pid": p.pid, "rc": p.returncode, "out": text(out), "err": text(err),
                            "end": time.time() - t0})
        print(json.dumps(results))
    elif what == "exitcode":
        p = start(args)
        out, err = p.communicate()
        print(json.dumps({"rc": p.returncode, "out": text(out), "err": text(err)}))
    elif what == "kill":
        delay, cmd = float(args[0]), args[1:]
        p = start(cmd)
        born = created(p.pid)
        known = {p.pid: born}
        end = time.time() + delay
        while time.time() < end:
            follow(known, born)
            time.sleep(0.01)
        killed = kill_tree(known, born)
        out, err = p.communicate(timeout=120)
        print(json.dumps({"killed": killed, "rc": p.returncode, "out": text(out), "err": text(err)}))
    elif what == "exitkill":
        delay, cmd = float(args[0]), args[1:]
        p = start(cmd)
        born = created(p.pid)
        known = {p.pid: born}
        while p.poll() is None:
            follow(known, born)
            time.sleep(0.01)
        out, err = p.communicate(timeout=120)
        follow(known, born)
        left = sorted(pid for pid in known if pid != p.pid)
        time.sleep(delay)
        killed = kill_tree(known, born, skip={p.pid})
        print(json.dumps({"left": left, "killed": killed, "rc": p.returncode,
                          "out": text(out), "err": text(err)}))
    elif what == "hold":
        seconds, cmd = float(args[0]), args[1:]
        p = start(cmd, stdin=subprocess.PIPE)
        time.sleep(seconds)
        out, err = p.communicate(os.environ.get("HARNESS_TEXT", "").encode())
        print(json.dumps({"rc": p.returncode, "out": text(out), "err": text(err)}))
    else:
        raise SystemExit(f"unknown command {what}")


if __name__ == "__main__":
    main()
