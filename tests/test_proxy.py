"""Proxies: ``proxy=``, ``HTTP_PROXY``/``HTTPS_PROXY``/``NO_PROXY`` with ``trust_env``, worked
out once; proxy credentials kept secret; no ``~/.netrc``. Through a real forwarding proxy
(``tests/forward_proxy.py``) to the real FakeACPServer, all on loopback."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path
from urllib.parse import quote

import pytest

from acp_async import ACPClient, APIConnectionError, APIStatusError
from acp_async.testing import FakeACPServer

from .forward_proxy import ForwardProxy

USER, PASSWORD = "proxy-user", "pr0xy:p@ss/w%rd"
CREDENTIALS = f"{quote(USER, safe='')}:{quote(PASSWORD, safe='')}"


def _through(proxy: ForwardProxy) -> list[str]:
    return [f"{seen.method} {seen.target}" for seen in proxy.seen]


async def test_explicit_proxy_carries_every_request(fake: FakeACPServer, no_backoff: None) -> None:
    """proxy= sends each request through the proxy, in absolute form, to the fake."""
    sid = fake.server_ids[0]
    async with ForwardProxy() as proxy:
        async with ACPClient(fake.token, base_url=fake.base_url, proxy=proxy.url) as client:
            assert client.config.proxy is not None
            page = await client.runs.list(sid, limit=2)
            outcomes = [o async for o in client.runs.list_many(fake.server_ids)]
    assert len(page.data) == 2
    assert all(o.error is None for o in outcomes)
    expected = f"GET {fake.base_url}/v1/servers/{sid}/runtime/agent/runs?limit=2"
    assert _through(proxy)[0] == expected
    assert len(proxy.seen) == len(fake.requests) == 1 + len(fake.server_ids)


@pytest.mark.parametrize("name", ["HTTP_PROXY", "http_proxy"])
async def test_http_proxy_from_the_environment(
    fake: FakeACPServer, monkeypatch: pytest.MonkeyPatch, no_backoff: None, name: str
) -> None:
    """With trust_env (the default), HTTP_PROXY (or http_proxy) carries an http base URL's
    requests; trust_env=False ignores it."""
    sid = fake.server_ids[0]
    async with ForwardProxy() as proxy:
        monkeypatch.setenv(name, proxy.url)
        async with ACPClient(fake.token, base_url=fake.base_url) as client:
            await client.runs.list(sid)
        assert len(proxy.seen) == 1
        async with ACPClient(fake.token, base_url=fake.base_url, trust_env=False) as client:
            assert client.config.proxy is None
            await client.runs.list(sid)
    assert len(proxy.seen) == 1
    assert len(fake.requests) == 2


@pytest.mark.parametrize(
    "no_proxy",
    ["127.0.0.1", "localhost,127.0.0.1", "*", ".0.0.1", "127.0.0.1:{port}", " other, 127.0.0.1 "],
)
async def test_no_proxy_bypasses_the_proxy(
    fake: FakeACPServer, monkeypatch: pytest.MonkeyPatch, no_backoff: None, no_proxy: str
) -> None:
    """NO_PROXY naming the base URL's host (or host:port, a suffix, or *) means direct."""
    port = fake.base_url.rpartition(":")[2]
    async with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", no_proxy.format(port=port))
        async with ACPClient(fake.token, base_url=fake.base_url) as client:
            assert client.config.proxy is None
            await client.runs.list(fake.server_ids[0])
    assert proxy.seen == []
    assert len(fake.requests) == 1


async def test_no_proxy_naming_another_host_keeps_the_proxy(
    fake: FakeACPServer, monkeypatch: pytest.MonkeyPatch, no_backoff: None
) -> None:
    """NO_PROXY for other hosts (or another port) leaves the proxy in place."""
    async with ForwardProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "example.com,127.0.0.2,127.0.0.1:1")
        async with ACPClient(fake.token, base_url=fake.base_url) as client:
            await client.runs.list(fake.server_ids[0])
    assert len(proxy.seen) == 1


async def test_explicit_proxy_beats_the_environment(
    fake: FakeACPServer, monkeypatch: pytest.MonkeyPatch, no_backoff: None
) -> None:
    """proxy= wins over HTTP_PROXY and over NO_PROXY (an argument beats the environment),
    also with trust_env=False."""
    async with ForwardProxy() as chosen, ForwardProxy() as from_env:
        monkeypatch.setenv("HTTP_PROXY", from_env.url)
        monkeypatch.setenv("NO_PROXY", "*")
        for trust_env in (True, False):
            async with ACPClient(
                fake.token, base_url=fake.base_url, proxy=chosen.url, trust_env=trust_env
            ) as client:
                await client.runs.list(fake.server_ids[0])
    assert len(chosen.seen) == 2
    assert from_env.seen == []


async def test_the_proxy_is_worked_out_once_at_construction(
    fake: FakeACPServer, monkeypatch: pytest.MonkeyPatch, no_backoff: None
) -> None:
    """The environment is read at construction, not per request: setting HTTP_PROXY
    afterwards changes nothing for that client (and removing it neither)."""
    async with ForwardProxy() as proxy:
        async with ACPClient(fake.token, base_url=fake.base_url) as direct:
            monkeypatch.setenv("HTTP_PROXY", proxy.url)
            await direct.runs.list(fake.server_ids[0])
            async with ACPClient(fake.token, base_url=fake.base_url) as proxied:
                monkeypatch.delenv("HTTP_PROXY")
                await proxied.runs.list(fake.server_ids[0])
    assert len(fake.requests) == 2
    assert len(proxy.seen) == 1


def test_https_base_url_takes_https_proxy_and_http_takes_http_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The proxy is chosen by the base URL's scheme; a proxy without a scheme is http://."""
    monkeypatch.setenv("HTTP_PROXY", "http://plain-proxy.test:3128")
    monkeypatch.setenv("HTTPS_PROXY", "tls-proxy.test:8443")
    https = ACPClient("k", base_url="https://api.test").config.proxy
    http = ACPClient("k", base_url="http://127.0.0.1:9").config.proxy
    assert str(https) == "http://tls-proxy.test:8443"
    assert str(http) == "http://plain-proxy.test:3128"


async def test_https_proxy_tunnels_with_connect_and_keeps_credentials_secret(
    fake: FakeACPServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    no_backoff: None,
) -> None:
    """An https base URL goes through HTTPS_PROXY with CONNECT and the credentials as
    Proxy-Authorization; the TLS handshake with the plain-http fake then fails, and that
    error (aiohttp's text included) and every log record hold no proxy credential."""
    caplog.set_level(logging.DEBUG, logger="acp_async")
    port = fake.base_url.rpartition(":")[2]
    async with ForwardProxy(credentials=(USER, PASSWORD)) as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url.replace("//", f"//{CREDENTIALS}@"))
        client = ACPClient(fake.token, base_url=f"https://127.0.0.1:{port}", max_retries=0)
        async with client:
            with pytest.raises(APIConnectionError) as info:
                await client.runs.list("srv-0001")
    assert [seen.method for seen in proxy.seen] == ["CONNECT"]
    assert proxy.seen[0].target == f"127.0.0.1:{port}"
    assert proxy.seen[0].proxy_authorization == proxy._expected
    _assert_secret_kept(client, info.value, caplog)


async def test_proxy_credentials_are_sent_and_never_shown(
    fake: FakeACPServer, caplog: pytest.LogCaptureFixture, no_backoff: None
) -> None:
    """user:password in proxy= becomes Proxy-Authorization (percent-decoded), and shows in
    no repr, error or log record: not when the proxy accepts, nor when it refuses (407)."""
    caplog.set_level(logging.DEBUG, logger="acp_async")
    async with ForwardProxy(credentials=(USER, PASSWORD)) as proxy:
        with_credentials = proxy.url.replace("//", f"//{CREDENTIALS}@")
        client = ACPClient(fake.token, base_url=fake.base_url, proxy=with_credentials)
        async with client:
            page = await client.runs.list(fake.server_ids[0])
        assert page.data
        assert str(client.config.proxy) == proxy.url
        wrong = proxy.url.replace("//", f"//{quote(USER)}:wrong-{quote(PASSWORD, safe='')}@")
        refused = ACPClient(fake.token, base_url=fake.base_url, proxy=wrong, max_retries=0)
        async with refused:
            with pytest.raises(APIStatusError) as info:
                await refused.runs.list(fake.server_ids[0])
    assert info.value.status == 407
    assert proxy.seen[0].proxy_authorization == proxy._expected
    assert proxy.seen[1].proxy_authorization != proxy._expected
    assert len(fake.requests) == 1  # the refused one never reached the fake
    assert all(h.lower() != "proxy-authorization" for h in fake.requests[0].headers)
    _assert_secret_kept(client, info.value, caplog)
    _assert_secret_kept(refused, info.value, caplog)


async def test_unreachable_proxy_error_names_no_credentials(
    fake: FakeACPServer, caplog: pytest.LogCaptureFixture, no_backoff: None
) -> None:
    """A proxy that refuses connections is an APIConnectionError whose text (aiohttp's
    quotes the proxy) holds no credential; nor does any log record."""
    caplog.set_level(logging.DEBUG, logger="acp_async")
    dead = f"http://{CREDENTIALS}@127.0.0.1:1"
    client = ACPClient(fake.token, base_url=fake.base_url, proxy=dead, max_retries=1)
    async with client:
        with pytest.raises(APIConnectionError) as info:
            await client.runs.list(fake.server_ids[0])
    assert fake.requests == []
    _assert_secret_kept(client, info.value, caplog)


def _assert_secret_kept(
    client: ACPClient, error: BaseException, caplog: pytest.LogCaptureFixture
) -> None:
    printed = "".join(traceback.format_exception(error))
    shown = [repr(client), repr(client.config), str(error), repr(error), printed]
    shown += [record.getMessage() for record in caplog.records]
    for text in shown:
        for secret in (PASSWORD, quote(PASSWORD, safe=""), CREDENTIALS):
            assert secret not in text


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"proxy": "socks5://u:hunter2@127.0.0.1:1080"}, ValueError, "proxy must be"),
        ({"proxy": "http://"}, ValueError, "proxy must be"),
        ({"proxy": "http://u%3Ax:hunter2@127.0.0.1:3128"}, ValueError, "user name"),
        ({"proxy": 3128}, TypeError, "proxy"),
        ({"trust_env": "yes"}, TypeError, "trust_env"),
    ],
)
def test_bad_proxy_options_fail_at_construction(
    kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    """A proxy that is no http(s) URL, or a wrong type, fails at construction, and the
    message never quotes the value (it may hold a password)."""
    with pytest.raises(error, match=match) as info:
        ACPClient("k", **kwargs)  # type: ignore[arg-type]
    assert "hunter2" not in "".join(traceback.format_exception(info.value))


def test_bad_proxy_in_the_environment_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HTTPS_PROXY that aiohttp cannot use is a ValueError naming it, not its value;
    trust_env=False does not read it."""
    monkeypatch.setenv("HTTPS_PROXY", "socks5://u:hunter2@127.0.0.1:1080")
    with pytest.raises(ValueError, match="HTTPS_PROXY") as info:
        ACPClient("k")
    assert "hunter2" not in "".join(traceback.format_exception(info.value))
    assert ACPClient("k", trust_env=False).config.proxy is None


async def test_netrc_is_never_read(
    fake: FakeACPServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, no_backoff: None
) -> None:
    """A ~/.netrc entry for the API's host adds nothing: the bearer token is the only
    Authorization sent, with trust_env on (the default)."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password netrc-secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / ".netrc").write_text(netrc.read_text())
    async with ACPClient(fake.token, base_url=fake.base_url) as client:
        await client.runs.list(fake.server_ids[0])
    assert fake.requests[0].headers["Authorization"] == f"Bearer {fake.token}"
    assert fake.requests[0].auth == "bearer"


async def test_a_derived_client_goes_through_the_same_proxy(
    fake: FakeACPServer, no_backoff: None
) -> None:
    """with_options keeps the proxy (and its credentials)."""
    async with ForwardProxy(credentials=(USER, PASSWORD)) as proxy:
        with_credentials = proxy.url.replace("//", f"//{CREDENTIALS}@")
        async with ACPClient(fake.token, base_url=fake.base_url, proxy=with_credentials) as c:
            await c.with_options(timeout=5.0).runs.list(fake.server_ids[0])
    assert len(proxy.seen) == 1
    assert proxy.seen[0].proxy_authorization == proxy._expected
