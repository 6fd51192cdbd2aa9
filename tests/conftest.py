"""Shared fixtures: a hermetic environment, a started FakeACPServer and a client for it."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from acp_async import ACPClient
from acp_async.testing import FakeACPServer, instant_backoff

from .redis_server import RedisServer

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
    session = client._session
    assert session is not None
    assert session.connector is not None
    assert not session.connector._acquired  # type: ignore[attr-defined]


ENV_VARS = (
    "ACP_API_KEY",
    "COMPUTER_AGENTS_API_KEY",
    "ACP_BASE_URL",
    "COMPUTER_AGENTS_BASE_URL",
)


@pytest.fixture(autouse=True)
def _hermetic_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's own ACP credentials."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


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
    """One redis-server for the session (fleets in tests use their own names)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def fleet_name(request: pytest.FixtureRequest) -> str:
    """A fleet name of its own per test, so tests share one Redis without meeting."""
    return f"{request.node.name}-{uuid.uuid4().hex[:8]}"
