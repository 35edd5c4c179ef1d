"""Replay the transport attacks of SECURITY.md against the real client (the figures there).

Usage: python tests/signing/measure_transport.py [DEADLINE]

For each attack, a hostile server on 127.0.0.1 (in this process) serves a
signed release tree of myapp 1.0 -> 2.0 with the attacker's change, and a
fresh Python process runs ``Updater(deadline=DEADLINE).update()`` (default
3 s) against it. Printed per attack: wall time of ``update()``, the client
process's peak RSS, the bytes its sockets received (``recv_into``, through
which ``http.client`` reads), what the server managed to send (bytes written, kernel
buffers included; header bytes dripped; redirects), the error, and whether
the installed file kept its bytes.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from _hostile import drip_headers, endless_empty_gzip, slow_redirects  # noqa: E402
from _server import Fault, ReleaseServer  # noqa: E402
from test_hostile_server import CMD, FULL2, MANIFEST, PATCH12, PLAT, Tree, _payload  # noqa: E402

CLIENT = r"""
import json, resource, sys, time
from pyi_selfupdate import Updater
import nacl.signing, requests  # imported now, as the update would
api, target, key, deadline = sys.argv[1:5]

import socket
received = [0]
_recv_into = socket.socket.recv_into

def counting_recv_into(self, buffer, *args):  # http.client reads every socket through this
    n = _recv_into(self, buffer, *args)
    received[0] += n
    return n

socket.socket.recv_into = counting_recv_into

up = Updater(current_version="1.0", api_url=api, cmd_name="%s", platform="%s", target=target,
             public_keys=[key], deadline=float(deadline))
t0 = time.monotonic()
try:
    up.update()
    error = ""
except Exception as exc:
    error = f"{type(exc).__name__}: {exc}"
print(json.dumps({"seconds": time.monotonic() - t0, "read": received[0],
                  "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "error": error}))
""" % (CMD, PLAT)


def attacks(server: ReleaseServer):
    def gzip_manifest():
        return endless_empty_gzip(server, "/" + MANIFEST)

    def gzip_full():
        server.faults[PATCH12] = Fault(status=404)
        return endless_empty_gzip(server, "/" + FULL2)

    def drip():
        return drip_headers(server, "/" + MANIFEST)

    def redirects():
        return slow_redirects(server, "/" + MANIFEST, delay=0.45)

    return {  # name: (set-up, what the server's count counts)
        "manifest: endless empty deflate blocks (Content-Encoding: gzip)": (gzip_manifest, "bytes written"),
        ".gz: endless empty deflate blocks, patch missing": (gzip_full, "bytes written"),
        "manifest headers dripped, 1 byte / 0.5 s": (drip, "header bytes"),
        "same-origin redirects, one every 0.45 s": (redirects, "redirects"),
    }


def run_client(api: str, tree: Tree, deadline: float) -> dict:
    out = subprocess.run([sys.executable, "-c", CLIENT, api, str(tree.target), tree.key.public_key_text,
                          str(deadline)], capture_output=True, text=True, timeout=600,
                         cwd=tree.root)  # the installed pyi_selfupdate, not a source tree in the cwd
    return json.loads(out.stdout.strip().splitlines()[-1]) if out.stdout.strip() else {"error": out.stderr}


def main() -> None:
    deadline = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        for n, name in enumerate(attacks(None)):
            root = base / str(n)
            root.mkdir()
            tree = Tree(root)
            tree.install("1.0")
            server = ReleaseServer(tree.public)
            try:
                arm, unit = attacks(server)[name]
                sent = arm()
                result = run_client(server.url, tree, deadline)
                time.sleep(0.5)  # the server notices the client hung up
                result["sent"] = f"{sent.total:,} {unit}"
            finally:
                server.close()
            result["untouched"] = tree.target.read_bytes() == _payload("1.0")
            rows.append((name, result))
        # a connect that never completes: the accept queue of a listener is full
        root = base / "connect"
        root.mkdir()
        tree = Tree(root)
        tree.install("1.0")
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        filler = socket.create_connection(listener.getsockname(), timeout=5)
        try:
            result = run_client(f"http://127.0.0.1:{listener.getsockname()[1]}/", tree, deadline)
        finally:
            filler.close()
            listener.close()
        result["sent"] = "-"
        result["untouched"] = tree.target.read_bytes() == _payload("1.0")
        rows.append(("connect never completes (connect timeout 10 s)", result))
    print(f"deadline {deadline:g} s")
    print("| attack | time | peak RSS | client received | server sent | installed file | error |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, r in rows:
        print(f"| {name} | {r.get('seconds', 0):.2f} s | {r.get('rss_kib', 0) / 1024:.0f} MiB | "
              f"{r.get('read', 0):,} B | {r.get('sent')} | "
              f"{'untouched' if r['untouched'] else 'CHANGED'} | {r['error'][:160]} |")


if __name__ == "__main__":
    main()
