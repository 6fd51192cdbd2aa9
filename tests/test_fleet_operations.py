"""What an operator sees of a fleet: a worker's log lines (run as the CLI), the failing
servers with their last errors (``failing()``, ``fleet list``), and a fleet written by the
previous release, all on a real redis-server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from acp_async import ACPClient
from acp_async._watch._state import ServerState
from acp_async.fleet import RedisFleet
from acp_async.fleet._store import Commit, RedisStore, Trip
from acp_async.testing import FakeACPServer

from .cli_processes import Logged, logged
from .conftest import wait_until
from .redis_server import RedisServer, running
from .test_cli import cli_env, run

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) \S")
INTERVAL = "0.05"
LEASE = "10"  # long: a poll slowed by a busy machine is never cut (a timeout, not a 404)


@contextlib.asynccontextmanager
async def worker(
    redis_url: str, fleet: str, fake: FakeACPServer, log: Path, *flags: str
) -> AsyncIterator[Logged]:
    """A worker as users start one, the Redis URL in ACP_REDIS_URL; killed if still alive."""
    async with logged(
        "fleet", "worker",
        "--fleet", fleet, "--interval", INTERVAL, "--lease", LEASE, "--concurrency", "4",
        *flags,
        log=log, env=cli_env(fake, ACP_REDIS_URL=redis_url),
    ) as proc:  # fmt: skip
        yield Logged(proc, log)


class NoPersistence(RedisServer):
    """A redis-server that writes nothing to disk: neither AOF nor RDB save points."""

    def _args(self) -> list[str]:
        args = super()._args()
        args[args.index("--appendonly") + 1] = "no"
        return args


@pytest.fixture(scope="module")
def volatile_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NoPersistence]:
    with running(NoPersistence(tmp_path_factory.mktemp("volatile-redis"))) as server:
        yield server


# -- a worker's log lines ---------------------------------------------------------------


async def test_a_worker_logs_its_start_transitions_and_stop(
    redis_server: RedisServer, fleet_name: str, tmp_path: Path
) -> None:
    """At default verbosity: a start line naming the fleet, Redis (host:port/db, no
    password) and its settings; one WARNING when a server starts failing however often it
    fails, one INFO when it recovers; a stop line with counts. Every line has a time and a
    level; no warning about persistence (AOF is on) or an empty fleet."""
    async with FakeACPServer(servers=["srv-a", "srv-b"]) as fake:
        async with RedisFleet(redis_server.url, name=fleet_name) as fleet:
            await fleet.add(["srv-a", "srv-b", "srv-later"])  # srv-later: 404 until added
        async with worker(redis_server.url, fleet_name, fake, tmp_path / "w.log") as w:
            await w.shows("srv-later is failing: 404: ")
            polls = lambda: sum(r.server_id == "srv-later" for r in fake.requests)  # noqa: E731
            await wait_until(lambda: polls() >= 4, 20)  # it failed again, and again
            fake.add_server("srv-later")
            await w.shows("srv-later recovered")
            assert await w.stop() == 0
        err = w.err()
    lines = err.splitlines()
    assert all(LINE.match(line) for line in lines), err
    start = f"fleet {fleet_name} on Redis 127.0.0.1:{redis_server.port}/0, concurrency 4, "
    assert start + "interval 0.05s, lease 10s" in lines[0]
    assert " INFO " in lines[0]
    failing = [line for line in lines if "is failing" in line]
    assert len(failing) == 1, err
    assert " WARNING fleet: srv-later is failing: 404: " in failing[0]
    assert next(line for line in lines if "recovered" in line).split()[2] == "INFO"
    stop = lines[-1]
    assert " INFO fleet: worker " in stop
    counts = re.search(r"(\d+) polls \((\d+) failed\), (\d+) commits", stop)
    assert counts is not None, stop
    polled, failed, committed = (int(counts[i]) for i in (1, 2, 3))
    assert polled >= 5
    assert failed >= 3
    assert committed >= 5
    assert "persists nothing" not in err
    assert "no servers" not in err


async def test_an_outage_is_20_lines_then_one_summary(
    redis_server: RedisServer, fleet_name: str, tmp_path: Path
) -> None:
    """30 servers failing at once: 20 failing lines, then one summary with the number of
    servers failing, and nothing more within the minute."""
    ids = [f"srv-down-{i:02}" for i in range(30)]
    async with FakeACPServer(servers=1) as fake:
        async with RedisFleet(redis_server.url, name=fleet_name) as fleet:
            await fleet.add(ids)
            async with worker(redis_server.url, fleet_name, fake, tmp_path / "w.log") as w:
                await w.shows("servers failing; more than 20 servers failed or recovered")
                try:
                    async with asyncio.timeout(30):
                        while len(await fleet.failing()) < len(ids):
                            await asyncio.sleep(0.01)
                    await wait_until(lambda: polls_of(fake, ids) >= 2 * len(ids), 30)
                except TimeoutError:
                    raise AssertionError(f"not every server failed:\n{w.err()}") from None
                assert await w.stop() == 0
        err = w.err()
    assert sum(" is failing: " in line for line in err.splitlines()) == 20, err
    summaries = [line for line in err.splitlines() if "servers failing;" in line]
    assert len(summaries) == 1, err
    assert re.search(r" WARNING fleet: (2\d|30) servers failing;", summaries[0]), summaries


def polls_of(fake: FakeACPServer, ids: list[str]) -> int:
    wanted = set(ids)
    return sum(request.server_id in wanted for request in fake.requests)


async def test_quiet_shows_warnings_only(
    redis_server: RedisServer, fleet_name: str, tmp_path: Path
) -> None:
    """-q: the failing server's WARNING, but no start, recovery or stop line."""
    async with FakeACPServer(servers=["srv-a"]) as fake:
        async with RedisFleet(redis_server.url, name=fleet_name) as fleet:
            await fleet.add(["srv-a", "srv-missing"])
        async with worker(redis_server.url, fleet_name, fake, tmp_path / "w.log", "-q") as w:
            await w.shows("srv-missing is failing")
            assert await w.stop() == 0
        err = w.err()
    assert err.splitlines(), err
    assert all(" WARNING " in line for line in err.splitlines()), err


async def test_a_redis_that_persists_nothing_and_an_empty_fleet_are_warned_once(
    volatile_redis: NoPersistence, fleet_name: str, tmp_path: Path
) -> None:
    """Neither AOF nor RDB: one WARNING at start; a fleet with no servers: one too."""
    async with FakeACPServer(servers=1) as fake:
        async with worker(volatile_redis.url, fleet_name, fake, tmp_path / "w.log") as w:
            await w.shows("has no servers")
            await w.shows("persists nothing")
            assert await w.stop() == 0
        err = w.err()
    assert err.count("persists nothing") == 1
    assert f"Redis 127.0.0.1:{volatile_redis.port}/0 persists nothing" in err
    assert err.count("has no servers") == 1
    assert f"acp-async fleet add SERVER_ID... --fleet {fleet_name}" in err


async def test_no_persistence_warning_where_config_is_denied(
    volatile_redis: NoPersistence, fleet_name: str, tmp_path: Path
) -> None:
    """An ACL user without CONFIG: the check is skipped silently (the worker works on;
    its empty-fleet warning comes, the persistence one does not)."""
    user, password = f"nocfg-{fleet_name[-8:]}", "pw-secret-22c"
    admin = aioredis.Redis.from_url(volatile_redis.url)
    try:
        await admin.execute_command(
            "ACL", "SETUSER", user, "on", f">{password}", "~*", "&*", "+@all", "-config"
        )
    finally:
        await admin.aclose()
    url = f"redis://{user}:{password}@127.0.0.1:{volatile_redis.port}/0"
    async with FakeACPServer(servers=1) as fake:
        async with worker(url, fleet_name, fake, tmp_path / "w.log") as w:
            await w.shows("has no servers")
            assert await w.stop() == 0
        err = w.err()
    assert "persists nothing" not in err
    assert password not in err
    assert f"on Redis 127.0.0.1:{volatile_redis.port}/0," in err


# -- failing servers and their errors ---------------------------------------------------


async def _commit(store: RedisStore, error: str | None) -> None:
    """Claim the fleet's one server and commit a poll: failed with ``error``, or good."""
    [claim] = (await store.round_trip("w", Trip(claim=1), lease=30.0, max_events=100)).claimed
    failed = error is not None
    state = ServerState().rescheduled(quiet_polls=0, errors=int(failed)).pack()
    commit = Commit(claim, state, 0.0, failed, [], error or "")
    results, *_ = await store.round_trip("w", Trip([commit]), lease=30.0, max_events=100)
    assert results == ["ok"]


async def test_failing_keeps_the_last_error_until_the_server_recovers_or_is_removed(
    redis_server: RedisServer, fleet_name: str
) -> None:
    """The errors hash holds a failing server's last error; a good poll clears it, and so
    does removing the server."""
    async with RedisFleet(redis_server.url, name=fleet_name) as fleet:
        store = fleet._store
        assert store is not None
        await fleet.add(["srv"])
        await _commit(store, "503: first")
        await _commit(store, "503: second")
        assert await fleet.failing() == {"srv": "503: second"}
        assert (await fleet.status()).failing == 1
        await _commit(store, None)
        assert await fleet.failing() == {}
        raw = aioredis.Redis.from_url(redis_server.url)
        try:
            assert not await raw.hexists(store.keys.errors, "srv")
            await _commit(store, "404: gone")
            assert await raw.hexists(store.keys.errors, "srv")
            await fleet.remove(["srv"])
            assert not await raw.hexists(store.keys.errors, "srv")
            assert await fleet.failing() == {}
        finally:
            await raw.aclose()


async def test_failing_escapes_and_cuts_what_anything_else_wrote(
    redis_server: RedisServer, fleet_name: str
) -> None:
    """An error written by hand (or by a newer release) is still one escaped line of at
    most 200 characters; a failing server without an error has ""."""
    async with RedisFleet(redis_server.url, name=fleet_name) as fleet:
        store = fleet._store
        assert store is not None
        raw = aioredis.Redis.from_url(redis_server.url)
        try:
            await raw.sadd(store.keys.failing, "srv-a", "srv-b")
            await raw.hset(store.keys.errors, "srv-a", "line\nforged\x1b[2J" + "x" * 500)
            failing = await fleet.failing()
        finally:
            await raw.aclose()
    assert failing["srv-b"] == ""
    assert failing["srv-a"].startswith("line\\nforged\\x1b[2J")
    assert len(failing["srv-a"]) == 200


async def test_a_worker_writes_the_error_failing_lists(
    redis_server: RedisServer, fleet_name: str, no_backoff: None
) -> None:
    """A server the API answers 404 for: ``failing()`` gives the error a worker kept."""
    async with FakeACPServer(servers=["srv-a"]) as fake:
        async with (
            ACPClient(fake.token, base_url=fake.base_url) as client,
            RedisFleet(redis_server.url, name=fleet_name, interval=0.05) as fleet,
        ):
            await fleet.add(["srv-a", "srv-nope"])
            work = asyncio.create_task(fleet.work(client, concurrency=2))
            try:
                async with asyncio.timeout(20):
                    while not (failing := await fleet.failing()):
                        await asyncio.sleep(0.01)
            finally:
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await work
    assert list(failing) == ["srv-nope"]
    assert failing["srv-nope"].startswith("404: Server 'srv-nope' not found")


async def test_fleet_list_prints_servers_failing_ones_and_json(
    redis_server: RedisServer, fleet_name: str
) -> None:
    """`fleet list`: ids a line; --failing: id, tab, error; --json: one object a line, the
    error null for a healthy server."""
    async with RedisFleet(redis_server.url, name=fleet_name) as fleet:
        store = fleet._store
        assert store is not None
        await fleet.add(["srv-b"])
        await _commit(store, "503: Service\nUnavailable")
        await fleet.add(["srv-a", "srv-c"])
    url = redis_server.url
    listed = await run("fleet", "list", "--fleet", fleet_name, env=listed_env(url))
    assert (listed.code, listed.lines(), listed.err) == (0, ["srv-a", "srv-b", "srv-c"], "")
    failing = await run("fleet", "list", "--failing", "--fleet", fleet_name, env=listed_env(url))
    assert failing.lines() == ["srv-b\t503: Service\\nUnavailable"]
    as_json = await run("fleet", "list", "--json", "--fleet", fleet_name, env=listed_env(url))
    assert as_json.json() == [
        {"serverId": "srv-a", "error": None},
        {"serverId": "srv-b", "error": "503: Service\\nUnavailable"},
        {"serverId": "srv-c", "error": None},
    ]
    only = await run(
        "fleet", "list", "--failing", "--json", "--fleet", fleet_name, env=listed_env(url)
    )
    assert only.json() == [{"serverId": "srv-b", "error": "503: Service\\nUnavailable"}]


def listed_env(url: str) -> dict[str, str]:
    return cli_env(ACP_REDIS_URL=url)


async def test_fleet_status_on_an_empty_fleet_says_how_to_add_servers(
    redis_server: RedisServer, fleet_name: str
) -> None:
    """An unknown (or empty) fleet: the table of zeros, and a line saying it has no
    servers and how to add some; exit 0. --json output stays JSON."""
    env = listed_env(redis_server.url)
    result = await run("fleet", "status", "--fleet", fleet_name, env=env)
    assert result.code == 0
    assert result.out.splitlines()[0].split() == ["servers", "0"]
    assert f"the fleet '{fleet_name}' has no servers" in result.err
    assert f"acp-async fleet add SERVER_ID... --fleet {fleet_name}" in result.err
    as_json = await run("fleet", "status", "--json", "--fleet", fleet_name, env=env)
    assert as_json.json()[0]["servers"] == 0
    assert "has no servers" in as_json.err


# -- a fleet written by the previous release ---------------------------------------------


async def _write_old_fleet(url: str, name: str) -> None:
    """The keys as the previous release wrote them: a due set, claims, a counter, states
    ("token:packed"), a failing set, workers and a stream; no errors hash."""
    tag = f"acp:{{{name}}}:"
    raw = aioredis.Redis.from_url(url)
    try:
        seconds, _ = await raw.time()
        await raw.zadd(tag + "due", {"srv-old": seconds - 1, "srv-ok": seconds - 1})
        await raw.set(tag + "seq", 7)
        failing_state = ServerState(polled=True).rescheduled(quiet_polls=0, errors=3).pack()
        await raw.hset(tag + "state", "srv-old", b"6:" + failing_state)
        await raw.hset(tag + "state", "srv-ok", b"7:" + ServerState(polled=True).pack())
        await raw.sadd(tag + "failing", "srv-old")
        await raw.zadd(tag + "workers", {"gone:1:00000000": seconds - 1000})
        fields = {"key": "srv-ok/r/1.00", "kind": "created", "server": "srv-ok"}
        await raw.xadd(tag + "events", {**fields, "run": b'{"id":"r"}', "previous": ""})
    finally:
        await raw.aclose()


async def test_a_fleet_written_by_the_previous_release_keeps_working(
    redis_server: RedisServer, fleet_name: str, tmp_path: Path
) -> None:
    """No errors hash: status counts the failing server, failing() and `fleet list
    --failing` list it with an unknown error, and a worker polls it, logs its recovery
    and clears it."""
    await _write_old_fleet(redis_server.url, fleet_name)
    async with RedisFleet(redis_server.url, name=fleet_name) as fleet:
        status = await fleet.status()
        assert (status.servers, status.failing, status.stream_length) == (2, 1, 1)
        assert await fleet.failing() == {"srv-old": ""}
    env = listed_env(redis_server.url)
    listed = await run("fleet", "list", "--failing", "--fleet", fleet_name, env=env)
    assert (listed.code, listed.lines()) == (0, ["srv-old\t"])
    async with FakeACPServer(servers=["srv-old", "srv-ok"]) as fake:
        async with worker(redis_server.url, fleet_name, fake, tmp_path / "w.log") as w:
            await w.shows("fleet: srv-old recovered")
            assert await w.stop() == 0
    async with RedisFleet(redis_server.url, name=fleet_name) as fleet:
        assert await fleet.failing() == {}
        status = await fleet.status()
        assert (status.servers, status.failing) == (2, 0)
        assert status.stream_length > 1  # the worker appended srv-old's runs
    listed = await run("fleet", "list", "--json", "--fleet", fleet_name, env=env)
    assert [json.loads(line)["error"] for line in listed.lines()] == [None, None]
