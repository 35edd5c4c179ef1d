"""Measure what an Ed25519 library adds to a onefile PyInstaller app (the figures in SECURITY.md).

Usage: python tests/signing/measure_footprint.py [LIBRARY...]
LIBRARY is any of: nacl cryptography pure25519 (default: those importable here).
Builds a requests hello-world with PYTHONHASHSEED=0 with and without each
library, one build at a time, and prints the size differences. Measure in a
virtual environment that does not hold the other candidates: PyInstaller
collects optional imports of requests/urllib3 (cryptography) when installed.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

APPS = {
    "base": "import requests, hashlib\nprint('ok')\n",
    "nacl": "import requests, hashlib\nimport nacl.signing\nprint('ok', nacl.signing.VerifyKey(bytes(32)))\n",
    "cryptography": "import requests, hashlib\n"
                    "from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey\n"
                    "print('ok', Ed25519PublicKey)\n",
    "pure25519": "import requests, hashlib\nimport pure25519.eddsa\nprint('ok', pure25519.eddsa)\n",
}
EXTRA_ARGS = {"nacl": ["--hidden-import", "_cffi_backend"]}  # imported from C by nacl._sodium


def build(work: Path, name: str) -> int:
    script = work / f"app_{name}.py"  # not nacl.py: it would shadow the package
    script.write_text(APPS[name])
    env = dict(os.environ, PYTHONHASHSEED="0")
    subprocess.run(
        [sys.executable, "-m", "PyInstaller", "--onefile", "--noconfirm", "--log-level", "WARN",
         "--distpath", str(work / "dist"), "--workpath", str(work / "build"),
         "--specpath", str(work), *EXTRA_ARGS.get(name, []), str(script)],
        check=True, env=env, cwd=work,
    )
    exe = work / "dist" / f"app_{name}"
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    assert out.startswith("ok"), out
    return exe.stat().st_size


def main(argv: list) -> int:
    wanted = argv or [n for n in ("nacl", "cryptography", "pure25519") if importlib.util.find_spec(n)]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = build(work, "base")
        print(f"base (requests hello-world): {base:,} bytes")
        for name in wanted:
            size = build(work, name)
            print(f"+ {name}: {size:,} bytes ({size - base:+,})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
