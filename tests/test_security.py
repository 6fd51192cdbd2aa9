"""Security: the token stays secret and home, ids stay in their segment, sizes are capped."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import traceback
import warnings
from collections.abc import Callable

import aiohttp
import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from hypothesis import given, settings
from hypothesis import strategies as st

from acp_async import (
    ACPClient,
    ACPError,
    APIConnectionError,
    APIStatusError,
    InsecureTransportWarning,
    ResponseValidationError,
)
from acp_async.testing import FakeACPServer

from .conftest import assert_no_leftovers, serve_runs


@pytest.mark.parametrize(
    "base_url",
    [
        "http://api.example.com",
        "http://10.0.0.7:8080/acp",
        "http://[2001:db8::1]",
        "http://localhost.evil.com",
    ],
)
def test_plain_http_to_a_remote_host_warns_once(base_url: str) -> None:
    """http:// to a non-loopback host warns once, at construction, pointing at the caller."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        client = ACPClient("secret-token", base_url=base_url)
        assert client.config.base_url.scheme == "http"
    insecure = [w for w in caught if issubclass(w.category, InsecureTransportWarning)]
    assert len(insecure) == 1
    assert insecure[0].filename == __file__
    assert "secret-token" not in str(insecure[0].message)
    assert "https://" in str(insecure[0].message)


@pytest.mark.parametrize(
    "base_url",
    [
        "https://api.example.com",
        "http://127.0.0.1:8080",
        "http://127.8.9.10",
        "http://localhost:9000/acp",
        "http://api.localhost",
        "http://[::1]:8080",
    ],
)
def test_https_and_loopback_do_not_warn(base_url: str) -> None:
    """https:// anywhere, and http:// to loopback (tests, sidecars), stay quiet."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ACPClient("secret-token", base_url=base_url)


async def test_the_warning_is_not_repeated_per_request(no_backoff: None) -> None:
    """Requests made by a warned client add no further warnings."""
    seen: list[str] = []

    async def unavailable(request: web.Request) -> web.Response:
        seen.append(request.host)
        return web.Response(status=503)

    # A remote host name that this session's resolver sends to loopback: nothing leaves it.
    async with (
        serve_runs(unavailable) as url,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(resolver=_Loopback())) as session,
    ):
        remote = url.replace("127.0.0.1", "acp.remote.test")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            client = ACPClient("k", base_url=remote, session=session, max_retries=1)
            async with client:
                for _ in range(3):
                    with pytest.raises(ACPError):
                        await client.runs.list("srv")
    assert sum(issubclass(w.category, InsecureTransportWarning) for w in caught) == 1
    assert len(seen) == 6  # three calls of two attempts each, all answered on loopback
    assert {host.split(":")[0] for host in seen} == {"acp.remote.test"}


class _Loopback(AbstractResolver):
    """Resolves every host name to 127.0.0.1."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host="127.0.0.1",
                port=port,
                family=socket.AF_INET,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        return None


SECRET = "tok-SECRET-7f3a9c51e2"


async def _error_scenarios(fake: FakeACPServer, client: ACPClient) -> list[BaseException]:
    """Drive the client through every kind of failure and collect what it raised."""
    sid = fake.server_ids[0]
    other = FakeACPServer(token=SECRET)
    raised: list[BaseException] = []
    scripts: list[Callable[[], None]] = [
        lambda: fake.fail("status", status=404, server_id=sid),
        lambda: fake.fail("status", status=401, server_id=sid),
        lambda: fake.fail("status", status=503, times=3, server_id=sid),
        lambda: fake.fail("html", status=502, times=3, server_id=sid),
        lambda: fake.fail("malformed", server_id=sid),
        lambda: fake.fail("drop", times=6, server_id=sid),
        lambda: fake.fail("truncated", times=3, server_id=sid),
        lambda: fake.fail("stall", times=3, delay=5.0, server_id=sid),
        lambda: fake.fail(
            "redirect", headers={"Location": f"{other.base_url}/v1/x"}, server_id=sid
        ),
        lambda: fake.fail("status", status=200, body=b"x" * 10_000, server_id=sid),
        # Last: an hour-long 429 cools the whole client down, so later calls would all be 429s.
        lambda: fake.fail("status", status=429, retry_after="3600", server_id=sid),
    ]
    async with other:
        with pytest.raises(ACPError) as info:
            await client.runs.list("no-such-server")
        raised.append(info.value)
        for script in scripts:
            script()
            with pytest.raises(ACPError) as info:
                await client.runs.list(sid)
            raised.append(info.value)
        assert other.requests == []
    return raised


async def test_token_never_in_repr_exceptions_or_logs(
    caplog: pytest.LogCaptureFixture, no_backoff: None
) -> None:
    """repr, str and tracebacks of every error, and log records at every level, omit the token."""
    async with FakeACPServer(token=SECRET) as fake:
        client = ACPClient(
            SECRET, base_url=fake.base_url, timeout=0.2, max_retries=2, max_response_bytes=8000
        )
        async with client:
            with caplog.at_level(logging.DEBUG):  # every logger: ours, aiohttp's, asyncio's
                await client.runs.list(fake.server_ids[0])
                raised = await _error_scenarios(fake, client)
            texts = [repr(client), str(client), repr(client.config), repr(client.runs)]
    assert {type(exc).__name__ for exc in raised} >= {
        "NotFoundError",
        "AuthenticationError",
        "RateLimitError",
        "InternalServerError",
        "ResponseValidationError",
        "APIConnectionError",
        "APITimeoutError",
        "APIStatusError",
    }
    for exc in raised:
        texts += [str(exc), repr(exc), repr(exc.args), "".join(traceback.format_exception(exc))]
        texts += [repr(vars(exc))] if hasattr(exc, "__dict__") else []
    records = list(caplog.records)
    assert any(r.levelno == logging.DEBUG for r in records)
    assert any(r.levelno == logging.INFO for r in records)
    texts += [caplog.text] + [repr(r.__dict__) for r in records]
    leaks = [text for text in texts if SECRET in text]
    assert leaks == []


def _cli_has_runs_list() -> bool:
    out = subprocess.run(
        [sys.executable, "-m", "acp_async", "--help"], capture_output=True, text=True, check=False
    )
    return "runs" in out.stdout


async def test_token_never_in_cli_output(no_backoff: None) -> None:
    """`acp-async runs list` prints neither a right nor a wrong token, on success or failure."""
    if not await asyncio.to_thread(_cli_has_runs_list):
        pytest.xfail("`acp-async runs list` is not on this branch yet (it comes with the CLI)")
    wrong = "tok-WRONG-0c4b2d7e91"
    async with FakeACPServer(token=SECRET) as fake:
        outputs = {}
        for token in (SECRET, wrong):
            env = {**os.environ, "ACP_API_KEY": token, "ACP_BASE_URL": fake.base_url}
            for extra in ([], ["--json"]):
                process = await asyncio.create_subprocess_exec(
                    *[sys.executable, "-m", "acp_async", "runs", "list", fake.server_ids[0]],
                    *extra,
                    env=env,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                )
                stdout, stderr = await asyncio.wait_for(process.communicate(), 30)
                outputs[token, tuple(extra)] = (process.returncode, stdout + stderr)
    for (token, _), (_, output) in outputs.items():
        assert token.encode() not in output
        assert SECRET.encode() not in output
    assert outputs[SECRET, ()][0] == 0
    assert outputs[wrong, ()][0] == 1
    assert (
        fake.server_ids[0].encode() in outputs[SECRET, ()][1] or b"run-" in outputs[SECRET, ()][1]
    )


@pytest.mark.parametrize(
    "location",
    [
        "http://localhost:{port}/v1/servers/srv-0002/runtime/agent/runs",  # same box, new origin
        "http://127.0.0.1:{other_port}/v1/servers/srv-0002/runtime/agent/runs",
        "//127.0.0.2:{port}/v1/servers/srv-0002/runtime/agent/runs",  # scheme-relative
        "https://127.0.0.1:{port}/v1/servers/srv-0002/runtime/agent/runs",  # scheme change
        "http://127.0.0.1:{port}@127.0.0.2:{port}/v1/servers/x/runtime/agent/runs",  # userinfo
    ],
)
async def test_redirects_never_carry_the_token_to_another_origin(
    fake: FakeACPServer, client: ACPClient, location: str
) -> None:
    """Every 3xx whose target is another origin raises, and no request is made there."""
    other = FakeACPServer(token=fake.token)
    async with other:
        other_port = other.base_url.rsplit(":", 1)[1]
        port = fake.base_url.rsplit(":", 1)[1]
        fake.fail(
            "redirect", headers={"Location": location.format(port=port, other_port=other_port)}
        )
        with pytest.raises(APIStatusError, match="another origin"):
            await client.runs.list(fake.server_ids[0])
        assert other.requests == []
    assert len(fake.requests) == 1  # localhost / 127.0.0.2 would have reached the fake again


async def test_link_to_another_origin_is_not_followed(
    no_backoff: None, caplog: pytest.LogCaptureFixture
) -> None:
    """A `Link: rel=next` to another origin ends paging; nothing is sent there."""
    async with FakeACPServer(token=SECRET) as other, FakeACPServer(token=SECRET) as fake:
        port = fake.base_url.rsplit(":", 1)[1]
        sid = fake.server_ids[0]
        for target in (
            f"{other.base_url}/v1/servers/{sid}/runtime/agent/runs",
            f"http://localhost:{port}/v1/servers/{sid}/runtime/agent/runs",
        ):
            fake.fail(
                "status",
                status=200,
                body=b'{"data": []}',
                headers={"Link": f'<{target}>; rel="next"'},
            )
        async with ACPClient(SECRET, base_url=fake.base_url) as client:
            with caplog.at_level(logging.WARNING, logger="acp_async"):
                for _ in range(2):
                    pages = [page async for page in client.runs.pages(sid)]
                    assert len(pages) == 1
        assert other.requests == []
        assert len(fake.requests) == 2
    assert sum("another origin" in r.getMessage() for r in caplog.records) == 2


# Any character but C0 and DEL, which no server id may hold.
ID_CHARACTERS = st.characters(
    exclude_categories=("Cs",), exclude_characters=[*map(chr, range(0x20)), "\x7f"]
)


@settings(max_examples=300, deadline=None)
@given(st.text(ID_CHARACTERS, min_size=1, max_size=40).filter(lambda s: s not in {".", ".."}))
def test_any_server_id_is_exactly_one_path_segment(server_id: str) -> None:
    """Whatever the id (slashes, dots, %, ?, #, unicode, C1 controls), it is one segment
    that decodes back."""
    url = ACPClient("k", base_url="https://acp.test/prefix").runs._url(server_id, None)
    assert url.raw_path.startswith("/prefix/v1/servers/")
    assert url.raw_path.endswith("/runtime/agent/runs")
    assert url.raw_query_string == ""
    assert url.raw_fragment == ""
    assert url.parts[1:] == ("prefix", "v1", "servers", server_id, "runtime", "agent", "runs")


@settings(max_examples=100, deadline=None)
@given(
    st.text(max_size=10),
    st.sampled_from([*map(chr, range(0x20)), "\x7f"]),
    st.text(max_size=10),
)
def test_a_server_id_holding_a_control_character_is_refused(
    before: str, control: str, after: str
) -> None:
    """Any C0 character or DEL anywhere in an id: ValueError naming it escaped, no URL."""
    server_id = before + control + after
    runs = ACPClient("k", base_url="https://acp.test").runs
    with pytest.raises(ValueError, match="server_id") as caught:
        runs._url(server_id, None)
    assert control not in str(caught.value)


async def test_oversize_header_is_a_typed_error(fake: FakeACPServer, client: ACPClient) -> None:
    """A response header larger than aiohttp's 8 KiB line limit is a connection error."""
    fake.fail("status", status=200, times=3, headers={"X-Huge": "a" * 20_000})
    with pytest.raises(APIConnectionError):
        await client.runs.list(fake.server_ids[0])
    assert (await client.runs.list(fake.server_ids[0])).data


async def test_chunked_body_is_capped_while_streaming(no_backoff: None) -> None:
    """A body with no Content-Length is cut off at max_response_bytes, not buffered whole."""
    sent = 0

    async def endless(request: web.Request) -> web.StreamResponse:
        nonlocal sent
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        await response.write(b'{"data": [')
        with contextlib.suppress(ConnectionError):
            for _ in range(10_000):
                await response.write(b'{"id": "r"},' * 100)
                sent += 1200
        return response

    app = web.Application()
    app.router.add_get("/v1/servers/{id}/runtime/agent/runs", endless)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        async with ACPClient(
            "k", base_url=f"http://127.0.0.1:{port}", max_response_bytes=50_000
        ) as client:
            with pytest.raises(ResponseValidationError, match="max_response_bytes"):
                await client.runs.list("srv")
            await assert_no_leftovers(client)
    finally:
        await runner.cleanup()
    assert sent < 10_000 * 1200


@pytest.mark.parametrize(
    "echo",
    [
        lambda token: json.dumps({"message": f"bad token {token}"}).replace("/", "\\/"),
        lambda token: json.dumps({"message": "no", "details": [{"header": token}]}),
        lambda token: '{"message": "no", "code": "' + token.replace("+", "\\u002b") + '"}',
    ],
)
async def test_a_token_echoed_json_escaped_is_blanked_everywhere(
    echo: Callable[[str], str], no_backoff: None
) -> None:
    """A token a server echoes in any JSON spelling (`\\/`, `\\u002b`, nested in details)
    shows nowhere in the error: not in its text, message, code, details or body."""
    token = "sk-live/AbC+123"

    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=401, text=echo(token), content_type="application/json")

    async with serve_runs(handler) as base, ACPClient(token, base_url=base) as client:
        with pytest.raises(APIStatusError) as info:
            await client.runs.list("srv-1")
    error = info.value
    seen = " ".join(map(str, (error, repr(error), error.message, error.code, error.details)))
    assert token not in seen
    assert token not in json.loads((error.body or "{}").replace("\\/", "/")).__repr__()


async def test_an_unreadable_error_page_keeps_its_status(no_backoff: None) -> None:
    """A proxy's 503 page that says gzip but is not: still a 503, retried as one."""
    calls = []

    async def handler(request: web.Request) -> web.Response:
        calls.append(request)
        if len(calls) == 1:
            return web.Response(
                status=503, body=b"<html>busy</html>", headers={"Content-Encoding": "gzip"}
            )
        return web.json_response({"data": []})

    async with serve_runs(handler) as base, ACPClient("tok", base_url=base) as client:
        page = await client.runs.list("srv-1")
    assert page.data == ()
    assert len(calls) == 2
