"""The platform's conventions: TESTBASE_* names, the base64 runtime JSON, the default
server id and both runtime-token headers, against the real loopback FakeACPServer."""

from __future__ import annotations

import base64
import json
import logging
import traceback

import pytest

from acp_async import ACPClient, AuthenticationError
from acp_async.testing import FakeACPServer

RUNTIME_HEADERS = ("X-Computer-Agents-Runtime-Token", "X-Testbase-Runtime-Token")


def b64json(document: object) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


def runtime_json(api_base_url: str | None = None, server_id: str | None = None) -> str:
    document: dict[str, object] = {"platform": {}, "server": {}, "other": [1, 2]}
    if api_base_url is not None:
        document["platform"] = {"apiBaseUrl": api_base_url, "region": "eu"}
    if server_id is not None:
        document["server"] = {"id": server_id, "name": "build box"}
    return b64json(document)


def test_api_key_names_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """ACP_API_KEY, COMPUTER_AGENTS_API_KEY, TESTBASE_API_KEY: the first set wins."""
    monkeypatch.setenv("TESTBASE_API_KEY", "k-testbase")
    assert ACPClient().config.api_key == "k-testbase"
    monkeypatch.setenv("COMPUTER_AGENTS_API_KEY", "k-official")
    assert ACPClient().config.api_key == "k-official"
    monkeypatch.setenv("ACP_API_KEY", "k-acp")
    assert ACPClient().config.api_key == "k-acp"


def test_runtime_token_names_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """COMPUTER_AGENTS_RUNTIME_TOKEN, then TESTBASE_RUNTIME_TOKEN; any API key name beats
    both, TESTBASE_API_KEY included."""
    monkeypatch.setenv("TESTBASE_RUNTIME_TOKEN", "rt-testbase")
    assert ACPClient().config.runtime_token == "rt-testbase"
    monkeypatch.setenv("COMPUTER_AGENTS_RUNTIME_TOKEN", "rt-official")
    assert ACPClient().config.runtime_token == "rt-official"
    monkeypatch.setenv("TESTBASE_API_KEY", "k-testbase")
    config = ACPClient().config
    assert (config.api_key, config.runtime_token) == ("k-testbase", None)


def test_base_url_order_in_runtime_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """The argument, ACP_BASE_URL, COMPUTER_AGENTS_BASE_URL, COMPUTER_AGENTS_API_URL,
    COMPUTER_AGENTS_PLATFORM_API_URL, TESTBASE_PLATFORM_API_URL, the runtime JSON's
    platform.apiBaseUrl (COMPUTER_AGENTS_ then TESTBASE_), then the default host."""

    def base_url(**kwargs: str) -> str:
        return str(ACPClient(runtime_token="rt", **kwargs).config.base_url)

    assert base_url() == "https://api.computer-agents.com/v1"
    steps = [
        ("TESTBASE_RUNTIME_JSON_B64", runtime_json("https://json-testbase.test"), "json-testbase"),
        ("COMPUTER_AGENTS_RUNTIME_JSON_B64", runtime_json("https://json-ca.test"), "json-ca"),
        ("TESTBASE_PLATFORM_API_URL", "https://tb-platform.test", "tb-platform"),
        ("COMPUTER_AGENTS_PLATFORM_API_URL", "https://ca-platform.test", "ca-platform"),
        ("COMPUTER_AGENTS_API_URL", "https://ca-api.test", "ca-api"),
        ("COMPUTER_AGENTS_BASE_URL", "https://ca-base.test", "ca-base"),
        ("ACP_BASE_URL", "https://acp.test", "acp"),
    ]
    for name, value, host in steps:
        monkeypatch.setenv(name, value)
        assert base_url() == f"https://{host}.test/v1", name
    assert base_url(base_url="https://arg.test/prefix/") == "https://arg.test/prefix/v1"


def test_platform_urls_are_not_used_with_an_api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """With an API key, neither the platform URL variables nor the runtime JSON's
    apiBaseUrl move the base URL; the JSON's server.id still counts."""
    monkeypatch.setenv("TESTBASE_PLATFORM_API_URL", "https://tb-platform.test")
    monkeypatch.setenv("COMPUTER_AGENTS_RUNTIME_JSON_B64", runtime_json("https://j.test", "srv-7"))
    config = ACPClient("key").config
    assert str(config.base_url) == "https://api.computer-agents.com/v1"
    assert config.server_id == "srv-7"


def test_runtime_json_from_the_testbase_name_and_other_encodings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """TESTBASE_RUNTIME_JSON_B64 is read when the COMPUTER_AGENTS_ one is unset; url-safe
    base64, missing padding and line breaks are accepted, as the platform's helpers do."""
    document = {"platform": {"apiBaseUrl": "https://x.test/~?"[:-1]}, "server": {"id": "s>?~"}}
    raw = base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")
    assert "-" in raw or "_" in raw
    monkeypatch.setenv("TESTBASE_RUNTIME_JSON_B64", raw[:10] + "\n" + raw[10:])
    config = ACPClient(runtime_token="rt").config
    assert str(config.base_url) == "https://x.test/~/v1"
    assert config.server_id == "s>?~"


SECRET_LOOKING = "c2VjcmV0LXZhbHVlLXNob3VsZC1ub3QtbGVhaw"  # base64 of a non-JSON text

BAD_RUNTIME_JSON = [
    pytest.param("not base64 at all!!", "", id="not-base64"),
    pytest.param(SECRET_LOOKING, "", id="base64-not-json"),
    pytest.param(base64.b64encode(b"\xff\xfe{}").decode(), "", id="not-utf8"),
    pytest.param(b64json(["platform"]), "", id="a-json-list"),
    pytest.param(b64json("text"), "", id="a-json-string"),
    pytest.param(b64json({"platform": "https://x.test"}), "platform", id="platform-not-object"),
    pytest.param(b64json({"platform": {"apiBaseUrl": 5}}), "apiBaseUrl", id="url-not-string"),
    pytest.param(b64json({"server": {"id": ["a"]}}), "server.id", id="id-not-string"),
    pytest.param(b64json({"server": {"id": ".."}}), "server.id", id="id-invalid"),
    # (A bad apiBaseUrl is only an error where it is used, in runtime mode: see below.)
    pytest.param(base64.b64encode(b"[" * 100_000).decode(), "", id="deep-nesting"),
]


@pytest.mark.parametrize("name", ["COMPUTER_AGENTS_RUNTIME_JSON_B64", "TESTBASE_RUNTIME_JSON_B64"])
@pytest.mark.parametrize(("value", "names"), BAD_RUNTIME_JSON)
def test_bad_runtime_json_names_the_variable_never_the_value(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, names: str
) -> None:
    """A runtime JSON that is not base64 of a valid JSON object is a ValueError at
    construction, in runtime mode and with an API key: it names the variable (and the
    field), and neither the message nor the traceback holds the value or its text."""
    monkeypatch.setenv(name, value)
    for kwargs in ({"runtime_token": "rt"}, {"api_key": "key"}):
        with pytest.raises(ValueError, match=name) as info:
            ACPClient(**kwargs)
        assert names in str(info.value)
        printed = "".join(traceback.format_exception(info.value))
        assert value not in printed
        assert "secret-value" not in printed
        decoded = base64.b64decode(value + "==", validate=False) if value.isascii() else b""
        if len(decoded) > 4:
            assert decoded.decode("utf-8", "replace")[:40] not in printed


def test_bad_platform_url_in_the_runtime_json_counts_only_in_runtime_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """platform.apiBaseUrl that is no http(s) URL fails where it is used (runtime mode),
    naming the field and the variable, not quoting it; with an API key it is unused."""
    monkeypatch.setenv("TESTBASE_RUNTIME_JSON_B64", runtime_json("ftp://h.test/secret-path"))
    with pytest.raises(ValueError, match="apiBaseUrl of TESTBASE_RUNTIME_JSON_B64") as info:
        ACPClient(runtime_token="rt")
    assert "secret-path" not in "".join(traceback.format_exception(info.value))
    assert str(ACPClient("key").config.base_url) == "https://api.computer-agents.com/v1"


def test_server_id_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """server_id=, COMPUTER_AGENTS_SERVER_ID, TESTBASE_SERVER_ID, the runtime JSON's
    server.id: the first found is config.server_id; none is None."""
    assert ACPClient("key").config.server_id is None
    steps = [
        ("COMPUTER_AGENTS_RUNTIME_JSON_B64", runtime_json(server_id="srv-json")),
        ("TESTBASE_SERVER_ID", "srv-testbase"),
        ("COMPUTER_AGENTS_SERVER_ID", "srv-official"),
    ]
    for name, value in steps:
        monkeypatch.setenv(name, value)
        expected = "srv-json" if name.endswith("B64") else value
        assert ACPClient("key").config.server_id == expected, name
    assert ACPClient("key", server_id="srv-arg").config.server_id == "srv-arg"


@pytest.mark.parametrize(
    ("name", "value", "source"),
    [
        ("COMPUTER_AGENTS_SERVER_ID", "..", "COMPUTER_AGENTS_SERVER_ID"),
        ("TESTBASE_SERVER_ID", ".", "TESTBASE_SERVER_ID"),
        ("COMPUTER_AGENTS_RUNTIME_JSON_B64", runtime_json(server_id=".."), "server.id of"),
    ],
)
def test_invalid_server_id_names_its_source(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, source: str
) -> None:
    """An invalid default server id is a ValueError at construction naming its source."""
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=source):
        ACPClient("key")


@pytest.mark.parametrize(
    ("value", "error"), [("", ValueError), ("..", ValueError), ("a\nb", ValueError), (5, TypeError)]
)
def test_invalid_server_id_argument(value: object, error: type[Exception]) -> None:
    """server_id= is checked like any server id: a wrong type is a TypeError."""
    with pytest.raises(error, match="server_id"):
        ACPClient("key", server_id=value)  # type: ignore[arg-type]


async def test_inside_a_resource_the_environment_is_enough(
    monkeypatch: pytest.MonkeyPatch, no_backoff: None
) -> None:
    """With only the runtime token and the runtime JSON (base URL and server id) set, as
    the platform sets them, runs.list(), iter() and pages() read the resource's server;
    the token goes out under both headers and never as Authorization."""
    async with FakeACPServer(servers=["srv-here", "srv-other"], page_size=2) as fake:
        monkeypatch.setenv("TESTBASE_RUNTIME_TOKEN", fake.runtime_token)
        monkeypatch.setenv(
            "COMPUTER_AGENTS_RUNTIME_JSON_B64", runtime_json(fake.base_url, "srv-here")
        )
        async with ACPClient() as client:
            assert client.config.server_id == "srv-here"
            page = await client.runs.list()
            every = [run.id async for run in client.runs.iter()]
            pages = [len(p.data) async for p in client.runs.pages(limit=2)]
    assert [run.server_id for run in page.data] == ["srv-here"] * 2  # one page of 2
    assert every == [run["id"] for run in fake.runs("srv-here")]  # all 5, across pages
    assert pages == [2, 2, 1]
    assert {r.server_id for r in fake.requests} == {"srv-here"}
    for request in fake.requests:
        assert request.auth == "runtime"
        assert [request.headers.get(h) for h in RUNTIME_HEADERS] == [fake.runtime_token] * 2
        assert "Authorization" not in request.headers


async def test_no_server_id_anywhere_is_refused_before_any_request(
    fake: FakeACPServer, client: ACPClient
) -> None:
    """runs.list/iter/pages without an id and none configured raise ValueError naming
    COMPUTER_AGENTS_SERVER_ID, before any request; list_many, watch and wait_for still
    need their ids."""
    with pytest.raises(ValueError, match="COMPUTER_AGENTS_SERVER_ID"):
        await client.runs.list()
    with pytest.raises(ValueError, match="COMPUTER_AGENTS_SERVER_ID"):
        client.runs.iter(limit=5)
    with pytest.raises(ValueError, match="COMPUTER_AGENTS_SERVER_ID"):
        client.runs.pages()
    assert fake.requests == []


async def test_an_explicit_server_id_beats_the_default(
    fake: FakeACPServer, no_backoff: None
) -> None:
    """An id passed to the call wins over config.server_id."""
    first, second = fake.server_ids[:2]
    async with ACPClient(fake.token, base_url=fake.base_url, server_id=first) as client:
        default = await client.runs.list(limit=1)
        explicit = await client.runs.list(second, limit=1)
    assert (default.server_id, explicit.server_id) == (first, second)


def test_default_headers_cannot_carry_the_testbase_runtime_header() -> None:
    """X-Testbase-Runtime-Token is a token header too: refused in default_headers."""
    with pytest.raises(ValueError, match=r"(?i)X-Testbase-Runtime-Token"):
        ACPClient("key", default_headers={"x-testbase-runtime-token": "rt"})


async def test_runtime_token_from_testbase_stays_secret(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, no_backoff: None
) -> None:
    """A runtime token read from TESTBASE_RUNTIME_TOKEN is in no repr, error or log."""
    token = "rt-testbase-secret-42"
    caplog.set_level(logging.DEBUG, logger="acp_async")
    async with FakeACPServer() as fake:
        monkeypatch.setenv("TESTBASE_RUNTIME_TOKEN", token)
        monkeypatch.setenv("TESTBASE_PLATFORM_API_URL", fake.base_url)
        async with ACPClient() as client:
            with pytest.raises(AuthenticationError) as info:  # the fake wants another token
                await client.runs.list(fake.server_ids[0])
            text = repr(client) + repr(client.config) + repr(info.value) + str(info.value)
    assert token not in text
    assert all(token not in record.getMessage() for record in caplog.records)
