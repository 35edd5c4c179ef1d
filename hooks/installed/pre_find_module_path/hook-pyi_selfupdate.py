"""Stop a build whose app imports pyi_selfupdate when the Python running PyInstaller cannot import it.

Such an app would build without the package and crash at launch with
``ModuleNotFoundError: No module named 'pyi_selfupdate'``. A copy of this file is
``installed/pre_find_module_path/`` (what ``pyi-selfupdate hooks-dir`` prints
when the package is installed): keep the two identical.
"""

import importlib.machinery


def pre_find_module_path(api):
    if api.module_name != "pyi_selfupdate":
        return
    dirs = api.search_dirs if api.search_dirs is not None else api.module_graph.path
    if importlib.machinery.PathFinder.find_spec("pyi_selfupdate", list(dirs)) is None:
        raise SystemExit(
            "pyi-selfupdate: build stopped: the app imports pyi_selfupdate, but the Python running "
            "PyInstaller cannot import it, so the app would crash at launch (ModuleNotFoundError). "
            "Install pyi-selfupdate into the environment that runs PyInstaller (`python -m pip install "
            "pyi-selfupdate` with that Python; its hooks then need no --additional-hooks-dir), or put a "
            "source checkout on its path (--paths CHECKOUT)"
        )
