"""RedisFleet on a real redis-server: claims, fenced commits, the stream, consumer groups."""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterable
from pathlib import Path

import pytest

from acp_async import ACPClient, AuthenticationError
from acp_async._observe import Observer
from acp_async.fleet import FleetEvent, RedisFleet
from acp_async.testing import FakeACPServer

from .conftest import every_deployment, settled, wait_until
from .cutting_proxy import CuttingProxy
from .redis_server import FleetRedis, RedisServer

pytestmark = pytest.mark.usefixtures("no_backoff")


@pytest.fixture
async def fleet(fleet_redis: FleetRedis, fleet_name: str) -> AsyncIterator[RedisFleet]:
    """A fleet on the session's redis-server (and on every deployment for a test marked
    ``every_deployment``)."""
    async with fleet_redis.fleet(fleet_name, interval=0.05, lease=1.0, limit=20) as opened:
        yield opened


async def collect(
    fleet: RedisFleet, count: int, *, group: str = "g", consumer: str = "c", timeout: float = 10
) -> list[FleetEvent]:
    """The next ``count`` events of ``group`` (acknowledged), bounded in time."""
    events: list[FleetEvent] = []
    stream = fleet.events(group, consumer, block=0.05)
    async with contextlib.aclosing(stream), asyncio.timeout(timeout):
        async for event in stream:
            events.append(event)
            assert await fleet.ack(group, event) == 1
            if len(events) >= count:
                break
    return events


@contextlib.asynccontextmanager
async def working(
    fleet: RedisFleet, fake: FakeACPServer, *, concurrency: int = 4, timeout: float = 30.0
) -> AsyncIterator[asyncio.Task[None]]:
    """A worker of ``fleet`` polling ``fake`` for the block (no retries: faults show)."""
    async with ACPClient(
        fake.token, base_url=fake.base_url, max_retries=0, timeout=timeout
    ) as client:
        task = asyncio.create_task(fleet.work(client, concurrency=concurrency))
        try:
            yield task
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def polled_again(
    fake: FakeACPServer, server_ids: Iterable[str], times: int, *, within: float = 10.0
) -> None:
    """Until each of ``server_ids`` has been polled ``times + 1`` more times from now.

    A worker starts a server's next poll only once the commit of its last one is back
    from Redis, so the first ``times`` of those polls are committed by then."""
    mark = len(fake.requests)
    wanted = set(server_ids)

    def done() -> bool:
        counts = Counter(r.server_id for r in fake.requests[mark:])
        return all(counts[sid] > times for sid in wanted)

    await wait_until(done, within)


@every_deployment
async def test_add_remove_and_ids(fleet: RedisFleet) -> None:
    """add is idempotent and counts the new; remove counts the removed; ids are checked first."""
    assert await fleet.add(["a", "b", "b"]) == 2
    assert await fleet.add(["b", "c"]) == 1
    assert await fleet.server_ids() == {"a", "b", "c"}
    with pytest.raises(ValueError, match="server_id"):
        await fleet.add(["d", ".."])
    for forged in ("d\nINFO forged", "d\x1b[2J", "d\x7f"):
        with pytest.raises(ValueError, match="control character"):
            await fleet.add(["d", forged])
        with pytest.raises(ValueError, match="control character"):
            await fleet.remove([forged])
    assert await fleet.server_ids() == {"a", "b", "c"}  # nothing written
    assert await fleet.remove(["a", "zzz"]) == 1
    status = await fleet.status()
    assert (status.servers, status.workers, status.failing) == (2, 0, 0)


@every_deployment
async def test_a_worker_appends_each_change_once(fleet: RedisFleet) -> None:
    """Every run is created once, progress comes as updates, unchanged runs add nothing."""
    async with FakeACPServer(servers=3, runs_per_server=4, seed=1) as fake:
        await fleet.add(fake.server_ids)
        async with working(fleet, fake):
            created = await collect(fleet, 12)
            sid = fake.server_ids[0]
            run = fake.add_run(sid, status="queued")
            [new] = await collect(fleet, 1)
            fake.set_run(sid, run["id"], status="running")
            [update] = await collect(fleet, 1)
            # Three more polls of every server, unchanged, committed: they appended nothing.
            await polled_again(fake, fake.server_ids, 3)
        status = await fleet.status()
    assert {e.kind for e in created} == {"created"}
    assert len({(e.server_id, e.run.id) for e in created}) == 12
    assert (new.kind, new.run.id, new.previous_status) == ("created", run["id"], None)
    assert (update.kind, update.run.status, update.previous_status) == (
        "updated",
        "running",
        "queued",
    )
    assert update.key.rsplit("/", 1)[1].startswith("2.")  # change 2, then its fingerprint
    assert status.stream_length == 14
    assert status.pending == {"g": 0}


@every_deployment
async def test_a_zombie_commit_is_fenced(fleet_redis: FleetRedis, fleet_name: str) -> None:
    """A claim taken over after its lease: the old holder's commit writes nothing."""
    from acp_async._watch._state import ServerState
    from acp_async.fleet._store import Commit, RedisStore, Trip

    async with fleet_redis.fleet(fleet_name, lease=0.05) as fleet:
        await fleet.add(["srv"])
        store: RedisStore = fleet._store  # type: ignore[assignment]
        [zombie] = (
            await store.round_trip("w1", Trip(claim=10), lease=0.05, max_events=100)
        ).claimed
        await asyncio.sleep(0.1)  # the lease ends
        [fresh] = (await store.round_trip("w2", Trip(claim=10), lease=30.0, max_events=100)).claimed
        event = ("srv/run/1", "created", b'{"id":"run"}', "")
        late = Commit(zombie, ServerState().pack(), 1.0, False, [event])
        on_time = Commit(fresh, ServerState().pack(), 1.0, False, [event])
        results, *_ = await store.round_trip("w1", Trip([late]), lease=1.0, max_events=100)
        assert results == ["fenced"]
        results, *_ = await store.round_trip("w2", Trip([on_time]), lease=1.0, max_events=100)
        assert results == ["ok"]
        # The same commit again, as after a lost reply: recognised, not appended twice.
        results, *_ = await store.round_trip("w2", Trip([on_time]), lease=1.0, max_events=100)
        assert results == ["done"]
        assert (await fleet.status()).stream_length == 1


async def test_status_counts_workers_by_their_own_lease(
    redis_server: RedisServer, fleet_name: str
) -> None:
    """A worker counts for two of its own leases, whatever lease the reader was given."""
    from acp_async.fleet._store import RedisStore, Trip

    async with (
        RedisFleet(redis_server.url, name=fleet_name, lease=30.0) as working_fleet,
        RedisFleet(redis_server.url, name=fleet_name, lease=0.05) as reader,
    ):
        store: RedisStore = working_fleet._store  # type: ignore[assignment]
        await store.round_trip("long-lease", Trip(claim=1), lease=30.0, max_events=100)
        await store.round_trip("short-lease", Trip(claim=1), lease=0.05, max_events=100)
        await asyncio.sleep(0.2)  # two short leases are over, two long ones are not
        assert (await reader.status()).workers == 1
        assert (await working_fleet.status()).workers == 1


async def test_a_commit_after_its_lease_is_fenced(
    redis_server: RedisServer, fleet_name: str
) -> None:
    """A worker paused past its lease cannot commit, even if nobody took the server over:
    its poll is lost (the server is due, so the next poll sees the change), not late."""
    from acp_async._watch._state import ServerState
    from acp_async.fleet._store import Commit, RedisStore, Trip

    async with RedisFleet(redis_server.url, name=fleet_name) as fleet:
        await fleet.add(["srv"])
        store: RedisStore = fleet._store  # type: ignore[assignment]
        [claim] = (await store.round_trip("w1", Trip(claim=10), lease=0.05, max_events=100)).claimed
        await asyncio.sleep(0.1)  # the lease ends; no other worker claims meanwhile
        event = ("srv/run/1", "created", b'{"id":"run"}', "")
        late = Commit(claim, ServerState().pack(), 1.0, False, [event])
        results, *_ = await store.round_trip("w1", Trip([late]), lease=1.0, max_events=100)
        assert results == ["fenced"]
        assert (await fleet.status()).stream_length == 0
        [again] = (await store.round_trip("w2", Trip(claim=10), lease=30.0, max_events=100)).claimed
        assert again.server_id == "srv"  # due at once: the lost poll is done again


async def test_a_commit_for_a_server_no_longer_due_is_fenced(
    redis_server: RedisServer, fleet_name: str
) -> None:
    """A claimed server whose due entry vanished (evicted, removed by hand) is fenced, and
    the rest of the batch is written: the script does not fail halfway."""
    from acp_async._watch._state import ServerState
    from acp_async.fleet._store import Commit, RedisStore, Trip

    async with RedisFleet(redis_server.url, name=fleet_name) as fleet:
        await fleet.add(["kept", "gone"])
        store: RedisStore = fleet._store  # type: ignore[assignment]
        claims = (await store.round_trip("w1", Trip(claim=10), lease=30.0, max_events=100)).claimed
        await store._redis.zrem(store.keys.due, "gone")
        event = ("kept/run/1", "created", b'{"id":"run"}', "")
        commits = [
            Commit(claim, ServerState().pack(), 1.0, False, [event] if i == 0 else [])
            for i, claim in enumerate(sorted(claims, key=lambda c: c.server_id != "kept"))
        ]
        results, *_ = await store.round_trip("w1", Trip(commits), lease=30.0, max_events=100)
        assert results == ["ok", "fenced"]
        assert (await fleet.status()).stream_length == 1


@every_deployment
async def test_unacked_events_go_to_another_consumer(fleet: RedisFleet) -> None:
    """Events a consumer took but never acked are claimed by another after claim_idle."""
    async with FakeACPServer(servers=1, runs_per_server=3) as fake:
        await fleet.add(fake.server_ids)
        async with working(fleet, fake):
            taken = []
            stream = fleet.events("g", "dies", block=0.05)
            async with contextlib.aclosing(stream), asyncio.timeout(10):
                async for event in stream:
                    taken.append(event)
                    if len(taken) == 3:
                        break
        assert (await fleet.status()).pending == {"g": 3}
        rescued = []
        stream = fleet.events("g", "lives", block=0.05, claim_idle=0.05)
        async with contextlib.aclosing(stream), asyncio.timeout(10):
            async for event in stream:
                rescued.append(event)
                await fleet.ack("g", event)
                if len(rescued) == 3:
                    break
    assert [e.key for e in rescued] == [e.key for e in taken]
    assert (await fleet.status()).pending == {"g": 0}


async def test_work_raises_on_a_refused_token(fleet: RedisFleet) -> None:
    """No poll can succeed without a new token: work() raises and hands its claims back."""
    async with FakeACPServer(servers=2, runs_per_server=1) as fake:
        await fleet.add(fake.server_ids)
        fake.fail("status", status=401, times=10)
        async with ACPClient(fake.token, base_url=fake.base_url, max_retries=0) as client:
            with pytest.raises(AuthenticationError):
                await asyncio.wait_for(fleet.work(client), 10)
    status = await fleet.status()
    assert status.servers == 2


@every_deployment
async def test_failing_servers_are_counted_not_streamed(fleet: RedisFleet) -> None:
    """A 404 server is counted in status().failing, listed by failing() with its error
    (the errors hash, on every deployment) and retried; the stream holds no errors."""
    async with FakeACPServer(servers=2, runs_per_server=2) as fake:
        bad, good = fake.server_ids
        fake.fail("status", status=404, times=1000, server_id=bad)
        await fleet.add([bad, good])
        async with working(fleet, fake):
            events = await collect(fleet, 2)
            async with asyncio.timeout(10):
                while (await fleet.status()).failing != 1:
                    await asyncio.sleep(0.02)
        failing = await fleet.failing()
    assert list(failing) == [bad]
    assert failing[bad].startswith("404"), failing
    assert {e.server_id for e in events} == {good}
    assert (await fleet.status()).stream_length == 2


async def test_a_poll_longer_than_the_lease_is_given_up(fleet: RedisFleet) -> None:
    """A poll that hangs is cancelled when its lease (1 s) ends, freeing its slot: with one
    slot, the hung server's next poll (and the other server's) come long before the hang's
    30 s are over."""
    async with FakeACPServer(servers=2, runs_per_server=2) as fake:
        hung, other = fake.server_ids
        fake.fail("latency", delay=30.0, times=1, server_id=hung)
        await fleet.add([hung, other])
        async with working(fleet, fake, concurrency=1, timeout=60):
            events = await collect(fleet, 4, timeout=8)
    assert {e.server_id for e in events} == {hung, other}
    assert [r.server_id for r in fake.requests].count(hung) >= 2


async def failing_servers(fleet: RedisFleet) -> set[str]:
    """The servers the fleet counts as failing (status() gives only how many)."""
    from acp_async.fleet._store import RedisStore

    store: RedisStore = fleet._store  # type: ignore[assignment]
    return {sid.decode() for sid in await store._redis.smembers(store.keys.failing)}  # type: ignore[misc]


class _Outcomes(Observer):
    """The fleet's commit results and failed polls."""

    def __init__(self) -> None:
        self.commits: list[str] = []
        self.failed_polls = 0

    def fleet_committed(self, result: str) -> None:  # type: ignore[override]
        self.commits.append(result)

    def watch_polled(self, *, ok: bool, late: float) -> None:
        self.failed_polls += not ok


@contextlib.asynccontextmanager
async def _observed(
    redis_server: RedisServer, name: str, *, servers: int, interval: float, lease: float
) -> AsyncIterator[tuple[FakeACPServer, RedisFleet, _Outcomes]]:
    """A fake with ``servers`` servers, all added to a fleet whose outcomes are recorded."""
    outcomes = _Outcomes()
    async with (
        FakeACPServer(servers=servers, runs_per_server=1) as fake,
        RedisFleet(
            redis_server.url, name=name, interval=interval, lease=lease, metrics=outcomes
        ) as fleet,
    ):
        await fleet.add(fake.server_ids)
        yield fake, fleet, outcomes


async def test_a_slow_but_healthy_server_never_counts_as_failing(
    redis_server: RedisServer, fleet_name: str
) -> None:
    """Two servers answering in 0.55 s, a 1 s lease and one slot: claims held ahead
    wait for the slot. One that waited until too little of its lease was left is handed
    back and claimed afresh, and a poll cut only because it started late is handed back
    too: over a dozen commits, no poll counts as failed and nothing is fenced. (The
    proportions of 0.22 s and 0.4 s, scaled up: a poll that starts on time has 0.35 s to
    spare, so a loop starved by a busy machine does not cut it.)"""
    observed = _observed(redis_server, fleet_name, servers=2, interval=0.1, lease=1.0)
    async with observed as (fake, fleet, outcomes):
        fake.fail("latency", delay=0.55, times=10_000)
        async with working(fleet, fake, concurrency=1, timeout=30):
            async with asyncio.timeout(40):
                while outcomes.commits.count("ok") < 12:
                    await asyncio.sleep(0.02)
        failing = (await fleet.status()).failing
    assert outcomes.failed_polls == 0
    assert "fenced" not in outcomes.commits
    assert failing == 0
    assert {r.server_id for r in fake.requests} == set(fake.server_ids)


async def test_a_hung_server_behind_slow_ones_still_counts_as_failing(
    redis_server: RedisServer, fleet_name: str
) -> None:
    """One slot, three servers answering in 0.25 s and one that hangs: the hung one is
    mostly claimed while the slot is busy, so its polls start late; a late cut is handed
    back once, the next one fails: it counts as failing and backs off."""
    observed = _observed(redis_server, fleet_name, servers=4, interval=0.1, lease=1.0)
    async with observed as (fake, fleet, outcomes):
        hung, *slow = fake.server_ids
        fake.fail("latency", delay=30.0, times=10_000, server_id=hung)
        for sid in slow:
            fake.fail("latency", delay=0.25, times=10_000, server_id=sid)
        async with working(fleet, fake, concurrency=1, timeout=60):
            await wait_until(lambda: outcomes.failed_polls >= 2, 10)
            async with asyncio.timeout(10):  # the failure's commit lands
                while not (failing := await failing_servers(fleet)):
                    await asyncio.sleep(0.02)
        answered = {r.server_id for r in await settled(fake) if r.status == 200}
    assert failing == {hung}
    assert answered == set(slow)  # the slow servers' polls answer all along


async def test_a_slow_redis_still_gets_servers_polled(
    redis_server: RedisServer, fleet_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each round trip to Redis takes 0.5 s of a 1 s lease: a claim arrives with little of
    its lease left, and is still polled (not handed back again and again)."""
    from acp_async.fleet._store import RedisStore

    script = RedisStore._script

    async def slow(self: RedisStore, *args: object) -> object:
        await asyncio.sleep(0.5)
        return await script(self, *args)  # type: ignore[arg-type]

    async with (
        FakeACPServer(servers=2, runs_per_server=1) as fake,
        RedisFleet(redis_server.url, name=fleet_name, interval=0.1, lease=1.0) as fleet,
    ):
        await fleet.add(fake.server_ids)
        monkeypatch.setattr(RedisStore, "_script", slow)
        async with working(fleet, fake, concurrency=2, timeout=30):
            events = await collect(fleet, 2, timeout=20)
        requests = await settled(fake)
    assert {e.server_id for e in events} == set(fake.server_ids)  # polled and committed
    assert {r.server_id for r in requests if r.status == 200} == set(fake.server_ids)


async def test_a_hung_server_counts_as_failing_and_starves_no_other(
    redis_server: RedisServer, fleet_name: str
) -> None:
    """A server whose polls hang is cut before its lease ends, so the timeout commits: it
    counts as failing (and backs off), and the other server, claimed with it and sorted
    after it, still gets the one slot again and again."""
    async with (
        FakeACPServer(servers=2, runs_per_server=1) as fake,
        RedisFleet(redis_server.url, name=fleet_name, interval=0.1, lease=0.5) as fleet,
    ):
        hung, other = sorted(fake.server_ids)  # equal due times: Redis hands out `hung` first
        fake.fail("latency", delay=30.0, times=1000, server_id=hung)
        await fleet.add(fake.server_ids)
        async with working(fleet, fake, concurrency=1, timeout=60):
            async with asyncio.timeout(8):
                while (await fleet.status()).failing != 1 or sum(
                    r.server_id == other for r in fake.requests
                ) < 3:
                    await asyncio.sleep(0.05)
            failing = await failing_servers(fleet)
        requests = await settled(fake)
    assert failing == {hung}
    answered = [r.server_id for r in requests if r.status == 200]
    assert answered.count(other) >= 3
    assert hung not in answered  # its polls were cut, never answered


async def test_an_unreadable_saved_state_starts_afresh(
    fleet: RedisFleet, caplog: pytest.LogCaptureFixture
) -> None:
    """A server whose saved state cannot be read does not stop the worker: its runs are
    reported again as created, under the keys they had (never updated). Both ways, each
    a failing poll logged once, after which the next poll starts afresh: a header of a
    newer format (read at the claim) and a bad run record behind a good header (read
    when the page changes)."""
    from acp_async.fleet._store import RedisStore

    async with FakeACPServer(servers=1, runs_per_server=2) as fake:
        [sid] = fake.server_ids
        await fleet.add([sid])
        async with working(fleet, fake) as task:
            first = await collect(fleet, 2)
            store: RedisStore = fleet._store  # type: ignore[assignment]
            await store._redis.hset(store.keys.state, sid, b"1:" + bytes([0x31]) + bytes(12))
            again = await collect(fleet, 2)
            token, _, blob = (await store._redis.hget(store.keys.state, sid)).partition(b":")
            bad = blob[:24] + bytes([200]) + blob[25:]  # the first run's status code
            await store._redis.hset(store.keys.state, sid, token + b":" + bad)
            fake.add_run(sid, status="completed")
            third = await collect(fleet, 3)
            assert not task.done()
    unreadable = [m for m in caplog.messages if "its saved state in Redis cannot be read" in m]
    assert len(unreadable) == 2
    assert all(m.startswith(f"fleet: {sid}: ") for m in unreadable)
    keys = sorted(e.key for e in first)
    assert sorted(e.key for e in again) == keys
    assert {e.kind for e in again} == {"created"}
    assert {e.kind for e in third} == {"created"}
    assert set(keys) < {e.key for e in third}


async def test_a_bad_run_record_behind_a_good_header_is_one_failing_poll(
    fleet_redis: FleetRedis, fleet_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A saved state whose header reads but whose run records do not (found only when a
    changed page makes the poll read them) goes the way of one unreadable at the claim:
    one WARNING on the fleet's logger naming the server, counted in
    acp_fleet_dropped_entries_total{kind="state"}, a failing poll for that server, and
    from its next poll the runs come again as created."""
    from prometheus_client import CollectorRegistry

    from acp_async.fleet._store import RedisStore
    from acp_async.metrics import PrometheusMetrics

    registry = CollectorRegistry()
    dropped = "acp_fleet_dropped_entries_total"
    options = {"interval": 0.05, "lease": 1.0, "limit": 20}
    metrics = PrometheusMetrics(registry)
    async with (
        fleet_redis.fleet(fleet_name, metrics=metrics, **options) as fleet,
        FakeACPServer(servers=1, runs_per_server=2) as fake,
    ):
        [sid] = fake.server_ids
        await fleet.add([sid])
        with caplog.at_level("INFO", logger="acp_async"):
            async with working(fleet, fake) as task:
                first = await collect(fleet, 2)
                store: RedisStore = fleet._store  # type: ignore[assignment]
                saved = await store._redis.hget(store.keys.state, sid)  # type: ignore[misc]
                token, _, blob = saved.partition(b":")
                bad = blob[:24] + bytes([200]) + blob[25:]  # the first run's status code
                await store._redis.hset(store.keys.state, sid, token + b":" + bad)  # type: ignore[misc]
                fake.add_run(sid, status="completed")  # the page changes: its runs are read
                again = await collect(fleet, 3)
                assert not task.done()
    records = [r for r in caplog.records if "saved state" in r.getMessage()]
    assert [(r.name, r.levelname) for r in records] == [("acp_async.fleet", "WARNING")]
    assert records[0].getMessage().startswith(f"fleet: {sid}: its saved state in Redis cannot")
    assert "(not a packed watch state: status code 200)" in records[0].getMessage()
    assert registry.get_sample_value(dropped, {"kind": "state"}) == 1
    assert registry.get_sample_value("acp_watch_polls_total", {"result": "error"}) == 1
    messages = [r.getMessage() for r in caplog.records]
    assert not any(f"{sid} is failing" in m for m in messages)  # said once, above
    assert f"fleet: {sid} recovered" in messages  # it was failing until its next poll
    assert {e.kind for e in again} == {"created"}
    assert {e.key for e in first} < {e.key for e in again}


async def test_a_failed_drop_of_a_bad_member_strands_no_claim(
    redis_server: RedisServer, fleet_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The connection drops as a worker removes a bad due member its round trip claimed
    (the trip's script had landed): the servers that trip claimed are polled at once,
    not held until their lease ends (the trip was retried and claimed nothing), and the
    worker goes on; the member is left for the claim after its lease."""
    import hashlib

    from redis.asyncio.client import Redis

    from acp_async.fleet._store import SCRIPTS

    remove = hashlib.sha1(SCRIPTS["remove"].encode()).hexdigest().encode()  # EVALSHA's
    bad = b"\xff\xfe"
    async with (
        CuttingProxy(redis_server.port).running() as proxy,
        FakeACPServer(servers=2, runs_per_server=1) as fake,
        RedisFleet(f"redis://127.0.0.1:{proxy.port}/0", name=fleet_name, lease=30) as fleet,
        Redis(port=redis_server.port) as raw,
    ):
        await fleet.add(fake.server_ids)
        await raw.zadd(f"acp:{{{fleet_name}}}:due", {bad: 0})
        proxy.cut_request(remove)
        with caplog.at_level("DEBUG", logger="acp_async.fleet"):
            async with working(fleet, fake) as task:
                await wait_until(lambda: len(fake.requests) >= 2, 5)
                assert not task.done()
        assert {r.server_id for r in fake.requests} == set(fake.server_ids)
        assert proxy.cuts == 1
        assert await raw.zscore(f"acp:{{{fleet_name}}}:due", bad) is not None  # left for later
    assert any("could not drop" in r.getMessage() for r in caplog.records)


async def test_a_commit_whose_reply_was_lost_counts_its_events(
    redis_server: RedisServer, fleet_name: str
) -> None:
    """The reply of a round trip carrying a commit is lost (the script ran): the trip is
    retried, the commit comes back ``done``, and its events, appended once by the first
    try, are counted (acp_watch_events_total) like those of an ``ok``."""
    from prometheus_client import CollectorRegistry

    from acp_async.metrics import PrometheusMetrics

    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    async with (
        CuttingProxy(redis_server.port).running() as proxy,
        FakeACPServer(servers=1, runs_per_server=1) as fake,
        RedisFleet(
            f"redis://127.0.0.1:{proxy.port}/0", name=fleet_name, interval=0.05, metrics=metrics
        ) as fleet,
    ):
        [sid] = fake.server_ids
        [run] = fake.runs(sid)
        await fleet.add([sid])
        proxy.cut_reply(run["id"].encode())  # only a commit's events carry the run
        created = {"kind": "created"}
        async with working(fleet, fake) as task:
            await wait_until(lambda: proxy.cuts == 1, 5)
            ok = {"result": "ok"}
            await wait_until(lambda: registry.get_sample_value("acp_fleet_commits_total", ok), 5)
            assert not task.done()
        events = await collect(fleet, 1)
        status = await fleet.status()
    assert [e.run.id for e in events] == [run["id"]]
    assert status.stream_length == 1  # appended once
    assert registry.get_sample_value("acp_watch_events_total", created) == 1


async def test_a_run_nested_300_levels_deep_does_not_kill_the_worker(
    fleet: RedisFleet, caplog: pytest.LogCaptureFixture
) -> None:
    """A run nested 300 levels deep cannot be fingerprinted (a ResponseValidationError,
    with or without orjson): the worker lives on, counts that server failing (a WARNING
    naming it, no traceback: its data, not a bug), and the other server's changes are
    still streamed. As CLI processes, with and without orjson: tests/test_poison_pill.py."""
    nested: dict[str, object] = {}
    for _ in range(300):
        nested = {"a": nested}
    async with FakeACPServer(servers=2, runs_per_server=1) as fake:
        bad, good = fake.server_ids
        fake.set_run(bad, fake.runs(bad)[0]["id"], metadata=nested)
        await fleet.add([bad, good])
        async with working(fleet, fake) as task:
            [created] = await collect(fleet, 1)
            async with asyncio.timeout(10):
                while (await fleet.status()).failing != 1:
                    await asyncio.sleep(0.02)
            fake.set_run(good, fake.runs(good)[0]["id"], title="changed")
            [updated] = await collect(fleet, 1)
            assert not task.done()
    assert (created.kind, created.server_id) == ("created", good)
    assert (updated.kind, updated.server_id, updated.run.title) == ("updated", good, "changed")
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    logged = [r for r in caplog.records if r.levelname == "WARNING" and bad in r.getMessage()]
    assert logged
    assert all("cannot be fingerprinted" in r.getMessage() and not r.exc_info for r in logged)


async def test_removed_servers_are_not_polled_again(fleet: RedisFleet) -> None:
    """After remove, the server is no longer polled: a claim taken before the removal may
    still be polled once, never a later one, while the kept server goes on."""
    async with FakeACPServer(servers=2, runs_per_server=1) as fake:
        gone, kept = fake.server_ids
        for sid in fake.server_ids:
            fake.add_run(sid, status="running")  # busy: polled every interval
        await fleet.add(fake.server_ids)
        async with working(fleet, fake):
            await collect(fleet, 4)
            assert await fleet.remove([gone]) == 1
            # The worker polls a claim as soon as it holds it (slots are free), so by the
            # kept server's third poll from now (claimed two commits after the removal),
            # a claim on `gone` taken before the removal is polled: no later one exists.
            await polled_again(fake, [kept], 2)
            fake.reset_stats()
            await polled_again(fake, [kept], 5)
            polled = {r.server_id for r in fake.requests}
    assert polled == {kept}  # six polls of `kept` since, none of `gone`


def test_bad_fleet_options_fail_at_construction() -> None:
    """Bad names and numbers raise before any connection."""
    with pytest.raises(ValueError, match="braces"):
        RedisFleet("redis://127.0.0.1:1/0", name="a{b}")
    with pytest.raises(ValueError, match="lease"):
        RedisFleet("redis://127.0.0.1:1/0", lease=0)
    with pytest.raises(TypeError):
        RedisFleet("redis://127.0.0.1:1/0", limit="5")  # type: ignore[arg-type]


def test_import_loads_neither_redis_nor_xxhash() -> None:
    """`import acp_async` (and a watch's first page digest aside) loads no optional extra."""
    import subprocess
    import sys

    code = (
        "import sys, acp_async;"
        "assert 'redis' not in sys.modules, 'redis';"
        "assert 'xxhash' not in sys.modules, 'xxhash';"
        "assert 'acp_async.fleet' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


async def append(fleet: RedisFleet, key: str, *, run: bytes | None = None) -> str:
    """One entry as the commit script writes it (``run=b"..."`` makes a malformed one)."""
    store = fleet._store
    assert store is not None
    fields = {
        "key": key,
        "kind": "created",
        "server": "srv",
        "run": run if run is not None else f'{{"id":"{key}"}}'.encode(),
        "previous": "",
    }
    entry_id = await store._redis.xadd(store.keys.events, fields)  # type: ignore[arg-type]
    return str(entry_id.decode())


async def take(fleet: RedisFleet, consumer: str, *, until: str, most: int) -> list[str]:
    """Keys read by ``consumer`` of group ``g`` (none acknowledged) up to ``until`` or
    ``most`` of them, whichever comes first; bounded in time."""
    keys: list[str] = []
    stream = fleet.events("g", consumer, block=0.05)
    async with contextlib.aclosing(stream), asyncio.timeout(10):
        async for event in stream:
            keys.append(event.key)
            if event.key == until or len(keys) >= most:
                break
    return keys


async def test_unacked_events_come_once_after_a_restart_then_new_ones(fleet: RedisFleet) -> None:
    """A restart walks the consumer's own pending events once (several read batches), then
    reads new ones: an event left unacked does not come back in a loop."""
    old = [f"old/{i}" for i in range(130)]  # more than one read batch of 100
    for key in old:
        await append(fleet, key)
    assert await take(fleet, "c", until=old[-1], most=200) == old  # none acked
    await append(fleet, "new")
    again = await take(fleet, "c", until="new", most=300)
    assert again == [*old, "new"]  # at least once across restarts; then the new one
    assert (await fleet.status()).pending == {"g": 131}


async def test_a_malformed_entry_is_set_aside_not_raised(
    fleet: RedisFleet, caplog: pytest.LogCaptureFixture
) -> None:
    """One bad entry in a batch: the others are yielded, the bad one is logged and
    acknowledged, so neither this consumer nor a restart is blocked by it."""
    await append(fleet, "good/1")
    bad = await append(fleet, "bad", run=b"{not json")
    await append(fleet, "wrong/shape", run=b'{"id": 5}')
    await append(fleet, "good/2")
    with caplog.at_level("WARNING", logger="acp_async"):
        events = []
        stream = fleet.events("g", "c", block=0.05)
        async with contextlib.aclosing(stream), asyncio.timeout(10):
            async for event in stream:
                events.append(event)
                if len(events) == 2:
                    break
    assert [e.key for e in events] == ["good/1", "good/2"]
    assert bad in caplog.text
    assert (await fleet.status()).pending == {"g": 2}  # the bad ones are acknowledged
    for event in events:
        assert await fleet.ack("g", event) == 1
    await append(fleet, "good/3")
    assert await take(fleet, "c", until="good/3", most=5) == ["good/3"]


async def test_a_swallowed_cancellation_still_ends_the_events_loop(fleet: RedisFleet) -> None:
    """A cancellation lost by an await between two events (redis-py's send loses one on
    Python 3.11) still ends the loop at the next event: `fleet events` stops on SIGTERM
    in the middle of a backlog."""
    for i in range(3):
        await append(fleet, f"e/{i}")
    seen: list[str] = []

    async def consume() -> None:
        stream = fleet.events("g", "c", block=0.05)
        async with contextlib.aclosing(stream):
            async for event in stream:
                seen.append(event.key)
                asyncio.current_task().cancel()  # type: ignore[union-attr]
                with contextlib.suppress(asyncio.CancelledError):  # swallowed
                    await asyncio.sleep(0)

    task = asyncio.create_task(consume())
    async with asyncio.timeout(10):
        await asyncio.wait([task])
    assert task.cancelled()
    assert seen == ["e/0"]


def test_the_cancellation_probe_in_docs_runs(redis_server: RedisServer) -> None:
    """docs/redis_cancel.py (docs/redis8-hang.md's reproduction) runs against a real
    redis-server and reports; on Python 3.12 and later it loses no cancellation."""
    script = Path(__file__).parents[1] / "docs" / "redis_cancel.py"
    done = subprocess.run(
        [sys.executable, str(script), "--trials", "5", redis_server.url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert re.fullmatch(r"Python \S+, redis-py \S+: [0-5] of 5 cancellations lost\n", done.stdout)
    if sys.version_info >= (3, 12):
        assert done.returncode == 0, done.stdout
    else:
        assert done.returncode in (0, 1), done.stderr


async def test_nested_async_with_shares_the_pool(
    redis_server: RedisServer, fleet_name: str
) -> None:
    """An inner ``async with fleet:`` leaves the fleet open; the outermost exit closes it."""
    fleet = RedisFleet(redis_server.url, name=fleet_name)
    async with fleet:
        async with fleet:
            assert await fleet.add(["a"]) == 1
        assert await fleet.server_ids() == {"a"}  # still open
    with pytest.raises(RuntimeError, match="async with"):
        await fleet.server_ids()
    async with fleet:  # and it opens again
        assert await fleet.remove(["a"]) == 1


async def test_ack_takes_an_event(fleet: RedisFleet) -> None:
    """A stream id or a bad group is a clear error before anything is sent."""
    with pytest.raises(TypeError, match="FleetEvent"):
        await fleet.ack("g", "1-0")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="group"):
        await fleet.ack("", "1-0")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("url", "error", "match"),
    [
        ("http://127.0.0.1:6391", ValueError, "redis://"),
        ("127.0.0.1:6379", ValueError, "redis://"),
        ("", ValueError, "empty"),
        ("redis://127.0.0.1:port/0", ValueError, "valid URL"),
        ("unix://", ValueError, "socket path"),
        (b"redis://127.0.0.1", TypeError, "a URL"),
    ],
)
def test_a_bad_redis_url_fails_at_construction(
    url: str, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        RedisFleet(url)


def test_good_redis_urls_are_accepted() -> None:
    for url in ("redis://localhost", "rediss://u:p@h:6380/2", "unix:///run/redis.sock?db=1"):
        RedisFleet(url)


def test_the_cli_refuses_a_bad_redis_url_in_one_line() -> None:
    """`fleet add --redis http://...` is a usage error (exit 2, one line), no traceback."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACP_", "COMPUTER_AGENTS_"))}
    args = ["fleet", "add", "a", "b", "--redis", "http://127.0.0.1:6391"]
    done = subprocess.run(
        [sys.executable, "-m", "acp_async", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert len(done.stderr.splitlines()) == 1
    assert "redis://" in done.stderr


async def test_cli_status_judges_overdue_by_the_given_interval(
    redis_server: RedisServer, fleet_name: str
) -> None:
    """`fleet status --interval S` uses S (the workers' interval), not always 30 s."""
    import json
    import os
    import sys

    async with RedisFleet(redis_server.url, name=fleet_name) as fleet:
        await fleet.add(["a"])  # due now, and no worker polls it
    await asyncio.sleep(0.1)  # now due more than 0.05 s ago (it only grows)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACP_", "COMPUTER_AGENTS_"))}
    overdue = []
    for extra in ((), ("--interval", "0.05")):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "acp_async", "fleet", "status", "--json",
            "--redis", redis_server.url, "--fleet", fleet_name, *extra,
            stdout=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0
        overdue.append(json.loads(out)["overdue"])
    assert overdue == [0, 1]


async def test_a_stopped_worker_hands_back_every_claim(fleet: RedisFleet) -> None:
    """Cancelled at any moment (polls finished but not yet committed included), work()
    leaves no claim behind: another worker takes those servers at once, not after a lease."""
    store = fleet._store
    assert store is not None
    async with FakeACPServer(servers=30, runs_per_server=2, seed=4) as fake:
        await fleet.add(fake.server_ids)
        async with ACPClient(fake.token, base_url=fake.base_url, max_retries=0) as client:
            for round_ in range(40):
                task = asyncio.create_task(fleet.work(client, concurrency=8))
                polled = len(fake.requests)
                async with asyncio.timeout(10):
                    while len(fake.requests) < polled + 1 + round_ % 8:
                        await asyncio.sleep(0.001)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                held = await store._redis.hlen(store.keys.claims)  # type: ignore[misc]
                assert held == 0, f"round {round_}: {held} claims left"
