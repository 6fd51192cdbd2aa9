"""The HTTP scenarios: the same GETs over the same load server, one client stack each.

Each scenario is a factory: ``setup(base_url, concurrency, ssl_context)`` returns an object
with an async (or sync) ``run(server_ids)`` and a ``close()``. Connections are opened before
the clock starts (one warm-up batch), so every stack is timed on a warm pool. Over https
every aiohttp stack trusts the load server through the same ``ssl_context``.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import aiohttp

from acp_async import ACPClient

PATH = "/v1/servers/{}/runtime/agent/runs?limit=20"
TOKEN = "bench-token"


async def _workers(ids: Sequence[str], concurrency: int, one: Callable[[str], Any]) -> int:
    """``concurrency`` workers pulling ids from one iterator: the leanest fan-out there is."""
    source: Iterator[str] = iter(ids)
    done = 0

    async def worker() -> None:
        nonlocal done
        for sid in source:
            await one(sid)
            done += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


class RawRead:
    """(a) aiohttp ``read()``: the transport limit."""

    name = "a. aiohttp read()"
    is_async = True

    def __init__(
        self, base_url: str, concurrency: int, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._base = base_url
        self._concurrency = concurrency
        self._ssl = ssl_context
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=_connector(self._ssl),
            headers={"Authorization": f"Bearer {TOKEN}"},
        )

    async def _get(self, sid: str) -> Any:
        assert self._session is not None
        async with self._session.get(self._base + PATH.format(sid)) as response:
            response.raise_for_status()
            return self.decode(await response.read())

    def decode(self, body: bytes) -> Any:
        return body

    async def run(self, ids: Sequence[str]) -> int:
        return await _workers(ids, self._concurrency, self._get)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


class RawJson(RawRead):
    """(b) aiohttp + ``json.loads``: dicts, no types, no validation."""

    name = "b. aiohttp + json.loads"

    def decode(self, body: bytes) -> Any:
        return json.loads(body)


def _connector(context: ssl.SSLContext | None) -> aiohttp.TCPConnector:
    """100 connections; over https, trusting the load server's certificate only."""
    return aiohttp.TCPConnector(limit=100, ssl=context if context is not None else True)


class Ours:
    """(c) ``acp_async`` ``list_many``: typed, validated, retried, merged runs.

    Over https it borrows a session whose connector trusts the load server (the way a
    user with a private CA does); over http the client makes its own.
    """

    name = "c. acp_async list_many"
    is_async = True
    client_class: Any = ACPClient  # benchmarks.compare puts an earlier commit's here

    def __init__(
        self, base_url: str, concurrency: int, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._base = base_url
        self._concurrency = concurrency
        self._ssl = ssl_context
        self._client: Any = None
        self._session: aiohttp.ClientSession | None = None

    def _borrowed_session(self) -> aiohttp.ClientSession | None:
        if self._ssl is None:
            return None
        return aiohttp.ClientSession(connector=_connector(self._ssl))

    async def open(self) -> None:
        self._session = self._borrowed_session()
        self._client = self.client_class(
            TOKEN, base_url=self._base, max_connections=100, session=self._session
        )
        await self._client.__aenter__()

    async def run(self, ids: Sequence[str]) -> int:
        assert self._client is not None
        done = 0
        async for outcome in self._client.runs.list_many(
            ids, limit=20, concurrency=self._concurrency
        ):
            if outcome.error is not None:
                raise outcome.error
            done += 1
        return done

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
        if self._session is not None:
            await self._session.close()


class HttpxPydantic:
    """(d) ``httpx.AsyncClient`` + pydantic v2 models: the Stainless-style stack."""

    name = "d. httpx + pydantic v2"
    is_async = True

    def __init__(
        self, base_url: str, concurrency: int, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        self._base = base_url
        self._concurrency = concurrency
        self._verify: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True

    async def open(self) -> None:
        import httpx  # noqa: PLC0415 - optional

        from .models_pydantic import Page  # noqa: PLC0415

        self._page = Page
        self._client = httpx.AsyncClient(
            base_url=self._base,
            headers={"Authorization": f"Bearer {TOKEN}"},
            limits=httpx.Limits(max_connections=100, max_keepalive_connections=100),
            verify=self._verify,
        )

    async def _get(self, sid: str) -> Any:
        response = await self._client.get(PATH.format(sid))
        response.raise_for_status()
        return self._page.model_validate_json(response.content)

    async def run(self, ids: Sequence[str]) -> int:
        return await _workers(ids, self._concurrency, self._get)

    async def close(self) -> None:
        await self._client.aclose()


class Official:
    """(e) the official ``computer-agents`` SDK (sync, httpx, dicts), one call at a time.

    ``ComputerAgentsClient(api_key, base_url=...)`` appends ``/v1`` like ours, and
    ``client.resources.list_runtime_agent_runs(server_id, limit=20)`` is its method for
    ``GET /v1/servers/{serverId}/runtime/agent/runs``.
    """

    name = "e. computer-agents, sequential"
    is_async = False
    threads = 0

    def __init__(
        self, base_url: str, concurrency: int, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        if ssl_context is not None:
            raise ValueError("the official SDK takes no SSL context: http only")
        self._base = base_url
        self._concurrency = concurrency

    def open(self) -> None:
        from computer_agents import ComputerAgentsClient  # noqa: PLC0415 - optional

        self._make = lambda: ComputerAgentsClient(api_key=TOKEN, base_url=self._base)
        self._clients: list[Any] = []
        self._local = threading.local()
        self._pool = ThreadPoolExecutor(self.threads) if self.threads else None

    def _client(self) -> Any:
        # One client per thread: sharing one between threads fails under load
        # (httpcore "Bad file descriptor" on this machine), so that is what users must do.
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._make()
            self._clients.append(client)
        return client

    def _get(self, sid: str) -> Any:
        return self._client().resources.list_runtime_agent_runs(sid, limit=20)

    def run(self, ids: Sequence[str]) -> int:
        if self._pool is None:
            for sid in ids:
                self._get(sid)
            return len(ids)
        return sum(1 for _ in self._pool.map(self._get, ids))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
        for client in self._clients:
            client.close()


class OfficialThreads(Official):
    """(e) the official SDK in a thread pool as wide as the others' concurrency, one
    client per thread."""

    name = "e. computer-agents, thread pool"

    def __init__(
        self, base_url: str, concurrency: int, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        super().__init__(base_url, concurrency, ssl_context)
        self.threads = concurrency


SCENARIOS: dict[str, type[Any]] = {
    "a": RawRead,
    "b": RawJson,
    "c": Ours,
    "d": HttpxPydantic,
    "e_seq": Official,
    "e_pool": OfficialThreads,
}
OPTIONAL = {
    "d": ("httpx", "pydantic"),
    "e_seq": ("computer_agents",),
    "e_pool": ("computer_agents",),
}
