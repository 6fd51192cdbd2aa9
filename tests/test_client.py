"""The send path against a real loopback server: retries, timeouts, limits, lifecycle, safety."""

from __future__ import annotations

import asyncio
import gzip
import logging
import time
import zlib

import aiohttp
import pytest
from aiohttp import web

from acp_async import (
    ACPClient,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    InternalServerError,
    NotFoundError,
    RateLimitError,
    ResponseValidationError,
)
from acp_async._observe import Observer
from acp_async.testing import FakeACPServer

from .conftest import serve_runs, settled

SERVER = "srv-0001"


def attempts(fake: FakeACPServer) -> int:
    return len(fake.requests)


async def test_list_returns_typed_runs(fake: FakeACPServer, client: ACPClient) -> None:
    """A real GET returns the seeded runs as AgentRun values, newest first."""
    runs = await client.runs.list(SERVER)
    assert [r.id for r in runs.data] == [r["id"] for r in fake.runs(SERVER)]
    assert runs.server_id == SERVER
    assert all(r.server_id == SERVER for r in runs.data)


async def test_transient_503_then_success_is_retried(
    fake: FakeACPServer, client: ACPClient
) -> None:
    """Two 503s then a 200: the call succeeds on the third attempt."""
    fake.fail("status", status=503, times=2)
    runs = await client.runs.list(SERVER)
    assert len(runs.data) == 5
    assert attempts(fake) == 3


@pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
async def test_retryable_statuses(fake: FakeACPServer, client: ACPClient, status: int) -> None:
    """Each documented retryable status is retried."""
    fake.fail("status", status=status, times=1)
    await client.runs.list(SERVER)
    assert attempts(fake) == 2


@pytest.mark.parametrize("status", [400, 401, 402, 403, 404, 413, 422])
async def test_other_4xx_are_not_retried(
    fake: FakeACPServer, client: ACPClient, status: int
) -> None:
    """A client error is raised after exactly one attempt."""
    fake.fail("status", status=status, times=3)
    with pytest.raises(APIStatusError) as info:
        await client.runs.list(SERVER)
    assert info.value.status == status
    assert attempts(fake) == 1


async def test_retries_are_capped(fake: FakeACPServer, client: ACPClient) -> None:
    """max_retries=2 means three attempts, then the last error is raised."""
    fake.fail("status", status=500, times=10)
    with pytest.raises(InternalServerError):
        await client.runs.list(SERVER)
    assert attempts(fake) == 3


async def test_zero_retries(fake: FakeACPServer, no_backoff: None) -> None:
    """max_retries=0 makes exactly one attempt."""
    fake.fail("status", status=503, times=2)
    async with ACPClient(fake.token, base_url=fake.base_url, max_retries=0) as client:
        with pytest.raises(InternalServerError):
            await client.runs.list(SERVER)
    assert attempts(fake) == 1


async def test_dropped_connection_is_retried(fake: FakeACPServer, client: ACPClient) -> None:
    """A connection closed without a response is an APIConnectionError, retried."""
    fake.fail("drop", times=1)
    assert len((await client.runs.list(SERVER)).data) == 5
    # aiohttp itself re-sends once on a reused keep-alive connection the peer closed,
    # so more drops than our attempts are needed to exhaust them.
    fake.fail("drop", times=10)
    with pytest.raises(APIConnectionError):
        await client.runs.list(SERVER)


async def test_truncated_body_is_retried(fake: FakeACPServer, client: ACPClient) -> None:
    """A body cut short by the peer is a connection error and is retried."""
    fake.fail("truncated", times=2)
    assert len((await client.runs.list(SERVER)).data) == 5
    assert attempts(fake) == 3


async def test_stalled_body_times_out_and_is_retried(fake: FakeACPServer, no_backoff: None) -> None:
    """A body that stalls past `timeout` raises APITimeoutError (a TimeoutError) per attempt."""
    fake.fail("stall", delay=5.0, times=1)
    async with ACPClient(fake.token, base_url=fake.base_url, timeout=0.2) as client:
        assert len((await client.runs.list(SERVER)).data) == 5
        fake.fail("stall", delay=5.0, times=3)
        with pytest.raises(APITimeoutError) as info:
            await client.runs.list(SERVER)
    assert isinstance(info.value, TimeoutError)
    # Each of the three attempts (max_retries=2) was cut by `timeout`, well inside its 5 s
    # stall: one that waited the stall out would have read the whole body and succeeded.
    assert [r.fault for r in (await settled(fake))[2:]] == ["stall"] * 3


async def test_malformed_body_is_not_retried(fake: FakeACPServer, client: ACPClient) -> None:
    """Invalid JSON on a 200 raises ResponseValidationError after one attempt."""
    fake.fail("malformed", times=1)
    with pytest.raises(ResponseValidationError):
        await client.runs.list(SERVER)
    assert attempts(fake) == 1


async def test_retry_after_is_honoured(fake: FakeACPServer, client: ACPClient) -> None:
    """A 429 with Retry-After: 0.3 makes the retry wait about that long."""
    fake.fail("status", status=429, retry_after="0.3", times=1)
    started = time.monotonic()
    await client.runs.list(SERVER)
    assert time.monotonic() - started >= 0.29
    assert attempts(fake) == 2


async def test_long_retry_after_raises_at_once(fake: FakeACPServer, client: ACPClient) -> None:
    """A 429 asking for more than 60 s is raised at once, and the client keeps the cool-down."""
    fake.fail("status", status=429, retry_after="120", times=1)
    with pytest.raises(RateLimitError) as info:
        await client.runs.list(SERVER)
    assert info.value.retry_after == 120.0
    assert attempts(fake) == 1
    with pytest.raises(RateLimitError):
        await client.runs.list(SERVER)  # the host asked the whole client to wait
    assert attempts(fake) == 1


class _CoolDownSeen(Observer):
    """Sets ``started`` once the client begins a 429 cool-down."""

    def __init__(self) -> None:
        self.started = asyncio.Event()

    def rate_limited(self, seconds: float) -> None:
        self.started.set()


async def test_rate_limit_pauses_every_request_of_the_client(
    fake: FakeACPServer, no_backoff: None
) -> None:
    """After a 429, other requests wait out Retry-After before they are sent."""
    fake.fail("status", status=429, retry_after="0.4", times=1, server_id=SERVER)
    seen = _CoolDownSeen()
    async with ACPClient(fake.token, base_url=fake.base_url, timeout=2.0, metrics=seen) as client:
        first = asyncio.create_task(client.runs.list(SERVER))
        async with asyncio.timeout(5):
            await seen.started.wait()  # the 429 has landed: the client is cooling down
        await client.runs.list("srv-0002")
        await first
    later = [r.started for r in fake.requests[1:]]
    assert min(later) - fake.requests[0].started >= 0.35


async def test_auth_error_is_typed(fake: FakeACPServer, no_backoff: None) -> None:
    """A wrong token is an AuthenticationError from the server's JSON body."""
    async with ACPClient("wrong-token", base_url=fake.base_url) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.runs.list(SERVER)
    assert info.value.request_id is not None
    assert "wrong-token" not in str(info.value)


async def test_unknown_server_is_not_found(client: ACPClient) -> None:
    """A server the API does not know raises NotFoundError."""
    with pytest.raises(NotFoundError):
        await client.runs.list("nope")


async def test_connection_refused_is_a_connection_error(no_backoff: None) -> None:
    """Nothing listening: APIConnectionError after the retries."""
    server = FakeACPServer()
    await server.start()
    base_url = server.base_url
    await server.close()
    async with ACPClient("k", base_url=base_url, max_retries=1) as client:
        with pytest.raises(APIConnectionError):
            await client.runs.list(SERVER)


async def test_response_size_is_capped_by_content_length(fake: FakeACPServer) -> None:
    """A Content-Length over max_response_bytes is refused before reading."""
    async with ACPClient(fake.token, base_url=fake.base_url, max_response_bytes=100) as client:
        with pytest.raises(ResponseValidationError, match="max_response_bytes"):
            await client.runs.list(SERVER)


async def test_gzip_bomb_is_capped_while_reading(no_backoff: None) -> None:
    """A small gzip body that inflates past the cap is stopped while counting bytes."""
    bomb = gzip.compress(b"[" + b"0," * 5_000_000 + b"0]")

    async def handler(request: web.Request) -> web.Response:
        return web.Response(
            body=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )

    async with serve_runs(handler) as base_url:
        async with ACPClient("k", base_url=base_url, max_response_bytes=1_000_000) as client:
            with pytest.raises(ResponseValidationError, match="max_response_bytes"):
                await client.runs.list(SERVER)
    assert len(bomb) < 1_000_000


async def test_cross_origin_redirect_is_refused(fake: FakeACPServer, client: ACPClient) -> None:
    """A 3xx to another origin raises APIStatusError and is never followed."""
    other = FakeACPServer(token=fake.token)
    async with other:
        fake.fail("redirect", headers={"Location": f"{other.base_url}/v1/servers/x"})
        with pytest.raises(APIStatusError, match="another origin") as info:
            await client.runs.list(SERVER)
        assert info.value.status == 302
        assert other.requests == []


async def test_same_origin_redirect_is_followed(fake: FakeACPServer, client: ACPClient) -> None:
    """A 3xx on the same origin is followed within the attempt."""
    target = "/v1/servers/srv-0002/runtime/agent/runs"
    fake.fail("redirect", headers={"Location": target})
    runs = await client.runs.list(SERVER)
    assert runs.server_id == "srv-0002"


async def test_base_url_with_path_prefix(no_backoff: None) -> None:
    """A base URL with a prefix reaches the API under that prefix."""
    async with FakeACPServer(prefix="/acp") as fake:
        assert fake.base_url.endswith("/acp")
        async with ACPClient(fake.token, base_url=fake.base_url + "/") as client:
            assert len((await client.runs.list(SERVER)).data) == 5


@pytest.mark.parametrize("server_id", ["a/b", "../x", "%2e%2e", "50%", "x y", "é", "a?b#c", "..."])
async def test_server_id_is_one_path_segment(
    fake: FakeACPServer, client: ACPClient, server_id: str
) -> None:
    """Slashes, dots, percent signs and the like stay inside one segment."""
    fake.add_server(server_id)
    fake.add_run(server_id, title="mine")
    runs = await client.runs.list(server_id)
    assert [r.title for r in runs.data] == ["mine"]
    assert fake.requests[-1].server_id == server_id


@pytest.mark.parametrize("server_id", ["", ".", "..", "a\nb", "\x1b[2J", "a\rb", "a\x7f"])
async def test_dot_segments_are_refused_before_any_request(
    fake: FakeACPServer, client: ACPClient, server_id: str
) -> None:
    """'', '.', '..' and ids holding a control character (C0, DEL) raise ValueError and
    nothing is sent."""
    with pytest.raises(ValueError, match="server_id"):
        await client.runs.list(server_id)
    assert fake.requests == []


async def test_owned_session_is_closed(fake: FakeACPServer) -> None:
    """The client closes the session it created; close() is idempotent."""
    client = ACPClient(fake.token, base_url=fake.base_url)
    await client.runs.list(SERVER)
    session = client._transport._session
    await client.close()
    await client.close()
    assert session is not None
    assert session.closed
    with pytest.raises(RuntimeError, match="closed"):
        await client.runs.list(SERVER)


async def test_borrowed_session_is_left_open(fake: FakeACPServer) -> None:
    """A session passed in is used and never closed by the client."""
    async with aiohttp.ClientSession() as session:
        async with ACPClient(fake.token, base_url=fake.base_url, session=session) as client:
            await client.runs.list(SERVER)
        assert not session.closed
        assert fake.requests[-1].headers["Authorization"] == f"Bearer {fake.token}"


async def test_unused_client_needs_no_close() -> None:
    """A client that never sent a request holds no session (nothing to leak)."""
    client = ACPClient("k")
    assert client._transport._session is None
    await client.close()


async def test_logging_has_request_line_but_never_the_token(
    fake: FakeACPServer, client: ACPClient, caplog: pytest.LogCaptureFixture
) -> None:
    """DEBUG has the request line, status, attempt and request id; INFO the retries; no token."""
    fake.fail("status", status=503, times=1)
    with caplog.at_level(logging.DEBUG, logger="acp_async"):
        await client.runs.list(SERVER)
    messages = [r.getMessage() for r in caplog.records if r.name == "acp_async"]
    assert any("GET http" in m and "-> 200" in m and "attempt 2" in m for m in messages)
    assert any("request id req-" in m for m in messages)
    retries = [r for r in caplog.records if r.levelno == logging.INFO]
    assert retries
    assert "retrying GET" in retries[0].getMessage()
    text = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert fake.token not in text


async def test_token_stays_out_of_logs_and_causes_with_a_strict_borrowed_session(
    fake: FakeACPServer, no_backoff: None, caplog: pytest.LogCaptureFixture
) -> None:
    """A borrowed raise_for_status session neither changes error mapping nor leaks the token."""
    fake.fail("status", status=404, times=1)
    async with aiohttp.ClientSession(raise_for_status=True) as session:
        async with ACPClient(fake.token, base_url=fake.base_url, session=session) as client:
            with caplog.at_level(logging.DEBUG, logger="acp_async"):
                with pytest.raises(NotFoundError) as info:
                    await client.runs.list(SERVER)
    assert len(fake.requests) == 1
    chain = [info.value, info.value.__cause__, info.value.__context__]
    assert all(fake.token not in repr(e) for e in chain)
    assert fake.token not in caplog.text


async def test_malformed_http_does_not_leak_the_token(
    no_backoff: None, caplog: pytest.LogCaptureFixture
) -> None:
    """An unparsable HTTP answer is an APIConnectionError whose text and logs lack the token."""

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: nonsense\r\n\r\n{}")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with ACPClient("sk-secret", base_url=f"http://127.0.0.1:{port}") as client:
            with caplog.at_level(logging.DEBUG, logger="acp_async"):
                with pytest.raises(APIConnectionError) as info:
                    await client.runs.list(SERVER)
    finally:
        server.close()
        await server.wait_closed()
    assert info.value.__cause__ is None
    assert info.value.__context__ is None
    assert "sk-secret" not in str(info.value)
    assert "sk-secret" not in caplog.text


async def test_error_statuses_are_logged_at_debug(
    fake: FakeACPServer, client: ACPClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A 4xx answer gets its DEBUG line too: status, attempt and request id."""
    with caplog.at_level(logging.DEBUG, logger="acp_async"), pytest.raises(NotFoundError):
        await client.runs.list("nope")
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG]
    assert "-> 404 (attempt 1" in line
    assert "request id req-" in line


async def test_redirect_hops_share_the_attempt_timeout(
    fake: FakeACPServer, no_backoff: None
) -> None:
    """Same-origin redirects do not each get a fresh timeout: the attempt is bounded as a whole."""
    target = f"/v1/servers/{SERVER}/runtime/agent/runs"
    fake.fail("redirect", delay=0.15, times=5, headers={"Location": target})
    async with ACPClient(fake.token, base_url=fake.base_url, timeout=0.4, max_retries=0) as client:
        with pytest.raises(APITimeoutError):
            await client.runs.list(SERVER)
    # With a fresh timeout per hop, all five hops (0.15 s each) and the final 200 would have
    # gone through: the client gave up before it ever asked for that answer.
    records = await settled(fake)
    assert len(records) < 6
    assert all(r.fault == "redirect" for r in records)


@pytest.mark.parametrize(
    "location", ["http://[::1", "mailto:x@y", "http://h:99999/x", "http://xn--xn--/x"]
)
async def test_unusable_location_is_a_status_error(
    fake: FakeACPServer, client: ACPClient, location: str
) -> None:
    """A redirect yarl cannot parse is an APIStatusError, not a bare ValueError."""
    fake.fail("redirect", headers={"Location": location})
    with pytest.raises(APIStatusError, match="usable Location"):
        await client.runs.list(SERVER)


async def test_explicit_default_port_is_the_same_origin(no_backoff: None) -> None:
    """`http://host:80` and `http://host` are one origin for redirects and links."""
    from yarl import URL

    from acp_async._response import same_origin

    assert same_origin(URL("https://h:443/a"), URL("https://h/v1"))
    assert not same_origin(URL("https://h:8443/a"), URL("https://h/v1"))
    assert not same_origin(URL("http://h/a"), URL("https://h/v1"))


async def test_bogus_retry_after_cannot_disable_the_client(
    fake: FakeACPServer, client: ACPClient
) -> None:
    """A 429 asking for a trillion seconds pauses the client for at most 15 minutes."""
    fake.fail("status", status=429, retry_after="1000000000000")
    with pytest.raises(RateLimitError):
        await client.runs.list(SERVER)
    with pytest.raises(RateLimitError) as info:
        await client.runs.list(SERVER)
    assert info.value.retry_after is not None
    assert info.value.retry_after <= 900


async def test_gzip_body_is_inflated(no_backoff: None) -> None:
    """A gzip-encoded JSON body is read like a plain one."""
    body = gzip.compress(b'{"data": [{"id": "z"}]}')

    async def handler(request: web.Request) -> web.Response:
        assert request.headers["Accept-Encoding"] == "gzip, deflate"
        return web.Response(
            body=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )

    async with serve_runs(handler) as base_url, ACPClient("k", base_url=base_url) as client:
        assert [r.id for r in (await client.runs.list(SERVER)).data] == ["z"]


async def test_chunked_gzip_body_is_inflated_as_it_streams(no_backoff: None) -> None:
    """A gzip body without Content-Length is inflated chunk by chunk, under the cap."""
    body = gzip.compress(
        b'{"data": [' + b",".join(b'{"id": "r%d"}' % i for i in range(500)) + b"]}"
    )

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(
            headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(body), 97):
            await response.write(body[start : start + 97])
        await response.write_eof()
        return response

    async with serve_runs(handler) as base_url:
        async with ACPClient("k", base_url=base_url) as client:
            assert len((await client.runs.list(SERVER)).data) == 500
        async with ACPClient("k", base_url=base_url, max_response_bytes=1_000) as client:
            with pytest.raises(ResponseValidationError, match="decompressed"):
                await client.runs.list(SERVER)


async def test_large_gzip_bomb_is_refused_without_retrying(no_backoff: None) -> None:
    """A 200 MB bomb stops at the cap as ResponseValidationError, after one request."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"\0" * (1 << 20)
    bomb = b"".join(packer.compress(block) for _ in range(200)) + packer.flush()
    requests = 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal requests
        requests += 1
        return web.Response(
            body=bomb, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
        )

    async with serve_runs(handler) as base_url:
        async with ACPClient("k", base_url=base_url, max_response_bytes=1 << 20) as client:
            with pytest.raises(ResponseValidationError, match="decompressed"):
                await client.runs.list(SERVER)
    assert requests == 1


@pytest.mark.parametrize(("encoding", "body"), [("br", b"xx"), ("gzip", b"not gzip at all")])
async def test_bad_or_unknown_encoding_is_a_validation_error(
    no_backoff: None, encoding: str, body: bytes
) -> None:
    """An encoding we cannot inflate, or a corrupt one, is ResponseValidationError."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Encoding": encoding})

    async with serve_runs(handler) as base_url, ACPClient("k", base_url=base_url) as client:
        with pytest.raises(ResponseValidationError):
            await client.runs.list(SERVER)


async def test_token_echoed_by_the_server_is_blanked(
    fake: FakeACPServer, client: ACPClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A proxy that echoes the Authorization header leaks nothing into errors or logs."""
    echo = f'{{"message": "got Bearer {fake.token}", "details": ["{fake.token}"]}}'
    fake.fail("status", status=503, times=3, body=echo.encode())
    with caplog.at_level(logging.DEBUG, logger="acp_async"):
        with pytest.raises(InternalServerError) as info:
            await client.runs.list(SERVER)
    exc = info.value
    assert exc.message == "got Bearer ***"
    assert exc.details == ["***"]
    for text in (str(exc), repr(exc), exc.body or "", caplog.text):
        assert fake.token not in text


@pytest.mark.parametrize(
    "base_url",
    ["http://user:pw@127.0.0.1:1", "http://[::1", "http://xn--xn--/", "http://h:99999"],
)
def test_unusable_base_urls_fail_at_construction(base_url: str) -> None:
    """Credentials in the URL, or a URL yarl cannot use, are a ValueError naming base_url."""
    with pytest.raises(ValueError, match="base_url") as info:
        ACPClient("k", base_url=base_url)
    assert "pw" not in str(info.value)


def _deflate(data: bytes, wbits: int) -> bytes:
    packer = zlib.compressobj(6, zlib.DEFLATED, wbits)
    return packer.compress(data) + packer.flush()


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", gzip.compress(b'{"data": [{"id": "a"}') + gzip.compress(b', {"id": "b"}]}')),
        ("deflate", _deflate(b'{"data": [{"id": "a"}, {"id": "b"}]}', zlib.MAX_WBITS)),
        ("deflate", _deflate(b'{"data": [{"id": "a"}, {"id": "b"}]}', -zlib.MAX_WBITS)),
    ],
    ids=["gzip-two-members", "zlib-deflate", "raw-deflate"],
)
async def test_every_common_compressed_form_is_read(
    no_backoff: None, encoding: str, body: bytes
) -> None:
    """Multi-member gzip, zlib-wrapped and raw deflate all inflate to the whole body."""

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Encoding": encoding})

    async with serve_runs(handler) as base_url, ACPClient("k", base_url=base_url) as client:
        assert [r.id for r in (await client.runs.list(SERVER)).data] == ["a", "b"]


async def test_gzip_body_that_ends_early_says_so(no_backoff: None) -> None:
    """A compressed body cut short is reported as such, not as bad JSON."""
    body = gzip.compress(b'{"data": []}' + b" " * 5000)[:-12]

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Encoding": "gzip"})

    async with serve_runs(handler) as base_url, ACPClient("k", base_url=base_url) as client:
        with pytest.raises(ResponseValidationError, match="ends early"):
            await client.runs.list(SERVER)
