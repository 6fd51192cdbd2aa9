"""Redis refusing the fleet, or away, met by the CLI as users run it.

What no retry can fix (a refused password, an ACL denial, a fleet key of the wrong type,
a counter that is not an integer) ends every fleet command with exit 1 and the error as
its last stderr line, no traceback, no password; Redis away at a worker's start is
waited out, said once, and the worker goes on when Redis comes.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from acp_async.fleet import FleetRedisError, RedisFleet, RedisUnavailableError
from acp_async.testing import FakeACPServer

from .cli_processes import log_text, logged
from .conftest import wait_until
from .redis_server import RedisCluster, RedisServer, free_port
from .test_cli import Result, cli_env, interrupt, read_line, run, start
from .test_fleet import collect

PASSWORD = "pw-Secret-7f3a9c"  # the right one: never printed
WRONG = "wrong-Secret-91c2e4"  # a wrong one: never printed either
COMMANDS = ("worker", "add", "remove", "status", "events")


@pytest.fixture(scope="module")
def locked_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of its own that asks every client for PASSWORD (requirepass)."""
    server = RedisServer(tmp_path_factory.mktemp("locked"))
    server.start()
    try:
        with redis.Redis(port=server.port) as admin:
            admin.config_set("requirepass", PASSWORD)
        yield server
    finally:
        server.kill()


def url(server: RedisServer, credentials: str = "") -> str:
    at = f"{credentials}@" if credentials else ""
    return f"redis://{at}127.0.0.1:{server.port}/0"


async def fleet_command(command: str, redis_url: str, fleet: str, fake: FakeACPServer) -> Result:
    """One ``acp-async fleet <command>`` run to its end (bounded), the URL in argv."""
    extra = {"add": ["srv-1"], "remove": ["srv-1"], "worker": ["--interval", "0.05"]}
    args = ["fleet", command, "--redis", redis_url, "--fleet", fleet, *extra.get(command, [])]
    return await run(*args, env=cli_env(fake), timeout=20)


def assert_one_line(result: Result, wanted: str, *secrets: str) -> None:
    """Exit 1; the last stderr line is the error and says ``wanted``; no traceback; no
    secret anywhere in the output."""
    assert result.code == 1, result
    assert "Traceback" not in result.err, result.err
    last = result.err.strip().splitlines()[-1]
    assert last.startswith("acp-async: Redis at 127.0.0.1:"), last
    assert wanted in last, last
    for secret in secrets:
        assert secret not in result.out + result.err


@pytest.mark.parametrize(
    "credentials", [f":{WRONG}", "", f"nobody:{PASSWORD}"], ids=["wrong", "none", "unknown-user"]
)
async def test_a_refused_password_ends_every_fleet_command_in_one_line(
    locked_redis: RedisServer, fleet_name: str, credentials: str
) -> None:
    """WRONGPASS (a wrong password, an unknown user) and NOAUTH (none given): exit 1 at
    once (redis-py retries nothing), the error last, no password in the output."""
    async with FakeACPServer(servers=1) as fake:
        results = await asyncio.gather(
            *(
                fleet_command(command, url(locked_redis, credentials), fleet_name, fake)
                for command in COMMANDS
            )
        )
    for result in results:
        assert_one_line(result, "the credentials were refused", PASSWORD, WRONG)


async def test_a_refused_password_ends_a_cluster_worker_in_one_line(
    redis_cluster: RedisCluster, fleet_name: str
) -> None:
    """On a Redis Cluster redis-py wraps the refused AUTH in a RedisClusterException
    (not a RedisError, and without "WRONGPASS" in its text): still no retry can fix it,
    so `fleet worker --redis-cluster` exits 1 at once with it as its last line."""
    bad_url = redis_cluster.url.replace("redis://", f"redis://nobody:{WRONG}@")
    async with FakeACPServer(servers=1) as fake:
        args = ["--redis", bad_url, "--redis-cluster", "--fleet", fleet_name]
        worker, add = await asyncio.gather(
            run("fleet", "worker", *args, env=cli_env(fake), timeout=20),
            run("fleet", "add", "srv-1", *args, env=cli_env(fake), timeout=20),
        )
    for result in (worker, add):
        assert_one_line(result, "the credentials were refused", WRONG)


@pytest.fixture
def acl_user(redis_server: RedisServer) -> Iterator[tuple[redis.Redis, str]]:
    """An admin connection and a user name of this test's own, deleted afterwards."""
    name = f"user-{uuid.uuid4().hex[:8]}"
    with redis.Redis(port=redis_server.port) as admin:
        try:
            yield admin, name
        finally:
            admin.acl_deluser(name)


@pytest.mark.parametrize(
    "rules",
    [["~other:*", "+@all"], ["~*", "-@all", "+ping", "+client"]],
    ids=["no-fleet-keys", "no-fleet-commands"],
)
async def test_an_acl_denial_ends_every_fleet_command_in_one_line(
    redis_server: RedisServer, fleet_name: str, acl_user: tuple[redis.Redis, str], rules: list[str]
) -> None:
    """NOPERM (a user who may not touch the fleet's keys, or run its commands): exit 1,
    the error last, saying what the ACL must allow; the user's password not shown."""
    admin, name = acl_user
    admin.execute_command("ACL", "SETUSER", name, "on", f">{PASSWORD}", *rules)
    async with FakeACPServer(servers=1) as fake:
        results = await asyncio.gather(
            *(
                fleet_command(command, url(redis_server, f"{name}:{PASSWORD}"), fleet_name, fake)
                for command in COMMANDS
            )
        )
    for result in results:
        assert_one_line(result, "may not run a command the fleet needs", PASSWORD)


# A key of the fleet, and a value of the wrong type for it (or, for `seq`, not an integer).
WRONG_VALUES = {
    "due": ("set", "a string"),
    "claims": ("rpush", "a list"),
    "state": ("sadd", "a set"),
    "events": ("set", "a string"),
    "seq": ("hset", "a hash"),
}


@pytest.mark.parametrize("key", sorted(WRONG_VALUES))
async def test_a_fleet_key_of_the_wrong_type_ends_a_worker_with_one_line(
    redis_server: RedisServer, fleet_name: str, key: str
) -> None:
    """WRONGTYPE on any fleet key the worker touches: the worker exits 1 with the error
    as its last stderr line (no traceback), naming the fleet's keys."""
    async with (
        FakeACPServer(servers=1, runs_per_server=1) as fake,
        RedisFleet(redis_server.url, name=fleet_name) as fleet,
    ):
        if key != "due":
            await fleet.add(fake.server_ids)
        full = f"acp:{{{fleet_name}}}:{key}"
        command, _ = WRONG_VALUES[key]
        with redis.Redis(port=redis_server.port) as admin:
            if command == "hset":
                admin.hset(full, "field", "value")
            else:
                getattr(admin, command)(full, "x")
        result = await fleet_command("worker", redis_server.url, fleet_name, fake)
    keys = f"acp:{{{fleet_name}}}:*"
    wanted = f"a fleet key holds a value of the wrong type (something else wrote to {keys})"
    assert_one_line(result, wanted)
    assert "WRONGTYPE" in result.err.strip().splitlines()[-1]


async def test_one_shot_commands_on_a_wrong_typed_key_exit_1_in_one_line(
    redis_server: RedisServer, fleet_name: str
) -> None:
    """`fleet add`, `remove` and `status` on a due set that is a string; `fleet events` on
    a stream that is a string: exit 1, one line; the library raises FleetRedisError."""
    with redis.Redis(port=redis_server.port) as admin:
        admin.set(f"acp:{{{fleet_name}}}:due", "x")
        admin.set(f"acp:{{{fleet_name}}}:events", "x")
    async with FakeACPServer(servers=1) as fake:
        results = await asyncio.gather(
            *(fleet_command(c, redis_server.url, fleet_name, fake) for c in COMMANDS[1:])
        )
    for result in results:
        assert_one_line(result, "WRONGTYPE")
    async with RedisFleet(redis_server.url, name=fleet_name) as fleet:
        with pytest.raises(FleetRedisError) as raised:
            await fleet.add(["srv-1"])
    assert not isinstance(raised.value, RedisUnavailableError)
    assert raised.value.address == f"127.0.0.1:{redis_server.port}/0"


async def test_a_counter_that_is_not_an_integer_ends_a_worker_with_one_line(
    redis_server: RedisServer, fleet_name: str
) -> None:
    """The fencing counter holding "12abc": no claim can be made, the worker exits 1 and
    says which key to delete."""
    async with (
        FakeACPServer(servers=1) as fake,
        RedisFleet(redis_server.url, name=fleet_name) as fleet,
    ):
        await fleet.add(fake.server_ids)
        with redis.Redis(port=redis_server.port) as admin:
            admin.set(f"acp:{{{fleet_name}}}:seq", "12abc")
        result = await fleet_command("worker", redis_server.url, fleet_name, fake)
    assert_one_line(result, f"the fleet's counter acp:{{{fleet_name}}}:seq is not an integer")


class UserRedis(RedisServer):
    """A redis-server whose user ``fleet`` has PASSWORD (set at start: a restart keeps it)."""

    def _args(self) -> list[str]:
        return [*super()._args(), "--user", "fleet", "on", f">{PASSWORD}", "~*", "&*", "+@all"]


def worker_process(
    redis_url: str, fleet: str, fake: FakeACPServer, log: Path
) -> contextlib.AbstractAsyncContextManager[asyncio.subprocess.Process]:
    """``acp-async fleet worker -v``, stdout and stderr in ``log``; killed at the end."""
    return logged(
        "fleet", "worker", "--redis", redis_url, "--fleet", fleet, "--interval", "0.05", "-v",
        log=log, env=cli_env(fake),
    )  # fmt: skip


async def test_redis_down_at_start_then_up_the_worker_goes_on(
    tmp_path: Path, fleet_name: str
) -> None:
    """A worker started while Redis is down says so once (a WARNING naming host:port,
    not the password), keeps trying, says when Redis answers, and polls without a
    restart; SIGTERM then exits 0."""
    server = UserRedis(tmp_path)
    server.start()
    server.stop()  # down; a restart keeps the port
    redis_url = url(server, f"fleet:{PASSWORD}")
    log = tmp_path / "worker.log"
    try:
        async with (
            FakeACPServer(servers=2, runs_per_server=1) as fake,
            worker_process(redis_url, fleet_name, fake, log) as proc,
        ):
            await wait_until(lambda: "is unavailable" in log_text(log), 20)
            server.start()
            async with RedisFleet(redis_url, name=fleet_name, interval=0.05) as fleet:
                await fleet.add(fake.server_ids)
                events = await collect(fleet, 2, timeout=30)
            assert proc.returncode is None
            proc.send_signal(signal.SIGTERM)
            code = await asyncio.wait_for(proc.wait(), 15)
    finally:
        server.kill()
    assert code == 0
    assert {e.server_id for e in events} == set(fake.server_ids)
    lines = log_text(log).splitlines()
    unavailable = [line for line in lines if "is unavailable" in line and "; retry " not in line]
    assert len(unavailable) == 1, lines  # once, however many tries it took (-v: and retries)
    assert " WARNING " in unavailable[0], unavailable
    assert f"Redis at 127.0.0.1:{server.port}/0 is unavailable" in unavailable[0]
    back = [line for line in lines if "Redis answers again" in line]
    assert len(back) == 1, lines
    assert PASSWORD not in "\n".join(lines)


async def test_a_refused_password_is_sent_once(locked_redis: RedisServer, fleet_name: str) -> None:
    """The client the fleet makes retries nothing itself: one AUTH, then the error (a
    redis-py 7 client made with Redis(...) sends four, with up to 10 s between them)."""
    with redis.Redis(port=locked_redis.port, password=PASSWORD) as admin:
        admin.config_resetstat()
        async with RedisFleet(url(locked_redis, f":{WRONG}"), name=fleet_name) as fleet:
            with pytest.raises(FleetRedisError, match="credentials were refused") as raised:
                await fleet.add(["srv-1"])
        auth = admin.info("commandstats")["cmdstat_auth"]
    assert not isinstance(raised.value, RedisUnavailableError)
    assert auth["calls"] == 1
    assert PASSWORD not in str(raised.value)
    assert WRONG not in str(raised.value)


async def test_redis_out_of_memory_is_waited_out(
    tmp_path: Path, fleet_name: str, caplog: pytest.LogCaptureFixture, no_backoff: None
) -> None:
    """OOM (maxmemory reached) is not fatal: the worker warns once, naming Redis, and
    commits once memory is there again; acp_fleet_redis_up follows."""
    from prometheus_client import CollectorRegistry

    from acp_async import ACPClient
    from acp_async.metrics import PrometheusMetrics

    server = RedisServer(tmp_path)
    server.start()
    registry = CollectorRegistry()
    try:
        async with (
            FakeACPServer(servers=2, runs_per_server=1) as fake,
            RedisFleet(
                server.url, name=fleet_name, interval=0.05, metrics=PrometheusMetrics(registry)
            ) as fleet,
            ACPClient(fake.token, base_url=fake.base_url) as client,
        ):
            await fleet.add(fake.server_ids)
            with redis.Redis(port=server.port) as admin:
                admin.config_set("maxmemory", "1")
                with caplog.at_level("INFO", logger="acp_async"):
                    task = asyncio.create_task(fleet.work(client, concurrency=2))
                    try:
                        await wait_until(lambda: "OutOfMemoryError" in caplog.text, 10)
                        assert registry.get_sample_value("acp_fleet_redis_up") == 0
                        admin.config_set("maxmemory", "0")
                        await wait_until(lambda: "Redis answers again" in caplog.text, 10)
                        stream = fleet.events("g", "c", block=0.05)
                        async with contextlib.aclosing(stream), asyncio.timeout(10):
                            [first, second] = [await anext(stream) for _ in range(2)]
                        assert not task.done()
                        assert registry.get_sample_value("acp_fleet_redis_up") == 1
                    finally:
                        task.cancel()
                        await asyncio.gather(task, return_exceptions=True)
    finally:
        server.kill()
    assert {first.server_id, second.server_id} == set(fake.server_ids)
    warned = [r for r in caplog.records if r.levelname == "WARNING" and "unavailable" in r.message]
    assert len(warned) == 1
    assert f"Redis at 127.0.0.1:{server.port}/0 is unavailable" in warned[0].message


async def test_fleet_events_rides_out_redis_going_away_at_an_ack(
    tmp_path: Path, fleet_name: str
) -> None:
    """Redis going away between printing an event and acknowledging it does not end
    `fleet events`: it reads again, waits the outage out, and prints the unacknowledged
    events again once Redis is back (at least once); SIGTERM then exits 0.

    The event's line is longer than a pipe holds, so the command is stuck printing it
    (read, not acknowledged) until the test drains stdout, after stopping Redis."""
    server = RedisServer(tmp_path)
    server.start()
    # Far more than the pipe (64 KiB) and this side's stream buffer (up to ~192 KiB before
    # it stops reading) hold together: the command cannot finish printing, so cannot ack.
    big = "x" * 2_000_000
    with redis.Redis(port=server.port) as admin:
        events_key = f"acp:{{{fleet_name}}}:events"
        run = f'{{"id":"r1","title":"{big}"}}'
        fields = {"key": "k/1", "kind": "created", "server": "srv", "run": run, "previous": ""}
        admin.xadd(events_key, fields)  # type: ignore[arg-type]
        args = ["fleet", "events", "--redis", server.url, "--fleet", fleet_name, "--group", "g"]
        proc = await start(*args, env=cli_env())
        err = b""
        try:
            await wait_until(lambda: _pending(admin, events_key) == 1, 20)  # stuck printing it
            await asyncio.to_thread(server.stop)  # the loop meanwhile keeps the pipes read
            assert proc.stdout is not None
            printed = b""
            while printed.count(b"\n") < 1:  # its ack meets Redis away
                printed += await asyncio.wait_for(proc.stdout.read(65536), 20)
            await asyncio.to_thread(server.start)  # the same port; the stream and group kept
            while printed.count(b"\n") < 2:  # printed again once Redis answers
                chunk = await asyncio.wait_for(proc.stdout.read(65536), 30)
                assert chunk, "fleet events closed its stdout"
                printed += chunk
            await wait_until(lambda: _pending(admin, events_key) == 0, 20)
            assert proc.returncode is None
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 15)
        finally:
            if proc.returncode is None:
                proc.kill()
                # communicate, not wait: a full stdout pipe would keep wait() from returning.
                _, err = await asyncio.wait_for(proc.communicate(), 15)
                print(err.decode(errors="replace"))  # shown when the test fails
            server.kill()
    assert proc.returncode == 0, err.decode()
    lines = err.decode(errors="replace").splitlines()
    assert len([line for line in lines if "is unavailable" in line]) == 1, lines
    assert len([line for line in lines if "Redis answers again" in line]) == 1, lines


def _pending(admin: redis.Redis, events_key: str) -> int:
    """Group g's unacknowledged events (0 before the group exists)."""
    if not admin.exists(events_key) or not admin.xinfo_groups(events_key):
        return 0
    return int(admin.xpending(events_key, "g")["pending"])


@pytest.fixture
def stale_replica(tmp_path: Path) -> Iterator[RedisServer]:
    """A real Redis that cannot serve the fleet: a replica whose master is gone, set not to
    serve stale data, so it answers MASTERDOWN (retried) to every command but INFO."""
    gone = free_port()
    server = RedisServer(
        tmp_path,
        extra=["--replicaof", "127.0.0.1", str(gone), "--replica-serve-stale-data", "no"],
    )
    server.start()
    try:
        yield server
    finally:
        server.kill()


def _refused(server: RedisServer) -> int:
    """How many commands the server has refused with MASTERDOWN so far."""
    found = re.search(r"errorstat_MASTERDOWN:count=(\d+)", server.cli("INFO", "errorstats"))
    return int(found[1]) if found else 0


async def test_v_shows_each_redis_retry_and_the_default_only_the_first_warning(
    stale_replica: RedisServer, fleet_name: str
) -> None:
    """Redis refusing every command for now: with -v each retry after the first WARNING
    is an INFO line ("-v adds retries"); by default a worker that retried several times
    (counted by Redis itself) says it once, and no retry line; SIGTERM exits 0."""
    args = ["fleet", "worker", "--redis", stale_replica.url, "--fleet", fleet_name]
    async with FakeACPServer(servers=1) as fake:
        verbose = await start(*args, "-v", env=cli_env(fake))
        try:
            assert verbose.stderr is not None
            retries: list[str] = []
            while len(retries) < 2:
                line = await read_line(verbose.stderr)
                retries += [line] if "; retry " in line else []
            stopped_verbose = await interrupt(verbose, signal.SIGTERM)
        finally:
            if verbose.returncode is None:
                verbose.kill()
                await verbose.wait()
        before = _refused(stale_replica)
        default = await start(*args, env=cli_env(fake))
        try:
            await wait_until(lambda: _refused(stale_replica) >= before + 3, 20)
            stopped_default = await interrupt(default, signal.SIGTERM)
        finally:
            if default.returncode is None:
                default.kill()
                await default.wait()
    assert all(" INFO fleet: Redis at " in line for line in retries), retries
    assert "MasterDownError" in retries[0], retries
    assert stopped_verbose.code == 0, stopped_verbose
    assert stopped_default.code == 0, stopped_default
    lines = stopped_default.err.splitlines()
    warned = [line for line in lines if "is unavailable" in line]
    assert len(warned) == 1, lines
    assert " WARNING fleet: Redis at " in warned[0], warned
    assert not [line for line in lines if "; retry " in line], lines
