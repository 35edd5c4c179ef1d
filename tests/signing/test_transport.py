"""The transport policy helpers: plain HTTP, loopback hosts, redirects, body caps."""

from __future__ import annotations

import pytest

from pyi_selfupdate import fetch, signing
from pyi_selfupdate.errors import ConfigError, FetchError
from pyi_selfupdate.release.keys import generate_private_key


@pytest.mark.parametrize("host, loopback", [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("LOCALHOST", True),
    # any other name may resolve anywhere (a hosts file, a resolver): *.localhost included
    ("app.localhost", False), ("localhost.", False), ("localhost.example.com", False),
    ("10.0.0.1", False), ("example.com", False), ("127.0.0.1.example.com", False), ("", False), (None, False),
])
def test_loopback_hosts(host, loopback):
    assert fetch.is_loopback_host(host) is loopback


@pytest.mark.parametrize("url, signed, allow_http, ok", [
    ("https://u.example/", False, None, True),
    ("https://u.example/", False, False, True),
    ("http://127.0.0.1:9/", False, False, True),
    ("http://app.localhost:9/", False, None, False),
    ("http://u.example/", True, None, True),
    ("http://u.example/", False, None, False),
    ("http://u.example/", False, True, True),
    ("http://u.example/", True, False, False),
    ("HTTP://u.example/", False, None, False),
    ("file:///srv/updates/", False, None, True),  # left to the requester that reads it
])
def test_transport_policy(url, signed, allow_http, ok):
    if ok:
        fetch.check_transport(url, "api_url", signed=signed, allow_http=allow_http)
    else:
        with pytest.raises(ConfigError, match="api_url .*plain HTTP"):
            fetch.check_transport(url, "api_url", signed=signed, allow_http=allow_http)


class FakeResponse:
    def __init__(self, url: str, location: str = None) -> None:
        self.url = url
        self.is_redirect = location is not None
        self.headers = {"Location": location} if location else {}
        self.closed = False

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("url, location", [
    ("https://u.example/a.json", "/mirror/a.json"),
    ("https://u.example/a.json", "https://u.example:443/b.json"),
    ("http://u.example/a.json", "b.json"),
])
def test_same_origin_redirects_pass(url, location):
    resp = FakeResponse(url, location)
    assert fetch.refuse_cross_origin_redirect(resp) is resp and not resp.closed


@pytest.mark.parametrize("url, location", [
    ("https://u.example/a.json", "https://evil.example/a.json"),
    ("https://u.example/a.json", "http://u.example/a.json"),  # downgrade
    ("https://u.example/a.json", "https://u.example:8443/a.json"),
    ("http://127.0.0.1:80/a", "//evil.example/a"),
])
def test_cross_origin_redirects_are_refused(url, location):
    resp = FakeResponse(url, location)
    with pytest.raises(FetchError, match="another host"):
        fetch.refuse_cross_origin_redirect(resp)
    assert resp.closed


def test_non_redirects_pass():
    resp = FakeResponse("https://u.example/a")
    assert fetch.refuse_cross_origin_redirect(resp) is resp


def test_redirect_policy_is_in_the_session_of_every_requests_requester():
    import requests

    from pyi_selfupdate.fetch import RequestsRequester

    requester = RequestsRequester()
    assert requester.session.hooks["response"].count(fetch.refuse_cross_origin_redirect) == 1
    own = requests.Session()  # a session of the app's own (proxies, certificates)
    assert RequestsRequester(session=own).session is own
    assert RequestsRequester(session=own).session.hooks["response"].count(
        fetch.refuse_cross_origin_redirect) == 1


def test_the_apps_own_session_keeps_its_adapter_settings_under_the_watchdog():
    """requests' plain adapters are replaced by watched ones with the same settings; the app's own are kept."""
    import requests
    from requests.adapters import HTTPAdapter

    from pyi_selfupdate._watchdog import WatchedAdapter
    from pyi_selfupdate.fetch import RequestsRequester

    class Custom(HTTPAdapter):
        pass

    own = requests.Session()
    own.mount("https://", HTTPAdapter(max_retries=3, pool_maxsize=7))
    own.mount("http://mirror.example/", Custom())
    RequestsRequester(session=own).session
    https = own.get_adapter("https://u.example/")
    assert isinstance(https, WatchedAdapter) and https.max_retries.total == 3 and https._pool_maxsize == 7
    assert isinstance(own.get_adapter("http://u.example/"), WatchedAdapter)
    assert type(own.get_adapter("http://mirror.example/x")) is Custom


def test_body_cap_bounds_any_real_compressed_release():
    import gzip
    import os

    data = os.urandom(200_000)  # incompressible: the worst case for gzip
    assert len(gzip.compress(data, 9)) < signing.signed_body_cap(len(data))
    assert signing.signed_body_cap(0) == 64 << 10


def test_public_keys_setting_is_normalised_and_checked():
    key = generate_private_key()
    assert signing.check_public_keys(None) == []
    assert signing.check_public_keys([]) == []
    assert signing.check_public_keys(key.public_key_text) == [key.public_key_text]
    assert signing.check_public_keys([key.public_key]) == [key.public_key_text]
    with pytest.raises(ConfigError, match="keygen"):
        signing.check_public_keys(["ed25519:short"])


def test_a_listed_host_is_followed_over_https_and_plain_http_only_as_allow_http_says():
    policy = fetch.RedirectPolicy(["cdn.example.com"], allow_http=False)
    ok = FakeResponse("https://u.example/a.gz", "https://CDN.example.com/b/a.gz?sig=1")
    assert policy(ok) is ok and not ok.closed
    down = FakeResponse("https://u.example/a.gz", "http://cdn.example.com/a.gz")
    with pytest.raises(FetchError, match="plain HTTP"):
        policy(down)
    assert down.closed
    with pytest.raises(FetchError, match="another host"):
        policy(FakeResponse("https://u.example/a.gz", "https://cdn.example.com.evil.example/a.gz"))
