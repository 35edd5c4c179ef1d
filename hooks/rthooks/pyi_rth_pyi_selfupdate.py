# Runtime hook of pyi-selfupdate: runs in the frozen app's __main__ namespace,
# before the app's own code. It must never abort the app, and leaves no name
# behind in __main__.


def _pyi_rth_pyi_selfupdate():
    try:
        import os
        import time

        if os.environ.get("PYI_SELFUPDATE_LOG", "").strip():
            # Showing the log needs logging: imported before the clock starts, so
            # the figures below are those of a launch that shows nothing.
            import logging  # noqa: F401

        start = time.perf_counter()
        from pyi_selfupdate import _bootstrap

        imported = time.perf_counter()
        _bootstrap.run()
        _bootstrap.log.debug(
            "runtime hook done in %.1f ms (imports %.1f ms, run %.1f ms)",
            (time.perf_counter() - start) * 1000,
            (imported - start) * 1000,
            (time.perf_counter() - imported) * 1000,
        )
    except Exception:  # the app starts whatever happens here
        try:
            import logging

            logging.getLogger("pyi_selfupdate").exception("self-update bootstrap failed")
        except Exception:
            pass


_pyi_rth_pyi_selfupdate()
del _pyi_rth_pyi_selfupdate
