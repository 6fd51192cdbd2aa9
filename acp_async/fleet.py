"""Many workers watch one fleet of ACP servers together through Redis (extra ``redis``).

    fleet = RedisFleet("redis://localhost:6379/0", name="default")
    async with fleet:
        await fleet.add(["srv-1", "srv-2"])
        await fleet.work(client)            # in each worker process; runs until cancelled
        async for event in fleet.events(group="billing", consumer="c1"):
            ...
            await fleet.ack("billing", event)

Work is claimed from Redis (due servers, fenced claims held for at most ``lease``
seconds); each poll's events are appended to the fleet's stream together with the
server's new compact state in one fenced script, so every change a committed poll sees
is appended exactly once. Consumers read through consumer groups (at least once).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import AsyncGenerator, Iterable
from types import TracebackType
from typing import Any, Literal, Self

import attrs

try:
    import redis.asyncio as aioredis
    from redis.exceptions import ResponseError
except ImportError as exc:  # pragma: no cover - exercised when the extra is absent
    raise ImportError(
        "acp_async.fleet needs the official Redis client: pip install 'acp-async[redis]'"
    ) from exc

from . import _converter, _json, _validate
from ._client import ACPClient
from ._observe import NO_OBSERVER, Observer
from ._watch._redis import REDIS_UNAVAILABLE, RedisStore
from ._watch._worker import Worker
from .errors import ResponseValidationError
from .models import AgentRun, RunStatus

__all__ = ("FleetEvent", "FleetStatus", "RedisFleet")

log = logging.getLogger("acp_async")

_READ_COUNT = 100
_MAX_BACKOFF = 5.0
_STATUSES = {status.value: status for status in RunStatus}


@attrs.frozen
class FleetEvent:
    """A change appended to the fleet's stream by a committed poll.

    ``key`` (server id, run id and that run's change number) is the same for the same
    change whoever appended it: consumers may dedupe on it.
    """

    id: str
    key: str
    kind: Literal["created", "updated"]
    server_id: str
    run: AgentRun
    previous_status: RunStatus | str | None = None


@attrs.frozen
class FleetStatus:
    """How the fleet is doing; ``pending`` is unacknowledged events per consumer group."""

    servers: int
    workers: int
    overdue: int
    oldest_overdue: float
    failing: int
    stream_length: int
    pending: dict[str, int] = attrs.Factory(dict)


class RedisFleet:
    """One fleet of ACP servers watched through Redis. Use ``async with fleet:``."""

    def __init__(
        self,
        redis_url: str,
        *,
        name: str = "default",
        interval: float = 30.0,
        limit: int = 50,
        lease: float = 60.0,
        max_events: int = 1_000_000,
        metrics: Observer | None = None,
    ) -> None:
        if not isinstance(redis_url, str) or not redis_url:
            raise TypeError("redis_url must be a non-empty str (redis://host:port/db)")
        if not isinstance(name, str) or not name or "{" in name or "}" in name:
            raise ValueError(f"name must be a non-empty str without braces, got {name!r}")
        if metrics is not None and not isinstance(metrics, Observer):
            raise TypeError("metrics must be an acp_async Observer")
        self._url = redis_url
        self._name = name
        self._interval = _validate.positive_seconds("interval", interval)
        self._limit = _validate.int_at_least("limit", limit, 1)
        self._lease = _validate.positive_seconds("lease", lease)
        self._max_events = _validate.int_at_least("max_events", max_events, 1)
        self._observer = metrics or NO_OBSERVER
        self._redis: aioredis.Redis | None = None
        self._store: RedisStore | None = None

    def __repr__(self) -> str:
        return f"RedisFleet(name={self._name!r})"

    @property
    def name(self) -> str:
        return self._name

    async def __aenter__(self) -> Self:
        self._redis = aioredis.Redis.from_url(
            self._url, socket_timeout=self._socket_timeout(), socket_connect_timeout=5.0
        )
        self._store = RedisStore(self._redis, self._name)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the Redis pool; idempotent."""
        if self._redis is not None:
            redis, self._redis, self._store = self._redis, None, None
            await redis.aclose()

    def _socket_timeout(self) -> float:
        """Long enough for any script, and for a blocking read (``events`` caps ``block``)."""
        return max(30.0, self._lease)

    def _opened(self) -> RedisStore:
        if self._store is None:
            raise RuntimeError("use the fleet inside `async with fleet:`")
        return self._store

    async def add(self, server_ids: Iterable[str]) -> int:
        """Add servers (due at once); idempotent. Returns how many were new."""
        ids = _checked(server_ids)
        return await self._opened().add(ids)

    async def remove(self, server_ids: Iterable[str]) -> int:
        """Stop watching servers and forget their state. Returns how many were removed."""
        ids = _checked(server_ids)
        return await self._opened().remove(ids)

    async def server_ids(self) -> set[str]:
        return await self._opened().server_ids()

    async def work(self, client: ACPClient, *, concurrency: int = 16) -> None:
        """Be one worker of the fleet until cancelled (then claims are handed back).

        Raises ``AuthenticationError``: no poll can succeed without a new token. Redis
        going away is waited out; other poll errors are logged and retried later.
        """
        if not isinstance(client, ACPClient):
            raise TypeError("client must be an ACPClient")
        slots = _validate.int_at_least("concurrency", concurrency, 1)
        worker = Worker(
            self._opened(),
            client.runs._fetch_page,
            interval=self._interval,
            limit=self._limit,
            lease=self._lease,
            max_events=self._max_events,
            concurrency=client.runs._slots(slots),
            observer=self._observer,
        )
        await worker.run()

    def events(
        self, group: str, consumer: str, *, block: float = 5.0, claim_idle: float = 60.0
    ) -> AsyncGenerator[FleetEvent, None]:
        """The stream's events for ``consumer`` of ``group`` (created on first use, from the
        start). Unacknowledged events come again; another consumer's, idle for more than
        ``claim_idle`` seconds, are claimed for this one. Runs until closed."""
        for what, value in (("group", group), ("consumer", consumer)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{what} must be a non-empty str, got {value!r}")
        wait = min(_validate.positive_seconds("block", block), self._socket_timeout() - 5)
        wait_ms = int(wait * 1000)
        idle_ms = int(_validate.positive_seconds("claim_idle", claim_idle) * 1000)
        return self._events(group, consumer, max(1, wait_ms), max(1, idle_ms))

    async def _events(
        self, group: str, consumer: str, block_ms: int, idle_ms: int
    ) -> AsyncGenerator[FleetEvent, None]:
        failures = 0
        ready = False
        own_pending = True  # this consumer's own unacked events come first (a restart)
        while True:
            store = self._opened()
            try:
                if not ready:
                    await self._create_group(store, group)
                    ready = True
                if own_pending:
                    batch = await self._read(store, group, consumer, "0", None)
                    own_pending = bool(batch)
                else:
                    reply = await store.redis.xautoclaim(
                        store.events, group, consumer, idle_ms, "0-0", count=_READ_COUNT
                    )
                    batch = _entries(reply[1])
                    if not batch:
                        batch = await self._read(store, group, consumer, ">", block_ms)
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                ready = False  # the stream or group was deleted: make it again
                continue
            except REDIS_UNAVAILABLE as exc:
                failures += 1
                pause = min(_MAX_BACKOFF, 0.05 * 2**failures)
                log.warning("fleet events: Redis unavailable (%s); retrying in %.2fs", exc, pause)
                await asyncio.sleep(random.uniform(pause / 2, pause))
                continue
            failures = 0
            for event in batch:
                yield event

    async def _create_group(self, store: RedisStore, group: str) -> None:
        try:
            await store.redis.xgroup_create(store.events, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _read(
        self, store: RedisStore, group: str, consumer: str, start: str, block_ms: int | None
    ) -> list[FleetEvent]:
        reply: Any = await store.redis.xreadgroup(
            group, consumer, {store.events: start}, count=_READ_COUNT, block=block_ms
        )
        return [event for _, entries in reply or () for event in _entries(entries)]

    async def ack(self, group: str, event: FleetEvent) -> int:
        """Acknowledge ``event`` for ``group``; returns how many were acknowledged (0 or 1)."""
        store = self._opened()
        return int(await store.redis.xack(store.events, group, event.id))

    async def status(self) -> FleetStatus:
        store = self._opened()
        now = await store.status(self._interval, self._lease)
        pending: dict[str, int] = {}
        try:
            groups = await store.redis.xinfo_groups(store.events)
        except ResponseError:
            groups = []  # no stream yet
        for info in groups:
            name = info["name"]
            pending[name.decode() if isinstance(name, bytes) else str(name)] = int(info["pending"])
        return FleetStatus(
            servers=now.servers,
            workers=now.workers,
            overdue=now.overdue,
            oldest_overdue=now.oldest_overdue,
            failing=now.failing,
            stream_length=now.stream_length,
            pending=pending,
        )


def _checked(server_ids: Iterable[str]) -> list[str]:
    """Every id checked before anything is written: one bad id and nothing is."""
    if isinstance(server_ids, str | bytes):
        raise TypeError("server_ids must be an iterable of server ids, not a single string")
    return list(dict.fromkeys(_validate.taken_server_id(sid) for sid in server_ids))


def _entries(entries: Any) -> list[FleetEvent]:
    """Stream entries as events; trimmed ones (no fields left) are skipped."""
    events = []
    for entry in entries or ():
        entry_id, fields = entry
        if fields:
            events.append(_event(entry_id.decode(), fields))
    return events


def _event(entry_id: str, fields: dict[bytes, bytes]) -> FleetEvent:
    try:
        run = _converter.structure(_json.loads(fields[b"run"]), AgentRun)
        kind = fields[b"kind"].decode()
        previous = fields[b"previous"].decode() or None
        if kind not in ("created", "updated"):
            raise ValueError(f"unknown kind {kind!r}")
        return FleetEvent(
            id=entry_id,
            key=fields[b"key"].decode(),
            kind=kind,  # type: ignore[arg-type]
            server_id=fields[b"server"].decode(),
            run=run,
            previous_status=None if previous is None else _STATUSES.get(previous, previous),
        )
    except (KeyError, ValueError) as exc:
        raise ResponseValidationError(
            f"fleet stream entry {entry_id} is malformed: {exc}"
        ) from None
