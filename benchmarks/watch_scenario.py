"""The watch scenario: CPU and memory per server and poll as the fleet grows.

The watcher runs for real (schedules, fan-out, diffing, state) over a stand-in for
``client.runs`` that structures a fresh page per poll from one decoded template, so the
numbers are the watch's own cost (HTTP is measured by the HTTP scenarios). Every server
has 5 runs and one of them changes status on every poll, so each poll yields exactly one
"updated" event per server and every server stays busy (polled every interval).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from acp_async._watch import Watcher, WatchState
from acp_async.testing import instant_backoff

from .payload import make_run

RUNS_PER_SERVER = 5


class _FakeRuns:
    """Just enough of ``Runs`` for the watcher: ``list`` structures a fresh page."""

    def __init__(self, server_ids: list[str]) -> None:
        base = [make_run(i) for i in range(RUNS_PER_SERVER)]
        self._templates = [
            {"data": [{**base[0], "status": status}, *base[1:]]} for status in ("running", "queued")
        ]
        self._polls = dict.fromkeys(server_ids, 0)  # allocated before measuring

    async def list(
        self, server_id: str, limit: int, parse: Callable[[Any], Any], peek: Any = None
    ) -> Any:
        count = self._polls[server_id] = self._polls[server_id] + 1
        return parse(self._templates[count % 2])  # decoded JSON: the watch structures changes


async def _watch(servers: int, polls: int, *, trace: bool) -> tuple[float, float]:
    """(CPU seconds of polls 2..polls, bytes held after them) for a fleet of ``servers``."""
    ids = [f"srv_{i:06d}" for i in range(servers)]
    runs: Any = _FakeRuns(ids)
    state = WatchState()
    watcher = Watcher(runs.list, ids, interval=0.001, limit=50, concurrency=16, state=state)
    first = servers * RUNS_PER_SERVER  # every run is "created" on the first poll
    wanted = first + servers * (polls - 1)
    gc.collect()
    if trace:
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0] if trace else 0
    seen = 0
    cpu_start = 0.0
    events = watcher.events()
    try:
        async for _ in events:
            seen += 1
            if seen == first:
                cpu_start = time.process_time()
            if seen >= wanted:
                break
    finally:
        await events.aclose()  # type: ignore[attr-defined]
    cpu = time.process_time() - cpu_start
    for _ in range(10):  # let the loop finalise the closed fan-out (in-flight polls)
        await asyncio.sleep(0)
    held = 0.0
    if trace:
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
    del state, watcher
    return cpu, held


def measure(sizes: list[int], polls: int, reps: int = 3) -> dict[int, dict[str, float]]:
    """fleet size -> CPU microseconds per server per poll, and bytes held per server.

    Small fleets poll more often, so every size does about the same number of server
    polls (at least ``polls``); one small warm-up watch first fills the lazy caches
    (cattrs hooks, asyncio internals) so they are not charged to the first fleet. The
    sizes alternate over ``reps`` repetitions and the median CPU is reported.
    """
    cpu: dict[int, list[float]] = {size: [] for size in sizes}
    held: dict[int, float] = {}
    work = max(sizes) * polls
    with instant_backoff():
        asyncio.run(_watch(min(sizes), polls, trace=True))  # warm-up, not reported
        for _ in range(reps):
            for size in sizes:
                rounds = max(polls, work // size)
                seconds, _ = asyncio.run(_watch(size, rounds, trace=False))
                cpu[size].append(seconds / (size * (rounds - 1)) * 1e6)
        for size in sizes:
            held[size] = asyncio.run(_watch(size, 2, trace=True))[1] / size
    return {
        size: {
            "cpu_us_per_server_poll": statistics.median(cpu[size]),
            "bytes_per_server": held[size],
        }
        for size in sizes
    }
