"""Hook test run by PyInstaller's own test runner (``pyinstaller40`` ``tests`` entry point).

Run with: ``python -m PyInstaller.utils.run_tests --include_only pyi_selfupdate._hooks``
"""


def test_pyi_selfupdate_embeds_config(pyi_builder, monkeypatch):
    monkeypatch.setenv("PYTHONHASHSEED", "0")
    monkeypatch.setenv("PYI_SELFUPDATE_API_URL", "http://127.0.0.1:9/updates/")
    monkeypatch.setenv("PYI_SELFUPDATE_CURRENT_VERSION", "1.0")
    monkeypatch.setenv("PYI_SELFUPDATE_ENABLED", "0")
    pyi_builder.test_source(
        """
        import pyi_selfupdate
        from pyi_selfupdate.settings import load_embedded

        config = load_embedded()
        assert config is not None, "no embedded configuration"
        assert config["api_url"] == "http://127.0.0.1:9/updates/", config
        assert config["current_version"] == "1.0", config
        assert config["enabled"] is False, config
        """
    )
