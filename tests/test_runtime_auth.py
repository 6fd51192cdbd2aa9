"""Runtime authorization: code inside an ACP resource sends its runtime token instead."""

from __future__ import annotations

import logging

import pytest
from aiohttp import web

from acp_async import ACPClient, APIStatusError, AuthenticationError

from .conftest import serve_runs

TOKEN = "rt-secret-123"
HEADER = "X-Computer-Agents-Runtime-Token"


async def _runtime_only(request: web.Request) -> web.Response:
    """Answers only the runtime token, and only without a bearer token beside it."""
    if request.headers.get(HEADER) != TOKEN or "Authorization" in request.headers:
        return web.json_response({"error": "unauthorized", "message": "bad token"}, status=401)
    return web.json_response({"data": [{"id": "run-1", "status": "running"}]})


async def test_runtime_token_is_sent_in_its_own_header(no_backoff: None) -> None:
    """runtime_token= goes out as X-Computer-Agents-Runtime-Token, with no Authorization."""
    async with (
        serve_runs(_runtime_only) as base,
        ACPClient(runtime_token=TOKEN, base_url=base) as client,
    ):
        page = await client.runs.list("srv-1")
    assert [run.id for run in page.data] == ["run-1"]


async def test_runtime_token_from_the_environment_and_platform_url(
    monkeypatch: pytest.MonkeyPatch, no_backoff: None
) -> None:
    """With no API key anywhere, COMPUTER_AGENTS_RUNTIME_TOKEN and
    COMPUTER_AGENTS_PLATFORM_API_URL are enough."""
    async with serve_runs(_runtime_only) as base:
        monkeypatch.setenv("COMPUTER_AGENTS_RUNTIME_TOKEN", TOKEN)
        monkeypatch.setenv("COMPUTER_AGENTS_PLATFORM_API_URL", base)
        async with ACPClient() as client:
            assert client.config.runtime_token == TOKEN
            assert client.config.api_key is None
            assert str(client.config.base_url) == f"{base}/v1"
            page = await client.runs.list("srv-1")
    assert len(page.data) == 1


def test_api_key_in_the_environment_beats_a_runtime_token_there(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An API key found in the environment wins over a runtime token found there, and the
    platform URL is then not used."""
    monkeypatch.setenv("COMPUTER_AGENTS_RUNTIME_TOKEN", TOKEN)
    monkeypatch.setenv("COMPUTER_AGENTS_API_KEY", "key")
    monkeypatch.setenv("COMPUTER_AGENTS_PLATFORM_API_URL", "http://127.0.0.1:1")
    config = ACPClient().config
    assert (config.api_key, config.runtime_token) == ("key", None)
    assert config.headers["Authorization"] == "Bearer key"
    assert HEADER not in config.headers
    assert str(config.base_url) == "https://api.computer-agents.com/v1"


def test_explicit_runtime_token_beats_an_api_key_in_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An explicit argument beats any environment variable."""
    monkeypatch.setenv("ACP_API_KEY", "key")
    config = ACPClient(runtime_token=TOKEN).config
    assert (config.api_key, config.runtime_token) == (None, TOKEN)
    assert "Authorization" not in config.headers
    assert config.headers[HEADER] == TOKEN


def test_api_key_and_runtime_token_together_are_refused() -> None:
    """Two credentials at once is a ValueError at construction."""
    with pytest.raises(ValueError, match="not both"):
        ACPClient("key", runtime_token=TOKEN)


def test_missing_credentials_name_the_runtime_token_too() -> None:
    """The error for no credential names the runtime token ways as well."""
    with pytest.raises(ValueError, match="COMPUTER_AGENTS_RUNTIME_TOKEN"):
        ACPClient()


async def test_runtime_token_stays_secret(
    caplog: pytest.LogCaptureFixture, no_backoff: None
) -> None:
    """The runtime token is in no repr, no error and no log record, even when echoed."""

    async def echo(request: web.Request) -> web.Response:
        return web.json_response({"message": f"token {request.headers.get(HEADER)}"}, status=401)

    caplog.set_level(logging.DEBUG, logger="acp_async")
    async with serve_runs(echo) as base, ACPClient(runtime_token=TOKEN, base_url=base) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.runs.list("srv-1")
        assert TOKEN not in repr(client) + repr(client.config)
    assert TOKEN not in str(info.value) + repr(info.value) + (info.value.body or "")
    assert all(TOKEN not in record.getMessage() for record in caplog.records)


async def test_runtime_token_is_not_sent_to_another_origin(no_backoff: None) -> None:
    """A redirect to another origin is refused before the token could travel there."""
    seen: list[str | None] = []
    target: list[str] = []

    async def elsewhere(request: web.Request) -> web.Response:
        seen.append(request.headers.get(HEADER))
        return web.json_response({"data": []})

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(target[0] + str(request.rel_url))

    async with serve_runs(elsewhere) as other, serve_runs(redirect) as base:
        target.append(other.replace("127.0.0.1", "localhost"))  # another origin, same host
        async with ACPClient(runtime_token=TOKEN, base_url=base) as client:
            with pytest.raises(APIStatusError, match="another origin"):
                await client.runs.list("srv-1")
    assert seen == []
