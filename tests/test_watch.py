"""watch: created/updated/error events, adaptive cadence, gap closing, resume, clean exit."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager, suppress

import pytest

from acp_async import ACPClient, AuthenticationError, InternalServerError, RunEvent, WatchState
from acp_async.testing import FakeACPServer

from .conftest import assert_no_leftovers, wait_until

INTERVAL = 0.02


async def take(stream: AsyncIterator[RunEvent], count: int, timeout: float = 5.0) -> list[RunEvent]:
    """The next `count` events, bounded in time."""
    events = []
    async with asyncio.timeout(timeout):
        while len(events) < count:
            events.append(await anext(stream))
    return events


@asynccontextmanager
async def next_event(stream: AsyncIterator[RunEvent]) -> AsyncIterator[asyncio.Task[RunEvent]]:
    """The stream's next event, awaited in a task: the watch goes on polling meanwhile,
    while the test waits for a poll count. The task is cancelled at the end (which ends
    the watch)."""

    async def following() -> RunEvent:
        return await anext(stream)

    task = asyncio.create_task(following())
    try:
        yield task
    finally:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


def polls(fake: FakeACPServer) -> Counter[str | None]:
    """How many times the fake was asked for each server's runs."""
    return Counter(r.server_id for r in fake.requests)


pytestmark = [
    pytest.mark.fleet(servers=3, runs_per_server=4, seed=7),
    pytest.mark.fleet_client(max_retries=0),
]


async def test_first_poll_reports_every_run_as_created(
    fleet: FakeACPServer, fleet_client: ACPClient
) -> None:
    """Every seeded run is one `created` event, oldest first per server."""
    stream = fleet_client.runs.watch(fleet.server_ids, interval=INTERVAL, limit=10)
    async with aclosing(stream):
        events = await take(stream, 12)
    assert {e.kind for e in events} == {"created"}
    for sid in fleet.server_ids:
        ids = [e.run.id for e in events if e.server_id == sid and e.run]
        assert ids == [r["id"] for r in reversed(fleet.runs(sid))]


async def test_progress_is_reported_as_updates(
    fleet: FakeACPServer, fleet_client: ACPClient
) -> None:
    """A run that moves on is an `updated` event carrying its previous state."""
    sid = fleet.server_ids[0]
    run = fleet.add_run(sid, status="queued")
    stream = fleet_client.runs.watch([sid], interval=INTERVAL, limit=10)
    async with aclosing(stream):
        await take(stream, 5)
        fleet.set_run(sid, run["id"], status="running")
        [update] = await take(stream, 1)
        fleet.set_run(sid, run["id"], status="completed")
        [done] = await take(stream, 1)
    assert update.kind == "updated"
    assert update.run is not None
    assert update.previous is not None
    assert (update.previous.status, update.run.status) == ("queued", "running")
    assert done.run is not None
    assert done.run.is_terminal


async def test_new_runs_after_the_first_poll_are_created(
    fleet: FakeACPServer, fleet_client: ACPClient
) -> None:
    """A run added between polls is a single `created` event."""
    sid = fleet.server_ids[1]
    stream = fleet_client.runs.watch([sid], interval=INTERVAL, limit=10)
    async with aclosing(stream):
        await take(stream, 4)
        new = fleet.add_run(sid, title="fresh")
        [event] = await take(stream, 1)
    assert event.kind == "created"
    assert event.run is not None
    assert event.run.id == new["id"]


async def test_errors_surface_and_the_watch_recovers(
    fleet: FakeACPServer, fleet_client: ACPClient
) -> None:
    """A failing poll is an `error` event; after recovery known runs are not re-created."""
    sid = fleet.server_ids[0]
    stream = fleet_client.runs.watch([sid], interval=INTERVAL, limit=10)
    async with aclosing(stream):
        await take(stream, 4)
        fleet.fail("status", status=503, times=2, server_id=sid)
        errors = await take(stream, 2)
        new = fleet.add_run(sid)
        [after] = await take(stream, 1)
    assert [e.kind for e in errors] == ["error", "error"]
    assert isinstance(errors[0].error, InternalServerError)
    assert after.kind == "created"
    assert after.run is not None
    assert after.run.id == new["id"]


async def test_authentication_error_ends_the_watch(
    fleet: FakeACPServer, fleet_client: ACPClient
) -> None:
    """A 401 is raised from the watch: no poll can succeed without a new token."""
    fleet.fail("status", status=401, times=5)
    stream = fleet_client.runs.watch(fleet.server_ids, interval=INTERVAL)
    with pytest.raises(AuthenticationError):
        await take(stream, 1)
    await stream.aclose()
    await assert_no_leftovers(fleet_client)


async def test_gap_closing_catches_a_burst(fleet: FakeACPServer, fleet_client: ACPClient) -> None:
    """More new runs than one page holds: the watch re-polls with a doubled limit first."""
    sid = fleet.server_ids[2]
    stream = fleet_client.runs.watch([sid], interval=INTERVAL, limit=5)
    async with aclosing(stream):
        await take(stream, 4)
        burst = [fleet.add_run(sid)["id"] for _ in range(12)]
        fleet.reset_stats()
        events = await take(stream, 12)
    assert [e.run.id for e in events if e.run] == burst
    assert {e.kind for e in events} == {"created"}
    limits = [r.query.get("limit") for r in fleet.requests][:3]
    assert limits == ["5", "10", "20"]


async def test_resume_does_not_recreate_known_runs(
    fleet: FakeACPServer, fleet_client: ACPClient
) -> None:
    """A state saved as JSON and passed back in reports only what changed since."""
    state = WatchState()
    sid = fleet.server_ids[0]
    stream = fleet_client.runs.watch([sid], interval=INTERVAL, limit=10, state=state)
    async with aclosing(stream):
        await take(stream, 4)
    saved = json.dumps(state.to_dict())

    new = fleet.add_run(sid)
    restored = WatchState.from_dict(json.loads(saved))
    assert restored == state
    stream = fleet_client.runs.watch([sid], interval=INTERVAL, limit=10, state=restored)
    async with aclosing(stream):
        [event] = await take(stream, 1)
    assert event.kind == "created"
    assert event.run is not None
    assert event.run.id == new["id"]


async def test_quiet_servers_are_polled_less(no_backoff: None) -> None:
    """A server whose runs are all terminal backs off; a busy one keeps the interval."""
    async with FakeACPServer(servers=0) as fake:
        fake.add_server("busy")
        fake.add_run("busy", status="running")
        fake.add_server("quiet")
        fake.add_run("quiet", status="completed")
        async with ACPClient(fake.token, base_url=fake.base_url) as client:
            stream = client.runs.watch(["busy", "quiet"], interval=0.01)
            async with aclosing(stream):
                await take(stream, 2)
                async with next_event(stream) as waiting:
                    await wait_until(lambda: polls(fake)["busy"] >= 40)
                    assert not waiting.done()  # nothing changed in 40 polls: no event
        counts = polls(fake)
    assert counts["busy"] >= 2 * counts["quiet"]


async def test_break_leaves_no_tasks(fleet: FakeACPServer, fleet_client: ACPClient) -> None:
    """Leaving the watch loop leaves nothing running and no connection acquired."""
    stream = fleet_client.runs.watch(fleet.server_ids, interval=INTERVAL)
    async with aclosing(stream):
        async for _ in stream:
            break
    await assert_no_leftovers(fleet_client)


async def test_bad_ids_raise_from_the_iterator(
    fleet: FakeACPServer, fleet_client: ACPClient
) -> None:
    """An id like '..' raises ValueError when the watch takes it, before any request."""
    stream = fleet_client.runs.watch(["srv-0001", ".."], interval=INTERVAL)
    with pytest.raises(ValueError, match="server_id"):
        await anext(stream)
    assert fleet.requests == []


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"interval": 0}, ValueError),
        ({"interval": -1}, ValueError),
        ({"interval": "5"}, TypeError),
        ({"limit": 0}, ValueError),
        ({"limit": None}, TypeError),
        ({"concurrency": 0}, ValueError),
    ],
)
async def test_bad_arguments_fail_at_call_time(
    fleet_client: ACPClient, kwargs: dict[str, object], error: type
) -> None:
    """Bad interval, limit or concurrency raise when watch is called."""
    with pytest.raises(error):
        fleet_client.runs.watch(["srv-0001"], **kwargs)  # type: ignore[arg-type]


def test_state_from_bad_data_is_a_validation_error() -> None:
    """A corrupt saved state raises ResponseValidationError, not a KeyError."""
    from acp_async import ResponseValidationError

    with pytest.raises(ResponseValidationError):
        WatchState.from_dict([1, 2])
    with pytest.raises(ResponseValidationError):
        WatchState.from_dict({"srv": [{"id": 5}]})


async def test_a_slow_server_does_not_hold_back_the_others(no_backoff: None) -> None:
    """While one poll hangs on a slow server, the others keep their own interval."""
    async with FakeACPServer(servers=0) as fake:
        for sid in ("fast", "slow"):
            fake.add_server(sid)
            fake.add_run(sid, status="running")
        fake.fail("latency", delay=30.0, server_id="slow", times=10)
        async with ACPClient(fake.token, base_url=fake.base_url) as client:
            stream = client.runs.watch(["fast", "slow"], interval=0.05)
            async with aclosing(stream):
                [first] = await take(stream, 1)
                async with next_event(stream) as waiting:
                    await wait_until(lambda: polls(fake)["fast"] >= 8)
                    assert not waiting.done()  # fast has nothing new; slow has not answered
                    [hanging] = [r for r in fake.requests if r.server_id == "slow"]
                    assert hanging.finished is None  # fast's 8 polls came while it hung
    assert first.server_id == "fast"


async def test_gap_closing_refused_by_the_host_still_reports(no_backoff: None) -> None:
    """If the host refuses a larger page, the runs of the last good page are still reported."""
    async with FakeACPServer(servers=1, runs_per_server=2) as fake:
        sid = fake.server_ids[0]
        async with ACPClient(fake.token, base_url=fake.base_url, max_retries=0) as client:
            stream = client.runs.watch([sid], interval=INTERVAL, limit=400)
            async with aclosing(stream):
                await take(stream, 2)
                burst = [fake.add_run(sid)["id"] for _ in range(850)]
                events = await take(stream, 800)
        limits = [r.query.get("limit") for r in fake.requests]
    assert {e.kind for e in events} == {"created"}
    assert [e.run.id for e in events if e.run] == burst[-800:]
    assert "1600" in limits  # refused by the fake (limit <= 1000), then reported anyway


async def test_aclose_returns_with_nothing_in_flight(no_backoff: None) -> None:
    """aclose() after a yielded event cancels and awaits the polls still in flight."""
    async with FakeACPServer(servers=0) as fake:
        for sid in ("fast", "slow-1", "slow-2"):
            fake.add_server(sid)
            fake.add_run(sid)
        for sid in ("slow-1", "slow-2"):
            fake.fail("latency", delay=5.0, server_id=sid)
        async with ACPClient(fake.token, base_url=fake.base_url) as client:
            stream = client.runs.watch(["fast", "slow-1", "slow-2"], interval=INTERVAL)
            event = await anext(stream)
            assert event.server_id == "fast"
            assert fake.in_flight == 2
            await stream.aclose()
            # No turn of the loop given: aclose itself did the cleanup.
            tasks = [
                t
                for t in asyncio.all_tasks()
                if t is not asyncio.current_task()
                and not getattr(t.get_coro(), "__qualname__", "").startswith("RequestHandler.")
            ]
            assert tasks == []
            session = client._transport._session
            assert session is not None
            assert session.connector is not None
            assert not session.connector._acquired  # type: ignore[attr-defined]


async def test_polls_in_flight_are_bounded_by_concurrency(no_backoff: None) -> None:
    """The server never sees more than `concurrency` watch polls at once, and does see that many."""
    async with FakeACPServer(servers=20, runs_per_server=1, latency=0.02) as fake:
        async with ACPClient(fake.token, base_url=fake.base_url) as client:
            stream = client.runs.watch(fake.server_ids, interval=INTERVAL, concurrency=3)
            async with aclosing(stream):
                await take(stream, 20)
    assert fake.max_in_flight == 3
