"""PyInstaller hook for ``bsdiff4`` (a dependency of pyi-selfupdate's client).

``bsdiff4.test()`` imports ``bsdiff4.test_all``, which pulls ``unittest`` and,
through it, ``asyncio``, ``concurrent.futures`` and ``multiprocessing`` (with
its runtime hook) into every self-updating app. No frozen app runs bsdiff4's
self-test: leave it out.
"""

excludedimports = ["bsdiff4.test_all"]
