"""list_many: bounded, as-completed fan-out that isolates failures and cleans up after itself."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Iterator
from contextlib import aclosing

import pytest
from aiohttp import web

from acp_async import (
    ACPClient,
    InternalServerError,
    NotFoundError,
    ResponseValidationError,
    ServerRuns,
)
from acp_async._observe import Observer, RequestOutcome
from acp_async.testing import FakeACPServer

from .conftest import assert_no_leftovers, serve_runs, wait_until

pytestmark = pytest.mark.fleet(servers=40, runs_per_server=3, latency=0.02)


async def test_every_server_once(fleet: FakeACPServer, fleet_client: ACPClient) -> None:
    """Each server id yields exactly one ServerRuns with its runs."""
    results = [r async for r in fleet_client.runs.list_many(fleet.server_ids, limit=2)]
    assert sorted(r.server_id for r in results) == sorted(fleet.server_ids)
    for outcome in results:
        assert outcome.error is None
        assert outcome.result is not None
        assert [run.id for run in outcome.result.data] == [
            run["id"] for run in fleet.runs(outcome.server_id)[:2]
        ]


@pytest.mark.parametrize("concurrency", [1, 4, 16])
async def test_in_flight_is_bounded_at_the_server(
    fleet: FakeACPServer, fleet_client: ACPClient, concurrency: int
) -> None:
    """The server never sees more than `concurrency` requests at once, and does see that many."""
    async for _ in fleet_client.runs.list_many(fleet.server_ids, concurrency=concurrency):
        pass
    assert fleet.max_in_flight == concurrency


async def test_pool_bounds_concurrency(fleet: FakeACPServer, no_backoff: None) -> None:
    """Never more in flight than the connection pool allows."""
    async with ACPClient(fleet.token, base_url=fleet.base_url, max_connections=3) as client:
        async for _ in client.runs.list_many(fleet.server_ids, concurrency=50):
            pass
    assert fleet.max_in_flight == 3


async def test_results_arrive_as_they_complete(no_backoff: None) -> None:
    """A slow server does not hold back the fast ones."""
    async with FakeACPServer(servers=4) as fake:
        slow = fake.server_ids[0]
        fake.fail("latency", delay=0.3, server_id=slow)
        async with ACPClient(fake.token, base_url=fake.base_url) as client:
            order = [r.server_id async for r in client.runs.list_many(fake.server_ids)]
    assert order[-1] == slow
    assert sorted(order) == sorted(fake.server_ids)


async def test_one_failure_does_not_stop_the_others(
    fleet: FakeACPServer, fleet_client: ACPClient
) -> None:
    """A failing server is its own ServerRuns.error; the rest succeed."""
    bad = fleet.server_ids[5]
    fleet.fail("status", status=500, times=10, server_id=bad)
    ids = [*fleet.server_ids, "missing-server"]
    results = {r.server_id: r async for r in fleet_client.runs.list_many(ids)}
    assert isinstance(results[bad].error, InternalServerError)
    assert results[bad].result is None
    assert isinstance(results["missing-server"].error, NotFoundError)
    ok = [r for sid, r in results.items() if sid not in (bad, "missing-server")]
    assert len(ok) == 40 - 1
    assert all(r.error is None and r.result is not None for r in ok)


async def test_generator_input_is_consumed_lazily(
    fleet: FakeACPServer, fleet_client: ACPClient
) -> None:
    """Ids are taken only as slots free up: no task per server up front."""
    taken = []

    def ids() -> Iterator[str]:
        for sid in fleet.server_ids:
            taken.append(sid)
            yield sid

    stream = fleet_client.runs.list_many(ids(), concurrency=4)
    async with aclosing(stream):
        first = await anext(stream)
        assert isinstance(first, ServerRuns)
        assert len(taken) <= 5
    await assert_no_leftovers(fleet_client)


async def test_bad_id_raises_from_the_iterator(
    fleet: FakeACPServer, fleet_client: ACPClient
) -> None:
    """A bad id is checked when taken: ValueError from the iterator, nothing left running."""
    for bad in ("..", 42, None):
        ids = [fleet.server_ids[0], bad, fleet.server_ids[1]]
        with pytest.raises(ValueError, match="server"):
            async for _ in fleet_client.runs.list_many(ids):  # type: ignore[arg-type]
                pass
        await assert_no_leftovers(fleet_client)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"concurrency": 0}, ValueError),
        ({"concurrency": 2.5}, TypeError),
        ({"concurrency": True}, TypeError),
        ({"limit": 0}, ValueError),
    ],
)
async def test_bad_arguments_fail_before_any_request(
    fleet: FakeACPServer, fleet_client: ACPClient, kwargs: dict[str, object], error: type
) -> None:
    """Bad concurrency or limit is refused at call time."""
    with pytest.raises(error):
        fleet_client.runs.list_many(fleet.server_ids, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        fleet_client.runs.list_many("srv-0001")
    assert fleet.requests == []


async def test_break_cancels_in_flight_and_leaks_nothing(
    fleet: FakeACPServer, fleet_client: ACPClient
) -> None:
    """Breaking out cancels what is in flight; no task and no acquired connection remain."""
    async for _ in fleet_client.runs.list_many(fleet.server_ids, concurrency=8):
        break
    gc.collect()
    for _ in range(5):  # the abandoned generator is closed by the loop's finalizer hook
        await asyncio.sleep(0)
    await assert_no_leftovers(fleet_client)
    assert len(fleet.requests) < 40


async def test_aclose_cancels_in_flight(fleet: FakeACPServer, fleet_client: ACPClient) -> None:
    """aclose() returns only after every in-flight request is cancelled."""
    stream = fleet_client.runs.list_many(fleet.server_ids, concurrency=8)
    await anext(stream)
    await stream.aclose()
    await assert_no_leftovers(fleet_client)


async def test_cancelling_the_consumer_cleans_up(
    fleet: FakeACPServer, fleet_client: ACPClient
) -> None:
    """Cancelling the task that iterates cancels the fan-out with it."""
    # Of the first eight requests, seven hang: they are surely in flight at the cancel.
    fleet.fail("latency", delay=30.0, times=7)
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in fleet_client.runs.list_many(fleet.server_ids, concurrency=8):
            first.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(consume())
    async with asyncio.timeout(5):
        await first.wait()
    assert fleet.in_flight >= 7
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await assert_no_leftovers(fleet_client)
    await wait_until(lambda: fleet.in_flight == 0)  # the server saw every request go away
    # The client is still usable afterwards.
    assert (await fleet_client.runs.list(fleet.server_ids[0])).data


async def test_429_pauses_the_whole_fan_out(no_backoff: None) -> None:
    """One 429 with Retry-After makes every slot wait: during the cool-down only requests
    the other slots sent before the client read the 429 reach the server."""
    concurrency = 4
    async with FakeACPServer(servers=30, latency=0.01) as fake:
        fake.fail("status", status=429, retry_after="0.4", server_id=fake.server_ids[3])
        async with ACPClient(fake.token, base_url=fake.base_url) as client:
            started = time.monotonic()
            results = [
                r async for r in client.runs.list_many(fake.server_ids, concurrency=concurrency)
            ]
        assert all(r.error is None for r in results)
        assert time.monotonic() - started >= 0.4
        limited = next(r for r in fake.requests if r.status == 429)
        assert limited.finished is not None
        after = [r.started for r in fake.requests if r.started > limited.finished]
        assert after
        # At most one request per other slot, already on its way (without the shared
        # cool-down the other slots would send all 26 left in that time).
        during = [t for t in after if t - limited.finished < 0.35]
        assert len(during) < concurrency, during
        assert len(fake.requests) == 31


class _CountingRequests(Observer):
    def __init__(self) -> None:
        self.outcomes: list[str] = []

    def request_finished(self, outcome: RequestOutcome, seconds: float) -> None:
        self.outcomes.append(outcome)


@pytest.mark.parametrize("observed", [False, True])
async def test_a_bad_page_is_that_servers_error_when_built_late_or_at_once(
    no_backoff: None, observed: bool
) -> None:
    """A 2xx that is not JSON is its server's ResponseValidationError with ``.url``, page
    built as taken or, with an observer counting requests, at once (an ``invalid`` one)."""

    async def handler(request: web.Request) -> web.Response:
        if request.match_info["id"] == "broken":
            return web.Response(body=b"<html>OK</html>", content_type="text/html")
        return web.json_response({"data": [{"id": "r1", "status": "running"}]})

    counter = _CountingRequests() if observed else None
    async with serve_runs(handler) as base_url:
        async with ACPClient("k", base_url=base_url, metrics=counter) as client:
            results = {
                outcome.server_id: outcome
                async for outcome in client.runs.list_many(["ok-1", "broken", "ok-2"])
            }
    broken = results["broken"].error
    assert isinstance(broken, ResponseValidationError)
    assert "not valid JSON (text/html" in str(broken)
    assert broken.url is not None
    assert broken.url.endswith("/servers/broken/runtime/agent/runs")
    for sid in ("ok-1", "ok-2"):
        page = results[sid].result
        assert page is not None
        assert [run.id for run in page.data] == ["r1"]
    if counter is not None:
        assert sorted(counter.outcomes) == ["2xx", "2xx", "invalid"]
