"""``RedisFleet``: one fleet's options and lifecycle, and the calls a user makes.

Each call checks its arguments, then asks the store (``_store``) for the operation; a
worker is ``_worker``, a consumer ``_events``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Self

from .. import _runs, _validate
from .._client import ACPClient
from .._observe import NO_OBSERVER, Observer
from . import _connection
from ._events import consume
from ._store import RedisStore
from ._worker import Worker
from .models import FleetEvent, FleetStatus

if TYPE_CHECKING:
    from redis.asyncio import Redis, RedisCluster

    from ..metrics import PrometheusMetrics

__all__ = ("RedisFleet",)


class RedisFleet:
    """One fleet of ACP servers watched by any number of workers through Redis.

    Use ``async with fleet:`` (it opens and closes the Redis pool)::

        fleet = RedisFleet("redis://localhost:6379/0", name="billing")
        async with fleet:
            await fleet.add(["srv-0001", "srv-0002"])
            await fleet.work(client)                  # in each worker; until cancelled

    Args:
        redis: a ``redis://``, ``rediss://`` or ``unix://`` URL of the Redis (or Valkey),
            or a ready ``redis.asyncio.Redis`` or ``RedisCluster`` client, which the fleet
            borrows and never closes (Sentinel: ``Sentinel(...).master_for(name)``). A
            client must read bytes over RESP2 (not ``decode_responses=True``, not
            ``protocol=3``); blocking reads stay shorter than its socket timeout.
        name: the fleet's name; its keys are ``acp:{name}:*``. Default ``"default"``.
        interval: seconds between polls of a busy server (one with a run not finished);
            idle and failing servers are polled less often. Default 30.
        limit: runs read per poll. Default 50.
        lease: seconds a worker holds a claimed server; a dead worker's servers are
            polled again after it. Default 60.
        max_events: about how many events the stream keeps (older ones are trimmed).
            Default 1,000,000.
        metrics: an ``acp_async.metrics.PrometheusMetrics`` to count commits into.
        cluster: the URL names a node of a Redis Cluster: connect with redis-py's
            ``RedisCluster`` (every key of a fleet is in one slot). Default False.

    Raises:
        ValueError: a URL that is not a Redis URL, a client that decodes replies or
            speaks RESP3, a bad name or a bad number.
        TypeError: ``redis`` that is neither a URL nor a ``redis.asyncio`` client;
            ``metrics`` that is not a ``PrometheusMetrics``.

    Each call raises ``RedisUnavailableError`` while Redis is away (``work()`` and
    ``events()`` wait that out) and ``FleetRedisError`` for what no retry can fix, never
    a redis-py exception.
    """

    def __init__(
        self,
        redis: str | Redis | RedisCluster,
        *,
        name: str = "default",
        interval: float = 30.0,
        limit: int = 50,
        lease: float = 60.0,
        max_events: int = 1_000_000,
        metrics: PrometheusMetrics | None = None,
        cluster: bool = False,
    ) -> None:
        if not isinstance(cluster, bool):
            raise TypeError(f"cluster must be a bool, got {cluster!r}")
        if not isinstance(name, str) or not name or "{" in name or "}" in name:
            raise ValueError(f"name must be a non-empty str without braces, got {name!r}")
        if metrics is not None and not isinstance(metrics, Observer):
            raise TypeError(
                "metrics must be an acp_async.metrics.PrometheusMetrics, got "
                f"{type(metrics).__name__}"
            )
        self._name = name
        self._interval = _validate.positive_seconds("interval", interval)
        self._limit = _validate.int_at_least("limit", limit, 1)
        self._lease = _validate.positive_seconds("lease", lease)
        self._max_events = _validate.int_at_least("max_events", max_events, 1)
        # Made now, so the URL (and any password in it) is kept nowhere but in redis-py's
        # connection settings; it connects on first use.
        self._owned = isinstance(redis, str)
        self._client: _connection.Client = (
            _connection.from_url(
                redis, cluster=cluster, timeout=_connection.socket_timeout(self._lease)
            )
            if isinstance(redis, str)
            else _connection.borrowed(redis, cluster=cluster)
        )
        self._longest_block = _connection.longest_block(self._client)
        self._observer = metrics or NO_OBSERVER
        self._store: RedisStore | None = None
        self._depth = 0  # nested `async with fleet:` blocks; the outermost exit closes

    def __repr__(self) -> str:
        return f"RedisFleet(name={self._name!r}, redis={_connection.address(self._client)!r})"

    @property
    def name(self) -> str:
        """The fleet's name."""
        return self._name

    async def __aenter__(self) -> Self:
        """Open the Redis pool; a nested ``async with fleet:`` shares it."""
        if self._store is None:
            self._store = RedisStore(self._client, self._name, owned=self._owned)
        self._depth += 1
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._depth -= 1
        if self._depth <= 0:
            await self.close()

    async def close(self) -> None:
        """Close the Redis pool (not a borrowed client's); idempotent. The fleet opens
        again with ``async with``."""
        if self._store is not None:
            store, self._store = self._store, None
            await store.close()

    def _opened(self) -> RedisStore:
        if self._store is None:
            raise RuntimeError("use the fleet inside `async with fleet:`")
        return self._store

    async def add(self, server_ids: Iterable[str]) -> int:
        """Add ``server_ids`` (an iterable of ids) to the fleet, due at once; idempotent.

        Returns how many were new. Raises ``ValueError`` for a bad id, before anything is
        written.
        """
        ids = _checked(server_ids)
        return await self._opened().add(ids)

    async def remove(self, server_ids: Iterable[str]) -> int:
        """Stop watching ``server_ids`` (an iterable of ids) and forget their state.

        Returns how many were removed. Raises ``ValueError`` for a bad id, before anything
        is changed.
        """
        ids = _checked(server_ids)
        return await self._opened().remove(ids)

    async def server_ids(self) -> set[str]:
        """The ids of the fleet's servers."""
        return await self._opened().server_ids()

    async def failing(self) -> dict[str, str]:
        """The failing servers (those whose last poll failed), each with its last error:
        one escaped line of at most 200 characters, or "" where it is not known (a server
        failing since before the release that began keeping errors)."""
        return await self._opened().failing()

    async def work(self, client: ACPClient, *, concurrency: int = 16) -> None:
        """Be one worker of the fleet until cancelled (then its claims are handed back).

        Claims due servers, polls them with ``client`` (its retries, timeouts and 429
        cool-down apply) and commits each poll's events to the stream.

        Args:
            client: the ``ACPClient`` to poll with.
            concurrency: polls in flight at most. Default 16.

        Raises:
            AuthenticationError: no poll can succeed without a new token. Redis going
                away is waited out; other poll errors are logged and retried later.
            FleetRedisError: Redis refused the fleet's work in a way no retry can fix (a
                refused password, an ACL denial, a fleet key of the wrong type).
        """
        if not isinstance(client, ACPClient):
            raise TypeError("client must be an ACPClient")
        slots = _validate.int_at_least("concurrency", concurrency, 1)
        worker = Worker(
            self._opened(),
            _runs.poll_source(client.runs, slots),
            interval=self._interval,
            limit=self._limit,
            lease=self._lease,
            max_events=self._max_events,
            observer=self._observer,
        )
        await worker.run()

    def events(
        self, group: str, consumer: str, *, block: float = 5.0, claim_idle: float = 60.0
    ) -> AsyncGenerator[FleetEvent, None]:
        """The stream's events for ``consumer`` of ``group``, until the loop is closed.

        The consumer group is created on first use, from the start of the stream. Events
        not acknowledged with ``ack`` come again (at least once); another consumer's,
        idle for more than ``claim_idle`` seconds, are claimed for this one.

        Args:
            group: the consumer group's name.
            consumer: this consumer's name within the group.
            block: seconds one read waits for new events. Default 5.
            claim_idle: seconds after which another consumer's unacknowledged events
                are claimed. Default 60.

        Example::

            async for event in fleet.events("billing", "c1"):
                handle(event)
                await fleet.ack("billing", event)
        """
        for what, value in (("group", group), ("consumer", consumer)):
            if not isinstance(value, str) or not value:
                raise ValueError(f"{what} must be a non-empty str, got {value!r}")
        wait = _validate.positive_seconds("block", block)
        if self._longest_block is not None:  # the socket timeout must not cut a read
            wait = min(wait, self._longest_block)
        wait_ms = int(wait * 1000)
        idle_ms = int(_validate.positive_seconds("claim_idle", claim_idle) * 1000)
        return consume(
            self._opened, group, consumer, max(1, wait_ms), max(1, idle_ms), self._observer
        )

    async def ack(self, group: str, event: FleetEvent) -> int:
        """Acknowledge ``event`` (as ``events()`` yielded it) for ``group``; returns how many
        were acknowledged (0 or 1)."""
        if not isinstance(group, str) or not group:
            raise ValueError(f"group must be a non-empty str, got {group!r}")
        if not isinstance(event, FleetEvent):
            raise TypeError(
                f"ack takes the FleetEvent that events() yielded, not {type(event).__name__}"
            )
        return await self._opened().ack(group, event.id)

    async def status(self) -> FleetStatus:
        """How the fleet is doing. ``workers`` counts each worker for two of its own
        leases after it last claimed or committed; ``overdue`` is judged by this fleet's
        ``interval`` (Redis does not hold the workers'): give the same."""
        return await self._opened().status(self._interval)


def _checked(server_ids: Iterable[str]) -> list[str]:
    """Every id checked before anything is written: one bad id and nothing is."""
    ids = _validate.server_id_iterable(server_ids)
    return list(dict.fromkeys(_validate.taken_server_id(sid) for sid in ids))
