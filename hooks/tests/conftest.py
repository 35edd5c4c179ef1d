# PyInstaller's fixtures (pyi_builder, ...) for the hook tests, as pyinstaller-hooks-contrib does.
from PyInstaller.utils.conftest import *  # noqa: F401,F403
