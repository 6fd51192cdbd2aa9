"""Redis with passwords, as the CLI reaches it: credentials come from ``ACP_REDIS_*``
variables, never argv; a Sentinel deployment whose master and replica (requirepass,
masterauth) and sentinel (its own requirepass) all ask for one; and no password in
anything the CLI prints.
"""

from __future__ import annotations

import asyncio
import signal
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("redis")

import redis

from acp_async.fleet import RedisFleet
from acp_async.testing import FakeACPServer

from .redis_server import RedisSentinel, RedisServer, running
from .test_cli import Result, assert_clean_error, cli_env, interrupt, read_line, run, start
from .test_fleet import collect
from .test_fleet_processes import workers

PASSWORD = "master-Secret-5d1e7a"  # the master's and the replica's
SENTINEL_PASSWORD = "sentinel-Secret-8b2c4f"  # the sentinel's own
SECRETS = (PASSWORD, SENTINEL_PASSWORD)

pytestmark = pytest.mark.usefixtures("no_backoff")


@pytest.fixture(scope="module")
def locked_sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisSentinel]:
    """A master and a replica that ask for PASSWORD, and a sentinel that asks for
    SENTINEL_PASSWORD (about 5 s to start)."""
    locked = RedisSentinel(
        tmp_path_factory.mktemp("locked-sentinel"),
        password=PASSWORD,
        sentinel_password=SENTINEL_PASSWORD,
    )
    with running(locked) as deployment:
        yield deployment


@pytest.fixture(scope="module")
def locked_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of its own that asks every client for PASSWORD."""
    with running(RedisServer(tmp_path_factory.mktemp("locked"), password=PASSWORD)) as server:
        yield server


def sentinel_env(
    deployment: RedisSentinel, fake: FakeACPServer | None = None, **extra: str
) -> dict[str, str]:
    """The CLI's environment for the deployment's sentinel and master, and ``extra``."""
    host, port = deployment.sentinel_address
    found = {"ACP_REDIS_SENTINEL": f"{host}:{port}", "ACP_REDIS_MASTER": RedisSentinel.MASTER}
    return cli_env(fake, **{**found, **extra})


RIGHT = {"ACP_REDIS_PASSWORD": PASSWORD, "ACP_REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD}


def assert_no_secret(*results: Result, text: str = "") -> None:
    for secret in SECRETS:
        for result in results:
            assert secret not in result.out + result.err, result
        assert secret not in text


async def test_the_cli_reaches_a_sentinel_deployment_with_passwords(
    locked_sentinel: RedisSentinel, fleet_name: str, tmp_path: Path
) -> None:
    """The master's password in ACP_REDIS_PASSWORD, the sentinel's in
    ACP_REDIS_SENTINEL_PASSWORD: `fleet add` and `status` work, and a worker polls the
    fleet and appends its servers' runs; no password in any output."""
    async with FakeACPServer(servers=2, runs_per_server=1, seed=9) as fake:
        env = sentinel_env(locked_sentinel, fake, **RIGHT)
        added = await run("fleet", "add", *fake.server_ids, "--fleet", fleet_name, env=env)
        assert added.code == 0, added
        status = await run("fleet", "status", "--json", "--fleet", fleet_name, env=env)
        assert status.code == 0, status
        assert status.json()[0]["servers"] == 2
        host, port = locked_sentinel.sentinel_address
        args = ["--redis-sentinel", f"{host}:{port}", "--redis-master", RedisSentinel.MASTER]
        async with (
            workers(args, fleet_name, fake, tmp_path, env=RIGHT) as group,
            locked_sentinel.master_client() as client,
            RedisFleet(client, name=fleet_name) as fleet,
        ):
            await group.start()
            events = await collect(fleet, 2, timeout=30)
            assert await group.stop_all() == [0]
    assert {e.server_id for e in events} == set(fake.server_ids)
    assert_no_secret(added, status, text=group.log(0).read_text(errors="replace"))


async def test_a_url_without_a_password_takes_it_from_the_environment(
    locked_redis: RedisServer, fleet_name: str
) -> None:
    """`--redis URL` in argv without the password, ACP_REDIS_PASSWORD beside it: the
    password stays out of the process list and the command works."""
    env = cli_env(ACP_REDIS_PASSWORD=PASSWORD)
    added = await run(
        "fleet", "add", "srv-1", "--redis", locked_redis.url, "--fleet", fleet_name, env=env
    )
    assert added.code == 0, added
    with redis.Redis(port=locked_redis.port, password=PASSWORD) as admin:
        assert admin.zcard(f"acp:{{{fleet_name}}}:due") == 1
    assert_no_secret(added)


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (
            ["--redis", "redis://:url-Secret-1a2b@h/0"],
            {"ACP_REDIS_PASSWORD": PASSWORD},
            "the Redis URL holds a password and $ACP_REDIS_PASSWORD is set",
        ),
        (
            ["--redis", "redis://fleet@h/0"],
            {"ACP_REDIS_USERNAME": "fleet"},
            "the Redis URL holds a user and $ACP_REDIS_USERNAME is set",
        ),
        (
            ["--redis", "redis://h/0"],
            {"ACP_REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD},
            "are for sentinels: give --redis-sentinel",
        ),
    ],
    ids=["password-twice", "user-twice", "sentinel-password-without-sentinels"],
)
async def test_credentials_given_twice_or_for_nothing_are_a_usage_error(
    argv: list[str], env: dict[str, str], message: str
) -> None:
    """A password both in the URL and in ACP_REDIS_PASSWORD (which wins is not obvious,
    and one would be ignored), or a sentinels' password without sentinels: exit 2, one
    line, before anything connects, no password quoted."""
    result = await run("fleet", "status", *argv, env=cli_env(**env))
    assert message in assert_clean_error(result, 2)
    assert_no_secret(result)
    assert "url-Secret-1a2b" not in result.err


# -- refused credentials through Sentinel --------------------------------------------------

WRONG = "wrong-Secret-6e0d2b"  # a wrong password: never printed either
BY_SENTINELS = "the credentials were refused by the sentinels (or none were given)"
BY_MASTER = "the credentials were refused (or none were given)"


@pytest.mark.parametrize(
    ("env", "wanted"),
    [
        ({"ACP_REDIS_PASSWORD": PASSWORD, "ACP_REDIS_SENTINEL_PASSWORD": WRONG}, BY_SENTINELS),
        ({"ACP_REDIS_PASSWORD": PASSWORD}, BY_SENTINELS),
        (
            {"ACP_REDIS_PASSWORD": WRONG, "ACP_REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD},
            BY_MASTER,
        ),
        ({"ACP_REDIS_SENTINEL_PASSWORD": SENTINEL_PASSWORD}, BY_MASTER),
    ],
    ids=["wrong-at-sentinel", "none-at-sentinel", "wrong-at-master", "none-at-master"],
)
async def test_a_refused_password_through_sentinel_ends_a_worker_in_one_line(
    locked_sentinel: RedisSentinel, fleet_name: str, env: dict[str, str], wanted: str
) -> None:
    """A sentinel refusing the password (redis-py says only "No master found", the
    refusal inside its text) or the master refusing it: no retry can fix either, so
    `fleet worker` and `fleet add` exit 1 at once, the error last, no password shown."""
    async with FakeACPServer(servers=1) as fake:
        full = sentinel_env(locked_sentinel, fake, **env)
        worker, add = await asyncio.gather(
            run("fleet", "worker", "--fleet", fleet_name, env=full, timeout=20),
            run("fleet", "add", "srv-1", "--fleet", fleet_name, env=full, timeout=20),
        )
    for result in (worker, add):
        assert result.code == 1, result
        assert "Traceback" not in result.err, result.err
        last = result.err.strip().splitlines()[-1]
        assert last.startswith(f"acp-async: Redis at {RedisSentinel.MASTER}/0 (sentinel "), last
        assert wanted in last, last
        assert WRONG not in result.out + result.err
    assert_no_secret(worker, add)


async def test_a_master_the_sentinels_do_not_know_is_waited_for(
    locked_sentinel: RedisSentinel, fleet_name: str
) -> None:
    """Sentinels that answer but name no master (none yet, a failover under way, or a
    name they do not know): "master not found" stays retried. The worker says so once
    and runs on until SIGTERM (exit 0); a one-shot command exits 1 with it."""
    async with FakeACPServer(servers=1) as fake:
        env = sentinel_env(locked_sentinel, fake, **RIGHT, ACP_REDIS_MASTER="nosuch")
        status = await run("fleet", "status", "--fleet", fleet_name, env=env)
        proc = await start("fleet", "worker", "--fleet", fleet_name, env=env)
        try:
            assert proc.stderr is not None
            line = await read_line(proc.stderr)
            while "is unavailable" not in line:
                line = await read_line(proc.stderr)
            assert proc.returncode is None
            stopped = await interrupt(proc, signal.SIGTERM)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert " WARNING fleet: " in line, line
    assert "No master found for 'nosuch'" in line, line
    assert stopped.code == 0, stopped
    assert "credentials" not in line + stopped.err
    assert "No master found for 'nosuch'" in assert_clean_error(status, 1)
    assert_no_secret(status, stopped, text=line)


# -- passwords blanked in what the CLI prints ----------------------------------------------

ECHOED = "echo-Secret/4f#a"  # what the server repeats back; '/' and '#' need quoting in a URL


@pytest.fixture(scope="module")
def echoing_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server with AUTH renamed away (as some hardened set-ups do): it answers a
    client's AUTH with "unknown command 'AUTH', with args beginning with: '<password>'",
    which the fleet retries and reports, quoting the password."""
    server = RedisServer(tmp_path_factory.mktemp("echoing"), extra=["--rename-command", "AUTH", ""])
    server.start()
    try:
        yield server
    finally:
        server.stop()


def echo_settings(server: RedisServer, where: str) -> tuple[list[str], dict[str, str]]:
    """A command's Redis options and variables that give ECHOED as the password ``where``."""
    if where == "url":
        quoted = urllib.parse.quote(ECHOED, safe="")
        return [], {"ACP_REDIS_URL": f"redis://:{quoted}@127.0.0.1:{server.port}/0"}
    if where == "password":
        return ["--redis", server.url], {"ACP_REDIS_PASSWORD": ECHOED}
    sentinel = ["--redis-sentinel", server.address, "--redis-master", "m"]
    return sentinel, {"ACP_REDIS_SENTINEL_PASSWORD": ECHOED}


@pytest.mark.parametrize("where", ["url", "password", "sentinel-password"])
async def test_a_redis_password_echoed_in_an_error_is_blanked(
    echoing_redis: RedisServer, fleet_name: str, where: str
) -> None:
    """Redis repeating the password in its error (from the URL in ACP_REDIS_URL, from
    ACP_REDIS_PASSWORD, or the sentinels' from ACP_REDIS_SENTINEL_PASSWORD): the
    command's one error line shows *** in its place, as for the API's tokens."""
    argv, env = echo_settings(echoing_redis, where)
    result = await run("fleet", "status", *argv, "--fleet", fleet_name, env=cli_env(**env))
    line = assert_clean_error(result, 1)
    assert "with args beginning with: '***'" in line, line
    assert ECHOED not in result.out + result.err


async def test_a_workers_log_lines_blank_the_redis_password(
    echoing_redis: RedisServer, fleet_name: str
) -> None:
    """A worker's WARNING that Redis is unavailable quotes Redis's error: the password
    in it is ***; the worker runs on until SIGTERM (exit 0)."""
    argv, env = echo_settings(echoing_redis, "password")
    async with FakeACPServer(servers=1) as fake:
        proc = await start(
            "fleet", "worker", *argv, "--fleet", fleet_name, env=cli_env(fake, **env)
        )
        try:
            assert proc.stderr is not None
            line = await read_line(proc.stderr)
            while "is unavailable" not in line:
                line = await read_line(proc.stderr)
            stopped = await interrupt(proc, signal.SIGTERM)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert "with args beginning with: '***'" in line, line
    assert stopped.code == 0, stopped
    assert ECHOED not in line + stopped.out + stopped.err
