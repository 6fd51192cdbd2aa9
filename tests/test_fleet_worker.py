"""The fleet worker's claim lifecycle on a real redis-server: the ordering gate and the
named thresholds."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest

pytest.importorskip("redis")

from acp_async import ACPClient
from acp_async.fleet import RedisFleet
from acp_async.fleet import _worker as worker
from acp_async.fleet._store import RedisStore, Reply, Trip
from acp_async.testing import FakeACPServer

from .conftest import wait_until
from .redis_server import RedisServer

pytestmark = pytest.mark.usefixtures("no_backoff")


class _Withhold:
    """Wraps the store's round trip: the first trip that commits ``server_id`` runs on Redis
    (the commit lands) but its reply is held back until ``release`` is set, as a slow
    network would. Meanwhile it notes when another reply claims ``server_id`` again."""

    def __init__(self, server_id: str) -> None:
        self.server_id = server_id
        self.withheld = asyncio.Event()  # the commit landed; its reply is held back
        self.reclaimed = asyncio.Event()  # the worker holds a new claim on the server
        self.release = asyncio.Event()
        self._original = RedisStore.round_trip

    async def round_trip(self, store: RedisStore, worker: str, trip: Trip, **kw: Any) -> Reply:
        reply = await self._original(store, worker, trip, **kw)

        committing = any(c.claim.server_id == self.server_id for c in trip.commits)
        if committing and not self.withheld.is_set():
            self.withheld.set()
            await self.release.wait()
        elif self.withheld.is_set() and not self.release.is_set():
            claimed = {claim.server_id for claim in reply.claimed}
            if self.server_id in claimed:
                self.reclaimed.set()
        return reply


@contextlib.asynccontextmanager
async def _working(fleet: RedisFleet, fake: FakeACPServer, concurrency: int) -> AsyncIterator[None]:
    async with ACPClient(fake.token, base_url=fake.base_url, max_retries=0) as client:
        task = asyncio.create_task(fleet.work(client, concurrency=concurrency))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_a_server_is_not_polled_again_before_its_last_commit_answers(
    redis_server: RedisServer, fleet_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ordering gate. Server `first` answers at once, four others in 0.1 s: its first
    commit travels alone, lands on Redis, and its reply is held back. `first` is due
    again and claimed again by a later trip meanwhile, and while the others are polled
    six times more (slots free all along), `first` is not polled. Once the reply comes,
    it is."""
    async with FakeACPServer(servers=12, runs_per_server=1) as fake:
        first, *others = fake.server_ids  # claimed first: equal due times go by id
        for sid in fake.server_ids:
            fake.add_run(sid, status="running")  # busy: due again every interval
        for sid in others:
            fake.fail("latency", delay=0.05, times=10_000, server_id=sid)
        gate = _Withhold(first)

        async def round_trip(store: RedisStore, worker: str, trip: Trip, **kw: Any) -> Reply:
            return await gate.round_trip(store, worker, trip, **kw)

        monkeypatch.setattr(RedisStore, "round_trip", round_trip)
        options = {"name": fleet_name, "interval": 0.05, "lease": 30.0}
        async with RedisFleet(redis_server.url, **options) as fleet:  # type: ignore[arg-type]
            await fleet.add(fake.server_ids)
            async with _working(fleet, fake, concurrency=4):
                try:
                    await asyncio.wait_for(gate.withheld.wait(), 10)
                    await asyncio.wait_for(gate.reclaimed.wait(), 10)
                    mark = len(fake.requests)
                    await wait_until(
                        lambda: sum(r.server_id != first for r in fake.requests[mark:]) >= 6, 10
                    )
                    held_back = [r.server_id for r in fake.requests].count(first)
                finally:
                    gate.release.set()
                await wait_until(lambda: [r.server_id for r in fake.requests].count(first) > 1, 10)
    assert held_back == 1  # claimed again, yet not polled while its last reply was out


def test_the_lifecycle_thresholds_are_named_and_documented() -> None:
    """The thresholds the lifecycle turns on have names, and the docstring's diagram
    names each of them and each stage."""
    assert (worker.HAND_BACK_BELOW, worker.LATE_BELOW) == (0.5, 0.9)
    assert (worker.LEASE_MARGIN, worker.MAX_MARGIN, worker.MAX_TRIPS) == (0.1, 5.0, 2)
    doc = worker.__doc__ or ""
    for name in ("HAND_BACK_BELOW", "LATE_BELOW", "LEASE_MARGIN", "MAX_TRIPS", "_committing"):
        assert name in doc
    for stage in ("HELD", "POLLING", "POLLED", "HANDING_BACK", "COMMITTING", "RELEASING"):
        assert stage in doc
