"""The one pyi_selfupdate a test run uses, and child Python processes that use it too.

The tests exercise the installed package (``make setup`` installs it into
.venv), never the source tree beside it: ``tests/conftest.py`` stops the run if
the copy imported is not that one. Child interpreters started by the tests
(``python -c``, ``python -m pyi_selfupdate``) must import the same copy, so
they get :func:`python_env`: the installed copy's folder on ``PYTHONPATH`` and
``PYTHONSAFEPATH`` (no current folder first on ``sys.path``: run from the
repository root, ``-m`` / ``-c`` would otherwise import the source tree).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Iterable, Mapping, Optional

import pyi_selfupdate

PACKAGE_DIR = Path(pyi_selfupdate.__file__).resolve().parent
#: The folder holding the package used by this run (site-packages, or the checkout if editable).
PATH_ENTRY = str(PACKAGE_DIR.parent)


def python_env(env: Optional[Mapping[str, str]] = None, *, first: Iterable[str] = (),
               **extra: str) -> Dict[str, str]:
    """``env`` (default: this process's) for a child Python importing this run's pyi_selfupdate.

    ``first``: folders put on ``PYTHONPATH`` before it (e.g. a plugin's site).
    """
    out = dict(os.environ if env is None else env)
    out["PYTHONPATH"] = os.pathsep.join([*first, PATH_ENTRY])
    out["PYTHONSAFEPATH"] = "1"
    out.update(extra)
    return out
