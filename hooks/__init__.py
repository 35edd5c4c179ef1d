"""PyInstaller hooks of pyi-selfupdate (installed as ``pyi_selfupdate._hooks``).

PyInstaller finds this folder through the ``pyinstaller40`` entry points below,
or through ``--additional-hooks-dir "$(pyi-selfupdate hooks-dir)"``.
"""

import os
from typing import List


def get_hook_dirs() -> List[str]:
    return [os.path.dirname(os.path.abspath(__file__))]


def get_pyinstaller_tests() -> List[str]:
    return [os.path.join(os.path.dirname(os.path.abspath(__file__)), "tests")]
