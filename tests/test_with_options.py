"""``client.with_options(...)``: other options per call, one session, pool and cool-down."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from acp_async import ACPClient, InternalServerError, RateLimitError
from acp_async.testing import FakeACPServer

from .conftest import serve_runs


async def test_options_apply_to_the_derived_client_only(
    fake: FakeACPServer, no_backoff: None
) -> None:
    """max_retries=0 on the derived client gives up on a 503 the original retries past;
    default_headers are merged over the original's; the rest of the config is kept."""
    sid = fake.server_ids[0]
    async with ACPClient(
        fake.token, base_url=fake.base_url, default_headers={"X-App": "orig", "X-Keep": "1"}
    ) as client:
        quick = client.with_options(max_retries=0, timeout=3.5, default_headers={"X-App": "new"})
        assert (quick.config.max_retries, quick.config.timeout) == (0, 3.5)
        assert quick.config.base_url == client.config.base_url
        assert (client.config.max_retries, client.config.timeout) == (2, 60.0)
        fake.fail("status", status=503, times=1)
        with pytest.raises(InternalServerError):
            await quick.runs.list(sid)
        fake.fail("status", status=503, times=1)
        await client.runs.list(sid)
    headers = [request.headers for request in fake.requests]
    assert [h["X-App"] for h in headers] == ["new", "orig", "orig"]
    assert all(h["X-Keep"] == "1" for h in headers)
    assert all(h["Authorization"] == f"Bearer {fake.token}" for h in headers)


async def test_derived_before_the_first_request_shares_the_connection_pool(
    no_backoff: None,
) -> None:
    """A client derived before any request still shares the original's session: the
    second request reuses the first one's connection, whichever client sends it."""
    ports: list[int] = []

    async def runs(request: web.Request) -> web.Response:
        assert request.transport is not None
        ports.append(request.transport.get_extra_info("peername")[1])
        return web.json_response({"data": []})

    async with serve_runs(runs) as base:
        client = ACPClient("tok", base_url=base, max_connections=1)
        derived = client.with_options(timeout=5.0)
        async with client:
            await derived.runs.list("srv-1")
            await client.runs.list("srv-1")
            await derived.with_options(max_retries=1).runs.list("srv-1")
            assert derived._transport._session is client._transport._session
    assert len(ports) == 3
    assert len(set(ports)) == 1


async def test_derived_clients_share_the_pool_limit(no_backoff: None) -> None:
    """Fan-outs on the original and a derived client together never exceed the original's
    max_connections."""
    slow = FakeACPServer(servers=12, latency=0.02)
    async with slow, ACPClient(slow.token, base_url=slow.base_url, max_connections=3) as client:
        derived = client.with_options(timeout=10.0)

        async def drain(c: ACPClient) -> int:
            return len([o async for o in c.runs.list_many(slow.server_ids, concurrency=8)])

        counts = await asyncio.gather(drain(client), drain(derived))
        assert counts == [12, 12]
        assert slow.max_in_flight <= 3


async def test_a_429_cool_down_is_shared(fake: FakeACPServer, no_backoff: None) -> None:
    """A long Retry-After on the original pauses its derived clients too (even one derived
    before it): they raise RateLimitError without sending; a separate client does not."""
    sid = fake.server_ids[0]
    async with ACPClient(fake.token, base_url=fake.base_url) as client:
        early = client.with_options(max_retries=5)
        fake.fail("status", status=429, retry_after="3600", times=1)
        with pytest.raises(RateLimitError):
            await client.runs.list(sid)
        sent = len(fake.requests)
        for derived in (early, client.with_options(timeout=5.0)):
            with pytest.raises(RateLimitError, match="wait"):
                await derived.runs.list(sid)
        assert len(fake.requests) == sent
        async with ACPClient(fake.token, base_url=fake.base_url) as separate:
            await separate.runs.list(sid)
        assert len(fake.requests) == sent + 1


async def test_closing_a_derived_client_leaves_the_original_open(
    fake: FakeACPServer, no_backoff: None
) -> None:
    """close() or `async with` on a derived client closes only it; the original and its
    session go on."""
    sid = fake.server_ids[0]
    async with ACPClient(fake.token, base_url=fake.base_url) as client:
        derived = client.with_options(timeout=5.0)
        async with derived:
            await derived.runs.list(sid)
        assert derived.closed
        assert not client.closed
        session = client._transport._session
        assert session is not None
        assert not session.closed
        await client.runs.list(sid)
        with pytest.raises(RuntimeError, match="closed"):
            await derived.runs.list(sid)
        other = client.with_options(max_retries=0)
        await other.close()
        await client.runs.list(sid)


async def test_derived_clients_close_with_their_original(
    fake: FakeACPServer, no_backoff: None
) -> None:
    """Closing the original closes every client derived from it (and theirs): they report
    closed and refuse to send; deriving from a closed client is refused."""
    client = ACPClient(fake.token, base_url=fake.base_url)
    child = client.with_options(timeout=5.0)
    grandchild = child.with_options(max_retries=0)
    async with client:
        await grandchild.runs.list(fake.server_ids[0])
    assert [client.closed, child.closed, grandchild.closed] == [True, True, True]
    for each in (child, grandchild):
        with pytest.raises(RuntimeError, match="closed"):
            await each.runs.list(fake.server_ids[0])
    with pytest.raises(RuntimeError, match="closed"):
        client.with_options(timeout=1.0)


async def test_a_borrowed_session_is_shared_and_never_closed(
    fake: FakeACPServer, no_backoff: None
) -> None:
    """With session=, the derived client sends through the borrowed session too, and
    neither closing it nor the original closes that session."""
    async with aiohttp.ClientSession() as session:
        client = ACPClient(fake.token, base_url=fake.base_url, session=session)
        derived = client.with_options(max_retries=0)
        async with client:
            await derived.runs.list(fake.server_ids[0])
            await derived.close()
        assert not session.closed
        assert derived._transport._session is session


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"timeout": 0}, ValueError),
        ({"timeout": "5"}, TypeError),
        ({"max_retries": -1}, ValueError),
        ({"max_retries": 1.0}, TypeError),
        ({"default_headers": {"Authorization": "Bearer x"}}, ValueError),
        ({"default_headers": {"X-Testbase-Runtime-Token": "x"}}, ValueError),
        ({"default_headers": {"X-A": "a\r\nb"}}, ValueError),
        ({"default_headers": ["X-A"]}, TypeError),
    ],
)
def test_bad_options_are_refused_at_once(kwargs: dict[str, Any], error: type[Exception]) -> None:
    """with_options checks its options as the constructor does."""
    with pytest.raises(error):
        ACPClient("tok").with_options(**kwargs)
