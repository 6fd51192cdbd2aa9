"""The fleet on real deployments beyond one redis-server: a Redis Cluster shared by two
fleets, a Sentinel failover under CLI workers, TLS with a private CA, borrowed clients.
(The integration tests of test_fleet.py and test_fleet_processes.py run on the Cluster
and Valkey too, through the ``fleet_redis`` fixture.)"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("redis")

import redis
import redis.asyncio as aioredis
from redis.asyncio.sentinel import Sentinel

from acp_async.fleet import RedisFleet
from acp_async.fleet._store import Keys
from acp_async.testing import FakeACPServer

from .redis_server import RedisCluster, RedisSentinel, RedisServer, TLSFiles, running
from .test_cli import assert_clean_error, cli_env, run
from .test_fleet import collect, working
from .test_fleet_processes import (
    INTERVAL,
    Stream,
    check_stream,
    churn,
    wait_for_workers,
    workers,
)

pytestmark = pytest.mark.usefixtures("no_backoff")


# -- Redis Cluster ---------------------------------------------------------------------


def _names_on_two_masters(client: aioredis.RedisCluster) -> tuple[str, str]:
    """Two fleet names whose keys live on different masters of the cluster."""
    first = "side-0"
    owner = client.get_node_from_key(Keys.of(first).due)
    for i in range(1, 100):
        name = f"side-{i}"
        if client.get_node_from_key(Keys.of(name).due).name != owner.name:
            return first, name
    raise AssertionError("no two names on different masters")


async def test_two_fleets_on_different_masters_work_side_by_side(
    redis_cluster: RedisCluster,
) -> None:
    """Two fleets on one borrowed RedisCluster client, their keys on two masters (one
    slot each): each gets its own servers' events, and the client stays open."""
    redis_cluster.flush()
    client = aioredis.RedisCluster.from_url(redis_cluster.url)
    try:
        await client.initialize()
        one, two = _names_on_two_masters(client)
        async with FakeACPServer(servers=4, runs_per_server=2, seed=6) as fake:
            mine, theirs = fake.server_ids[:2], fake.server_ids[2:]
            options = {"interval": 0.05, "lease": 1.0}
            async with (
                RedisFleet(client, name=one, **options) as first,  # type: ignore[arg-type]
                RedisFleet(client, name=two, **options) as second,  # type: ignore[arg-type]
            ):
                await first.add(mine)
                await second.add(theirs)
                async with working(first, fake), working(second, fake):
                    got_first = await collect(first, 4)
                    got_second = await collect(second, 4)
                    assert (await first.status()).servers == 2
        placed = {}
        for name in (one, two):
            node = client.get_node_from_key(Keys.of(name).due)
            [server] = [n for n in redis_cluster.nodes if n.port == node.port]
            placed[name] = server
            keys = set(server.cli("KEYS", f"acp:{{{name}}}:*").split())
            assert {Keys.of(name).due, Keys.of(name).events, Keys.of(name).state} <= keys
        assert placed[one] is not placed[two]
        assert await client.ping()  # borrowed: still open after both fleets closed
    finally:
        await client.aclose()
    assert {e.server_id for e in got_first} == set(mine)
    assert {e.server_id for e in got_second} == set(theirs)


async def test_the_persistence_check_asks_the_master_of_the_fleets_slot(
    redis_cluster: RedisCluster,
) -> None:
    """On a Redis Cluster, whether Redis persists the fleet is asked of the master that
    holds the fleet's keys, not of the client's default node: that master persisting
    nothing is found while the default one persists, and the reverse."""
    from acp_async.fleet._store import RedisStore

    client = aioredis.RedisCluster.from_url(redis_cluster.url)
    try:
        await client.initialize()
        default = client.get_default_node()
        name = next(
            f"persist-{i}"
            for i in range(100)
            if client.get_node_from_key(Keys.of(f"persist-{i}").due).name != default.name
        )
        master = client.get_node_from_key(Keys.of(name).due)
        [fleets, defaults] = [
            next(n for n in redis_cluster.nodes if n.port == node.port)
            for node in (master, default)
        ]
        store = RedisStore(client, name)  # type: ignore[arg-type]
        assert await store.persists() is True  # every node: AOF on
        try:
            fleets.cli("CONFIG", "SET", "appendonly", "no")
            assert await store.persists() is False
            await _aof_on(fleets)
            defaults.cli("CONFIG", "SET", "appendonly", "no")
            assert await store.persists() is True
        finally:
            for node in (fleets, defaults):
                await _aof_on(node)
    finally:
        await client.aclose()


async def _aof_on(node: RedisServer) -> None:
    """AOF on again, once its first rewrite is written: until then the node refuses to
    shut down ("Writing initial AOF, can't exit")."""
    node.cli("CONFIG", "SET", "appendonly", "yes")
    busy = ("aof_rewrite_in_progress:1", "aof_rewrite_scheduled:1")
    async with asyncio.timeout(10):
        while any(flag in node.cli("INFO", "persistence") for flag in busy):
            await asyncio.sleep(0.02)


# -- Sentinel ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisSentinel]:
    """A master, a replica and a sentinel for this module's tests (about 5 s to start)."""
    with running(RedisSentinel(tmp_path_factory.mktemp("sentinel"))) as deployment:
        yield deployment


async def test_cli_workers_ride_out_a_sentinel_failover(
    sentinel: RedisSentinel, fleet_name: str, tmp_path: Path
) -> None:
    """Two `fleet worker --redis-sentinel HOST:PORT` processes (ACP_REDIS_MASTER); SENTINEL
    FAILOVER promotes the replica while they work. They keep running, go on on the new
    master, and its stream holds every change once (by key), as after a Redis restart."""
    rng = random.Random(5)
    host, port = sentinel.sentinel_address
    args = ["--redis-sentinel", f"{host}:{port}"]
    env = {"ACP_REDIS_MASTER": RedisSentinel.MASTER}  # an option from its variable
    async with (
        FakeACPServer(servers=8, runs_per_server=2, seed=5) as fake,
        workers(args, fleet_name, fake, tmp_path, env=env) as group,
        sentinel.master_client(socket_timeout=5.0) as client,
        RedisFleet(client, name=fleet_name, interval=INTERVAL) as fleet,
    ):
        await fleet.add(fake.server_ids)
        procs = [await group.start() for _ in range(2)]
        await wait_for_workers(fleet, 2)
        await churn(fake, rng, 20)
        before = sentinel.master_port()
        await asyncio.to_thread(sentinel.failover)  # blocks until the replica is master
        assert sentinel.master_port() != before
        await churn(fake, rng, 20)
        assert all(proc.returncode is None for proc in procs), "a worker exited"
        fake.advance(steps=2)  # every run ends: seen only by polls after the failover
        # A reader from the start of the new master's stream: commits the old master
        # took after the promotion are gone from it, and were seen again by later polls.
        stream = Stream(fleet)
        try:
            await stream.caught_up(fake, timeout=60)
            codes = await group.stop_all()
            appended = (await fleet.status()).stream_length
            await stream.until(lambda: len(stream.events) >= appended)
        finally:
            await stream.aclose()
    assert codes == [0, 0]
    check_stream(stream.events, fake)


# -- TLS with a private CA ---------------------------------------------------------------


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server that speaks TLS only, its certificate signed by a CA made now."""
    with running(RedisServer(tmp_path, tls=TLSFiles.make(tmp_path))) as server:
        yield server


async def test_the_cli_reaches_redis_over_tls_with_a_private_ca(
    tls_redis: RedisServer, fleet_name: str, tmp_path: Path
) -> None:
    """Without the CA the certificate is refused (exit 1, one line); `--redis-ca` makes
    `fleet add` work, and a worker finds URL and CA in ACP_REDIS_URL and ACP_REDIS_CA."""
    assert tls_redis.tls is not None
    ca = str(tls_redis.tls.ca)
    async with FakeACPServer(servers=2, runs_per_server=2, seed=7) as fake:
        env = cli_env(fake)
        common = ("--redis", tls_redis.url, "--fleet", fleet_name)
        refused = await run("fleet", "add", *fake.server_ids, *common, env=env)
        assert "certificate verify failed" in assert_clean_error(refused, 1)
        added = await run("fleet", "add", *fake.server_ids, *common, "--redis-ca", ca, env=env)
        assert added.code == 0, added
        tls_env = {"ACP_REDIS_URL": tls_redis.url, "ACP_REDIS_CA": ca}
        client = aioredis.Redis.from_url(tls_redis.url, ssl_ca_certs=ca)
        try:
            async with (
                workers([], fleet_name, fake, tmp_path, env=tls_env) as group,
                RedisFleet(client, name=fleet_name) as fleet,
            ):
                await group.start()
                events = await collect(fleet, 4)
                assert await group.stop_all() == [0]
        finally:
            await client.aclose()
    assert {e.server_id for e in events} == set(fake.server_ids)


async def test_the_cli_reaches_a_sentinel_deployment_over_tls(
    tmp_path: Path, fleet_name: str
) -> None:
    """`--redis-sentinel ... --redis-ca FILE`: TLS to the sentinels and to the master they
    name, each trusting the CA made at test time."""
    deployment = RedisSentinel(tmp_path, tls=TLSFiles.make(tmp_path))
    try:
        deployment.start()
        host, port = deployment.sentinel_address
        assert deployment.tls is not None
        env = cli_env(ACP_REDIS_SENTINEL=f"{host}:{port}", ACP_REDIS_MASTER=RedisSentinel.MASTER)
        common = ("--fleet", fleet_name, "--redis-ca", str(deployment.tls.ca))
        added = await run("fleet", "add", "srv-1", "srv-2", *common, env=env)
        assert added.code == 0, added
        status = await run("fleet", "status", "--json", *common, env=env)
    finally:
        deployment.stop()
    assert status.code == 0, status
    assert status.json()[0]["servers"] == 2


# -- borrowed clients and the fleet's own ------------------------------------------------


@pytest.mark.parametrize(
    ("options", "match"),
    [({"decode_responses": True}, "decode_responses"), ({"protocol": 3}, "protocol=3")],
)
async def test_a_client_that_does_not_read_resp2_bytes_is_refused(
    options: dict[str, object], match: str
) -> None:
    """The store parses RESP2 bytes: a client that decodes or speaks RESP3 is a ValueError
    at construction, before anything is sent."""
    client = aioredis.Redis(port=1, **options)  # type: ignore[arg-type]
    try:
        with pytest.raises(ValueError, match=match):
            RedisFleet(client)
    finally:
        await client.aclose()


async def test_what_redis_may_be() -> None:
    """A synchronous client, another object, or cluster=True with a plain client or a
    socket: a clear error at construction."""
    with pytest.raises(TypeError, match=r"redis\.asyncio"):
        RedisFleet(redis.Redis(port=1))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="URL"):
        RedisFleet(6379)  # type: ignore[arg-type]
    client = aioredis.Redis(port=1)
    try:
        with pytest.raises(ValueError, match="RedisCluster"):
            RedisFleet(client, cluster=True)
    finally:
        await client.aclose()
    with pytest.raises(ValueError, match="TCP"):
        RedisFleet("unix:///run/redis.sock", cluster=True)
    with pytest.raises(TypeError, match="cluster"):
        RedisFleet("redis://localhost", cluster="yes")  # type: ignore[arg-type]


async def test_a_borrowed_client_is_never_closed(
    redis_server: RedisServer, fleet_name: str
) -> None:
    """The fleet's exit leaves a borrowed client open (and its pool usable)."""
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        async with RedisFleet(client, name=fleet_name) as fleet:
            assert await fleet.add(["a"]) == 1
        assert await client.zcard(Keys.of(fleet_name).due) == 1
    finally:
        await client.aclose()


async def test_a_blocking_read_stays_shorter_than_a_borrowed_clients_socket_timeout(
    redis_server: RedisServer, fleet_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """`events(block=5)` on a client with a 0.6 s socket timeout: reads block less than
    that, so an empty stream is waited on without a timeout, and an event appended after
    the 0.6 s comes."""
    client = aioredis.Redis.from_url(redis_server.url, socket_timeout=0.6)
    caplog.set_level(logging.WARNING, logger="acp_async")
    try:
        async with RedisFleet(client, name=fleet_name) as fleet:
            stream = fleet.events("g", "c", block=5.0)
            async with contextlib.aclosing(stream):
                first = asyncio.create_task(anext(stream))
                await asyncio.sleep(1.0)  # more than the socket timeout, reading meanwhile
                store = fleet._store
                assert store is not None
                fields = {"key": "k/1", "kind": "created", "server": "srv", "run": b'{"id":"r"}'}
                await client.xadd(store.keys.events, {**fields, "previous": ""})  # type: ignore[arg-type]
                event = await asyncio.wait_for(first, 5)
    finally:
        await client.aclose()
    assert event.key == "k/1"
    assert "unavailable" not in caplog.text


async def test_clients_the_fleet_makes_have_no_redis_py_retries(
    redis_server: RedisServer, redis_cluster: RedisCluster, sentinel: RedisSentinel
) -> None:
    """A client the fleet makes (one server, a Cluster, a Sentinel master and the client
    asking its sentinels) retries nothing itself: the fleet's backoff is the only one."""
    from acp_async.fleet import _connection

    clients = [
        _connection.from_url(redis_server.url, cluster=False, timeout=30.0),
        _connection.from_url(redis_cluster.url, cluster=True, timeout=30.0),
        _connection.from_sentinels([sentinel.sentinel_address], RedisSentinel.MASTER, timeout=30.0),
    ]
    try:
        for client in clients:
            assert await client.ping()
            cluster = isinstance(client, aioredis.RedisCluster)
            retry = client.retry if cluster else client.get_retry()  # type: ignore[union-attr]
            assert retry.get_retries() == 0
        [asks] = clients[2].connection_pool.sentinel_manager.sentinels  # type: ignore[union-attr]
        assert asks.get_retry().get_retries() == 0
    finally:
        for client in clients:
            await _connection.close(client)


def test_no_secret_in_the_repr_or_the_fleets_attributes() -> None:
    """A URL's password is in neither repr(fleet) nor any attribute of the fleet."""
    fleet = RedisFleet("redis://user:s3cret@127.0.0.1:6390/2", name="billing")
    assert repr(fleet) == "RedisFleet(name='billing', redis='127.0.0.1:6390/2')"
    assert not [k for k, v in vars(fleet).items() if "s3cret" in repr(v)]


@pytest.mark.parametrize("url", ["redis://:hunter2#x@127.0.0.1:6390/0", "redis://:hunt3r/x@h:1"])
def test_a_malformed_url_is_refused_without_quoting_its_password(url: str) -> None:
    """A password holding an unescaped '#' or '/' makes urlsplit read it as the port: the
    ValueError says the URL is malformed without quoting any of it."""
    with pytest.raises(ValueError, match="port") as caught:
        RedisFleet(url)
    assert "hunt" not in str(caught.value)


async def test_the_store_says_where_redis_is_without_credentials(
    redis_cluster: RedisCluster, sentinel: RedisSentinel
) -> None:
    """RedisStore.address: host:port/db, a socket's path, the Cluster node it was given,
    a Sentinel master's name and its sentinels; never a password."""
    from acp_async.fleet._store import RedisStore

    host, port = sentinel.sentinel_address
    sentinels = Sentinel([(host, port)])  # type: ignore[no-untyped-call]
    clients = {
        "redis://:pw@127.0.0.1:6390/3": aioredis.Redis.from_url("redis://:pw@127.0.0.1:6390/3"),
        "unix:///run/r.sock?db=1": aioredis.Redis.from_url("unix:///run/r.sock?db=1"),
        "cluster": aioredis.RedisCluster.from_url(redis_cluster.url.replace("//", "//:pw@")),
        "sentinel": sentinels.master_for(RedisSentinel.MASTER, password="pw"),
    }
    node = redis_cluster.nodes[0]
    expected = {
        "redis://:pw@127.0.0.1:6390/3": "127.0.0.1:6390/3",
        "unix:///run/r.sock?db=1": "/run/r.sock?db=1",
        "cluster": f"127.0.0.1:{node.port} (cluster)",
        "sentinel": f"{RedisSentinel.MASTER}/0 (sentinel {host}:{port})",
    }
    try:
        assert {k: RedisStore(c, "f").address for k, c in clients.items()} == expected
    finally:
        for client in clients.values():
            await client.aclose()
        for own in sentinels.sentinels:
            await own.aclose()


# -- the CLI's Redis options -------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        ([], {}, "no Redis: give --redis URL"),
        (["--redis", "redis://h"], {"ACP_REDIS_SENTINEL": "h:26379"}, "not both"),
        (["--redis-sentinel", "h:26379"], {}, "needs --redis-master"),
        (["--redis-master", "m"], {"ACP_REDIS_URL": "redis://h"}, "give --redis-sentinel"),
        (["--redis-sentinel", "h:26379,h", "--redis-master", "m"], {}, "HOST:PORT"),
        (["--redis", "redis://h"], {"ACP_REDIS_CLUSTER": "maybe"}, "must be 1 or 0"),
        (["--redis", "rediss://h", "--redis-ca", "/nonexistent/ca.pem"], {}, "no such file"),
        (["--redis", "redis://h", "--redis-ca", __file__], {}, "rediss://"),
        (["--redis", "unix:///run/r.sock", "--redis-cluster"], {}, "over TCP"),
        (["--redis-sentinel", "h:1", "--redis-master", "m", "--redis-cluster"], {}, "sentinels"),
    ],
)
def test_the_clis_redis_options_are_checked_before_connecting(
    argv: list[str],
    env: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A missing, conflicting or malformed Redis option (or ACP_REDIS_* variable) is a
    usage error in one line, exit 2, before anything connects."""
    from acp_async.cli._app import main

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["fleet", "status", *argv]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert message in err
