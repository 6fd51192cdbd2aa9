"""Shared fixtures: a hermetic environment, a started FakeACPServer and a client for it."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from aiohttp import web

from acp_async import ACPClient
from acp_async.testing import FakeACPServer, RecordedRequest, instant_backoff

from .redis_server import VALKEY_SERVER, FleetRedis, RedisCluster, RedisServer, require, running

RUNS_ROUTE = "/v1/servers/{id}/runtime/agent/runs"


@asynccontextmanager
async def serve_runs(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[str]:
    """A bare loopback server answering the runs endpoint with ``handler``: for responses
    the fake server does not make. Yields its base URL."""
    app = web.Application()
    app.router.add_get(RUNS_ROUTE, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def wait_until(condition: Callable[[], object], within: float = 5.0) -> None:
    """Wait for a condition the code under test reaches on its own: polled, never a fixed
    sleep; ``within`` only bounds a failure."""
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.005)


async def settled(fake: FakeACPServer) -> list[RecordedRequest]:
    """The fake's request log once no handler is still running (a request the client gave
    up on is finished, with its fault and status, only when its handler ends)."""
    await wait_until(lambda: fake.in_flight == 0)
    return fake.requests


def _our_tasks() -> list[asyncio.Task[object]]:
    """Running tasks other than the test's own and the fake server's connection handlers."""
    current = asyncio.current_task()
    return [
        t
        for t in asyncio.all_tasks()
        if t is not current
        and not getattr(t.get_coro(), "__qualname__", "").startswith("RequestHandler.")
    ]


async def assert_no_leftovers(client: ACPClient) -> None:
    """No task of ours still runs and no connection is still acquired.

    An abandoned async generator is closed by the loop's finalizer hook on a later
    iteration, so the loop gets a few turns (bounded) before the check.
    """
    for _ in range(20):
        if not _our_tasks():
            break
        await asyncio.sleep(0)
    tasks = _our_tasks()
    assert not tasks, tasks
    session = client._transport._session
    assert session is not None
    assert session.connector is not None
    assert not session.connector._acquired  # type: ignore[attr-defined]


ENV_VARS = (
    "ACP_API_KEY",
    "COMPUTER_AGENTS_API_KEY",
    "TESTBASE_API_KEY",
    "COMPUTER_AGENTS_RUNTIME_TOKEN",
    "TESTBASE_RUNTIME_TOKEN",
    "ACP_BASE_URL",
    "COMPUTER_AGENTS_BASE_URL",
    "COMPUTER_AGENTS_API_URL",
    "COMPUTER_AGENTS_PLATFORM_API_URL",
    "TESTBASE_PLATFORM_API_URL",
    "COMPUTER_AGENTS_RUNTIME_JSON_B64",
    "TESTBASE_RUNTIME_JSON_B64",
    "COMPUTER_AGENTS_SERVER_ID",
    "TESTBASE_SERVER_ID",
    "NETRC",
)
# Proxies in both spellings (urllib, aiohttp and the shell read the lowercase ones first).
PROXY_VARS = tuple(
    case(f"{scheme}_proxy")
    for scheme in ("http", "https", "all", "no")
    for case in (str.lower, str.upper)
)


@pytest.fixture(autouse=True)
def _hermetic_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's own ACP credentials, platform runtime, proxies or Redis."""
    for name in ENV_VARS + PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):
        if name.startswith("ACP_REDIS_"):
            monkeypatch.delenv(name)


@pytest.fixture
def no_backoff() -> Iterator[None]:
    with instant_backoff():
        yield


@pytest.fixture
async def fake() -> AsyncIterator[FakeACPServer]:
    async with FakeACPServer(servers=3, runs_per_server=5) as server:
        yield server


@pytest.fixture
async def client(fake: FakeACPServer, no_backoff: None) -> AsyncIterator[ACPClient]:
    async with ACPClient(fake.token, base_url=fake.base_url, timeout=2.0) as acp:
        yield acp


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server per test process: each xdist worker starts its own, on its own
    port and in its own temporary directory (fleets in tests use their own names)."""
    with running(RedisServer(tmp_path_factory.mktemp("redis"))) as server:
        yield server


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A Redis Cluster of three masters per test process, started once (about 2 s)."""
    with running(RedisCluster(tmp_path_factory.mktemp("cluster"))) as cluster:
        yield cluster


@pytest.fixture(scope="session")
def valkey_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One valkey-server (8, from Debian's backports) per test process."""
    binary = require(VALKEY_SERVER, "valkey-server", "valkey-server from bookworm-backports")
    with running(RedisServer(tmp_path_factory.mktemp("valkey"), binary=binary)) as server:
        yield server


DEPLOYMENTS = ("single", "cluster", "valkey")
# A test marked so runs on one redis-server, a 3-master Redis Cluster and Valkey 8.
every_deployment = pytest.mark.parametrize("fleet_redis", DEPLOYMENTS, indirect=True)


@pytest.fixture
def fleet_redis(request: pytest.FixtureRequest) -> FleetRedis:
    """The Redis a fleet test runs on: the session's redis-server, unless the test is
    marked ``every_deployment`` (then also the Cluster, flushed first, and Valkey)."""
    kind = getattr(request, "param", "single")
    if kind == "cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        cluster.flush()
        return FleetRedis(kind, cluster.url, cluster=True)
    server: RedisServer = request.getfixturevalue(
        "valkey_server" if kind == "valkey" else "redis_server"
    )
    return FleetRedis(kind, server.url)


@pytest.fixture
def fleet_name(request: pytest.FixtureRequest) -> str:
    """A fleet name of its own per test, so tests share one Redis without meeting."""
    return f"{request.node.name}-{uuid.uuid4().hex[:8]}"


def _options(request: pytest.FixtureRequest, name: str) -> dict[str, Any]:
    """The keyword arguments of the closest ``@pytest.mark.<name>(...)`` (test, then module)."""
    marker = request.node.get_closest_marker(name)
    return dict(marker.kwargs) if marker is not None else {}


@pytest.fixture
async def fleet(request: pytest.FixtureRequest) -> AsyncIterator[FakeACPServer]:
    """A FakeACPServer shaped for a module: ``pytestmark = pytest.mark.fleet(servers=40, ...)``
    passes its keywords to FakeACPServer (a test's own mark wins)."""
    async with FakeACPServer(**_options(request, "fleet")) as server:
        yield server


@pytest.fixture
async def fleet_client(
    request: pytest.FixtureRequest, fleet: FakeACPServer, no_backoff: None
) -> AsyncIterator[ACPClient]:
    """A client for `fleet`, with no backoff; ``pytest.mark.fleet_client(...)`` adds options."""
    options: dict[str, Any] = {"timeout": 5.0, **_options(request, "fleet_client")}
    async with ACPClient(fleet.token, base_url=fleet.base_url, **options) as acp:
        yield acp
