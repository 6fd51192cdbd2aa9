"""Cancellation at every await point: cancel after 0, 1, 2, ... loop steps, until it finishes.

Each cancelled call must end cancelled (never swallowed), leave no task and no
acquired connection behind, and leave the client usable for the next call.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from acp_async import ACPClient
from acp_async.testing import FakeACPServer

from .conftest import assert_no_leftovers

MAX_STEPS = 3000  # a bound, never reached: every operation finishes in far fewer steps


async def _cancel_at_every_step(
    client: ACPClient, fake: FakeACPServer, operation: Callable[[], Awaitable[Any]]
) -> int:
    """Run ``operation`` cancelling it after k steps for k = 0, 1, ...; return how many
    cancellation points were tried before it finished uncancelled."""
    for steps in range(MAX_STEPS):
        task = asyncio.ensure_future(operation())
        for _ in range(steps):
            await asyncio.sleep(0)
        if task.done():
            task.result()  # finished before we could cancel: every earlier point was tried
            await assert_no_leftovers(client)
            return steps
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert task.cancelled(), f"cancellation swallowed after {steps} steps"
        await assert_no_leftovers(client)
        # Still usable: a plain call on the same client succeeds.
        assert (await client.runs.list(fake.server_ids[0])).data
    pytest.fail(f"the operation did not finish within {MAX_STEPS} steps")


# `fleet`: six servers of seven runs, served two runs per page (so iter follows links).
pytestmark = [
    pytest.mark.fleet(servers=6, runs_per_server=7, page_size=2),
    pytest.mark.fleet_client(timeout=2.0),
]


async def test_list_cancelled_at_every_step(fleet: FakeACPServer, fleet_client: ACPClient) -> None:
    """`list` cancelled at any point leaks nothing and leaves the client usable."""
    sid = fleet.server_ids[1]
    points = await _cancel_at_every_step(
        fleet_client, fleet, lambda: fleet_client.runs.list(sid, limit=2)
    )
    assert points > 3


async def test_list_with_a_retry_cancelled_at_every_step(
    fleet: FakeACPServer, fleet_client: ACPClient
) -> None:
    """`list` cancelled inside its retry loop (after a 503) leaks nothing."""
    sid = fleet.server_ids[1]

    async def retried() -> Any:
        before = len(fleet.requests)
        fleet.fail("status", status=503, server_id=sid)
        try:
            return await fleet_client.runs.list(sid)
        finally:
            if len(fleet.requests) == before:
                # Cancelled before the request left: a fault nobody took must not linger.
                await fleet_client.runs.list(sid)

    points = await _cancel_at_every_step(fleet_client, fleet, retried)
    assert points > 5


async def test_iter_cancelled_at_every_step(fleet: FakeACPServer, fleet_client: ACPClient) -> None:
    """`iter` across four pages, cancelled at any point, leaks nothing."""
    sid = fleet.server_ids[2]

    async def consume() -> list[Any]:
        return [run async for run in fleet_client.runs.iter(sid, limit=2)]

    points = await _cancel_at_every_step(fleet_client, fleet, consume)
    assert points > 10
    assert len(await consume()) == 7


async def test_list_many_cancelled_at_every_step(
    fleet: FakeACPServer, fleet_client: ACPClient
) -> None:
    """`list_many` cancelled mid fan-out cancels what is in flight and leaks nothing."""

    async def consume() -> list[Any]:
        many = fleet_client.runs.list_many(fleet.server_ids, concurrency=3)
        return [outcome async for outcome in many]

    points = await _cancel_at_every_step(fleet_client, fleet, consume)
    assert points > 10
    assert all(outcome.error is None for outcome in await consume())


async def test_watch_cancelled_at_every_step(fleet: FakeACPServer, fleet_client: ACPClient) -> None:
    """`watch` cancelled while polling, diffing or sleeping leaks nothing."""
    sid = fleet.server_ids[3]

    async def consume() -> int:
        count = 0
        async with contextlib.aclosing(
            fleet_client.runs.watch(fleet.server_ids[:3], interval=0.001, limit=10)
        ) as events:
            async for event in events:
                assert event.kind == "created", event
                count += 1
                if count == 2 * 3:  # two created runs per server: past the first poll
                    fleet.set_run(sid, fleet.runs(sid)[0]["id"], title="touched")
                    return count
        return count

    points = await _cancel_at_every_step(fleet_client, fleet, consume)
    assert points > 10


class _Ticks:
    """A fake-server clock that moves one tick per read, but only while armed."""

    def __init__(self) -> None:
        self.now = 0.0
        self.armed = False

    def __call__(self) -> float:
        if self.armed:
            self.now += 1.0
        return self.now


async def test_wait_for_cancelled_at_every_step(no_backoff: None) -> None:
    """`wait_for` cancelled inside a poll or between polls leaks nothing."""
    clock = _Ticks()
    # The fake reads its clock about three times per request: a run moves about one
    # status step per poll, so queued -> running -> terminal takes several polls.
    async with FakeACPServer(servers=2, runs_per_server=3, progress_every=3, clock=clock) as fake:
        async with ACPClient(fake.token, base_url=fake.base_url, timeout=2.0) as client:
            sid = fake.server_ids[1]
            run_id = fake.runs(sid)[0]["id"]
            polls: list[int] = []

            async def wait() -> Any:
                fake.set_run(sid, run_id, status="queued")
                before = len(fake.requests)
                clock.armed = True
                try:
                    return await client.runs.wait_for(sid, run_id, interval=0.001, timeout=5)
                finally:
                    clock.armed = False
                    polls.append(len(fake.requests) - before)

            points = await _cancel_at_every_step(client, fake, wait)
            assert points > 10
            assert polls[-1] >= 2  # the uncancelled wait really polled more than once
            assert (await wait()).is_terminal
