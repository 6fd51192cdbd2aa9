"""The fleet's store on a real redis-server of its own: its scripts are the package's .lua
files, loaded once per Redis (EVALSHA, SCRIPT LOAD on NOSCRIPT), one EVALSHA a round trip;
a borrowed client is never closed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("redis")

import redis.asyncio as aioredis

from acp_async.fleet._store import SCRIPTS, Keys, RedisStore, Trip

from .redis_server import RedisServer, running


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server for this test alone: its command counts are this test's."""
    with running(RedisServer(tmp_path)) as server:
        yield server


@pytest.fixture
async def raw(own_redis: RedisServer) -> AsyncIterator[aioredis.Redis]:
    """A client of the test's own, as an operator's redis-cli."""
    client = aioredis.Redis.from_url(own_redis.url)
    try:
        yield client
    finally:
        await client.aclose()


async def _calls(raw: aioredis.Redis) -> dict[str, int]:
    """Successful calls per command so far (failed ones, such as a NOSCRIPT, aside)."""
    stats: dict[str, Any] = await raw.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): int(value["calls"]) - int(value.get("failed_calls", 0))
        for name, value in stats.items()
    }


def test_the_scripts_are_the_packages_lua_files() -> None:
    """Each script the store runs is a .lua file of the package, read as it is."""
    folder = resources.files("acp_async.fleet").joinpath("scripts")
    files = {item.name: item.read_text() for item in folder.iterdir()}
    assert sorted(files) == ["add.lua", "commit_and_claim.lua", "remove.lua", "status.lua"]
    assert {f"{name}.lua": text for name, text in SCRIPTS.items()} == files


async def test_scripts_load_once_and_each_round_trip_is_one_evalsha(
    own_redis: RedisServer, raw: aioredis.Redis
) -> None:
    """On a Redis that never saw them, each script is loaded once (its first EVALSHA meets
    NOSCRIPT); from then on a round trip is one EVALSHA, nothing else. After SCRIPT FLUSH
    (as after a restart) a script is loaded once again."""
    store = RedisStore(raw, "once")
    assert await store.add(["a", "b", "c"]) == 3
    before = await _calls(raw)
    for _ in range(5):
        await store.round_trip("w", Trip(claim=1), lease=30.0, max_events=100)
    await store.status(30.0)
    after = await _calls(raw)
    assert before["script|load"] == 1  # add.lua
    assert after["script|load"] == 3  # then commit_and_claim.lua and status.lua, once each
    assert after["evalsha"] - before["evalsha"] == 6  # five round trips and one status
    assert "eval" not in after
    assert "script|exists" not in after

    await raw.script_flush()
    flushed = await _calls(raw)
    reply = await store.round_trip("w", Trip(claim=1), lease=30.0, max_events=100)
    again = await _calls(raw)
    assert [claim.server_id for claim in reply.claimed] == []  # a, b, c are held
    assert again["script|load"] - flushed["script|load"] == 1
    assert again["evalsha"] - flushed["evalsha"] == 1


async def test_a_borrowed_client_stays_open(raw: aioredis.Redis) -> None:
    """close() of a store on a client it was given leaves that client working."""
    store = RedisStore(raw, "borrowed")
    await store.add(["a"])
    await store.close()
    assert await raw.zcard(Keys.of("borrowed").due) == 1


def test_every_key_of_a_fleet_shares_its_hash_tag() -> None:
    """One {name} tag for every key, so a fleet's scripts run on Redis Cluster."""
    keys = Keys.of("billing")
    names = [getattr(keys, field) for field in ("due", "claims", "seq", "state")]
    names += [keys.failing, keys.workers, keys.events]
    assert all(name.startswith("acp:{billing}:") for name in names)
    assert len(set(names)) == 7


def test_entries_autoclaim_finds_gone_are_skipped() -> None:
    """Redis 6.2's XAUTOCLAIM answers an entry deleted or trimmed while pending as nil,
    which redis-py gives as (None, None): skipped, never an entry "None" whose ack Redis
    would refuse. One trimmed with its id kept (no fields) is still an entry to ack."""
    from acp_async.fleet._store import Entry, _autoclaimed

    fields = {b"kind": b"created"}
    reply = [b"0-0", [(b"1-0", fields), (None, None), (b"2-0", None)], []]
    assert _autoclaimed(reply) == [Entry("1-0", fields), Entry("2-0", {})]


def test_classify_sorts_redis_errors_as_the_contract_lists() -> None:
    """Fatal: refused credentials, NOPERM, WRONGTYPE (also inside a script's error), a
    counter that is not an integer. Waited out: every other error from Redis or the way
    to it, redis-py's cluster exceptions that are not RedisErrors included. Not Redis's
    (None): a DataError redis-py raises for an argument of ours, and any other bug."""
    from redis import exceptions as e

    from acp_async.fleet import FleetRedisError, RedisUnavailableError
    from acp_async.fleet._classify import classify
    from acp_async.fleet._store import Keys

    keys = Keys.of("f")
    fatal = [
        e.AuthenticationError("invalid username-password pair or user is disabled."),
        e.AuthenticationError("Authentication required."),
        e.ResponseError("Protocol error: unauthenticated multibulk length"),
        e.NoPermissionError("this user has no permissions to run the 'zadd' command"),
        e.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
        e.ResponseError("Error running script (call to f_1): @user_script:9: WRONGTYPE ..."),
        e.ResponseError("value is not an integer or out of range script: 6163, on @user_script:1."),
    ]
    waited = [
        e.ConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused."),
        e.ConnectionError("Error -2 connecting to nohost:6379. Name or service not known."),
        e.TimeoutError("Timeout reading from socket"),
        e.BusyLoadingError("Redis is loading the dataset in memory"),
        e.ReadOnlyError("You can't write against a read only replica."),
        e.ClusterDownError("The cluster is down"),
        e.TryAgainError("Multiple keys request during rehashing of slot"),
        e.MovedError("3999 127.0.0.1:6381"),
        e.ClusterError("TTL exhausted."),
        e.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
        e.RedisClusterException("Redis Cluster cannot be connected."),
        e.SlotNotCoveredError("Command # 1 (EVALSHA) slot 3 is not covered"),
        e.InvalidResponse("Protocol Error: b'x'"),
        ConnectionResetError(104, "Connection reset by peer"),
    ]
    from redis.asyncio.sentinel import MasterNotFoundError

    waited.append(MasterNotFoundError("No master found for 'mymaster'"))
    for exc in fatal:
        error = classify(exc, "h:1/0", keys)
        assert type(error) is FleetRedisError, exc
        assert error.address == "h:1/0"
        assert str(error).startswith("Redis at h:1/0: "), error
    for exc in waited:
        error = classify(exc, "h:1/0", keys)
        assert type(error) is RedisUnavailableError, exc
        assert str(error).startswith("Redis at h:1/0 is unavailable: "), error
    for exc in (e.DataError("Invalid input of type: 'dict'"), KeyError("x"), ValueError("x")):
        assert classify(exc, "h:1/0", keys) is None
    # Sentinels that cannot be reached: redis-py appends each one's client repr and error.
    sentinel = "<redis.asyncio.sentinel.Sentinel<sentinels=[127.0.0.1:26379]>> - " * 8
    unreachable = MasterNotFoundError(f"No master found for 'm' : {sentinel}ConnectionError()")
    said = str(classify(unreachable, "h:1/0", keys))
    assert said == "Redis at h:1/0 is unavailable: MasterNotFoundError: No master found for 'm'"


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("redis://user:pw-Secret@127.0.0.1:6380/3", "127.0.0.1:6380/3"),
        ("rediss://:pw-Secret@redis.example:6390", "redis.example:6390/0"),
        ("unix://:pw-Secret@/run/redis.sock?db=2", "/run/redis.sock?db=2"),
    ],
)
async def test_the_address_names_redis_without_credentials(url: str, address: str) -> None:
    """`RedisStore.address` (what every warning and error names) is host:port/db, or a
    socket's path and db; never the user or password. The client retries nothing."""
    from acp_async.fleet import _connection

    store = RedisStore(_connection.from_url(url, cluster=False, timeout=1.0), "f", owned=True)
    try:
        assert store.address == address
        assert "Secret" not in store.address
        connection = store._redis.connection_pool.make_connection()
        assert connection.retry.get_retries() == 0
    finally:
        await store.close()
