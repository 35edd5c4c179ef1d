# Runtime hook of pyi-selfupdate: runs in the frozen app's __main__ namespace,
# before the app's own code. It must never abort the app, and leaves no name
# behind in __main__.


def _pyi_rth_pyi_selfupdate():
    try:
        from pyi_selfupdate import _bootstrap

        _bootstrap.run()
    except Exception:  # the app starts whatever happens here
        try:
            import logging

            logging.getLogger("pyi_selfupdate").exception("self-update bootstrap failed")
        except Exception:
            pass


_pyi_rth_pyi_selfupdate()
del _pyi_rth_pyi_selfupdate
