"""A poll of an unchanged page next to the transport limit: worker CPU per poll (Redis fleet
worker and in-process watch) against CPU per request of a bare aiohttp GET + ``read()``
loop, on the same pages from the same load server, taking turns in one process.

The load server (its own process, pinned to its own core) answers every GET with the
same page (20 runs in ``data`` and the same 20 in ``runs``, 34 KB), so from the second
poll on every page is unchanged: the watch digests its bytes, finds them equal and
neither decodes nor structures it. redis-server runs in its own process too, so this
process's CPU time is the worker's own. Each mode runs for a window per repetition;
CPU per poll is this process's CPU time over the window divided by the polls (counted
by the ``watch_polled`` hook) or requests (counted by the loop) in it.

Run as ``python -m benchmarks.poll_cost [--reps N] [--seconds S] [--servers N]``; it
prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Literal

import aiohttp

from acp_async import ACPClient
from acp_async.fleet import RedisFleet
from acp_async.metrics import Observer
from acp_async.testing import instant_backoff

from .fleet_scenarios import redis_server
from .http_bench import _ids
from .http_scenarios import PATH, TOKEN
from .server import LoadServer
from .stats import fmt_spread, write_section

CONCURRENCY = 16  # polls in flight: the fleet worker's and the watch's default
INTERVAL = 0.001  # every server is due again at once: the loop runs flat out


class _PollCounter(Observer):
    """Counts finished polls; it overrides no request hook, so the client keeps its
    observer-free send path."""

    def __init__(self) -> None:
        self.polls = 0

    def watch_polled(self, *, ok: bool, late: float) -> None:
        self.polls += 1


async def _window(count: Callable[[], int], warm: float, seconds: float) -> float:
    """CPU microseconds per counted event over ``seconds``, after ``warm`` seconds."""
    await asyncio.sleep(warm)
    polls, cpu = count(), time.process_time()
    await asyncio.sleep(seconds)
    done = count() - polls
    return (time.process_time() - cpu) / max(1, done) * 1e6


async def _bare(base: str, ids: list[str], warm: float, seconds: float) -> float:
    """aiohttp GET + ``read()``, ``CONCURRENCY`` workers round the same ids."""
    done = 0

    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session:

        async def worker(offset: int) -> None:
            nonlocal done
            i = offset
            while True:
                async with session.get(base + PATH.format(ids[i % len(ids)])) as response:
                    await response.read()
                done += 1
                i += CONCURRENCY

        tasks = [asyncio.create_task(worker(n)) for n in range(CONCURRENCY)]
        try:
            return await _window(lambda: done, warm, seconds)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def _watch(base: str, ids: list[str], warm: float, seconds: float) -> float:
    counter = _PollCounter()
    async with ACPClient(TOKEN, base_url=base, metrics=counter) as client:
        stream = client.runs.watch(ids, interval=INTERVAL, limit=50, concurrency=CONCURRENCY)

        async def drain() -> None:
            async for _ in stream:
                pass

        task = asyncio.create_task(drain())
        try:
            return await _window(lambda: counter.polls, warm, seconds)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await stream.aclose()


async def _fleet(
    base: str, ids: list[str], warm: float, seconds: float, *, url: str, name: str
) -> float:
    counter = _PollCounter()
    async with (
        ACPClient(TOKEN, base_url=base) as client,
        RedisFleet(
            url, name=name, interval=INTERVAL, limit=50, lease=30.0, max_events=10_000,
            metrics=counter,
        ) as fleet,
    ):  # fmt: skip
        await fleet.add(ids)
        task = asyncio.create_task(fleet.work(client, concurrency=CONCURRENCY))
        try:
            return await _window(lambda: counter.polls, warm, seconds)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await fleet.remove(ids)


Mode = Literal["bare", "watch", "fleet"]


def measure(*, servers: int, seconds: float, reps: int) -> dict[str, Any]:
    """Per mode, CPU microseconds per poll (or request), one value per repetition."""
    ids = sorted(set(_ids(servers, servers)))
    warm = max(0.5, seconds / 2)  # the first poll of each server creates its runs
    cpu: dict[Mode, list[float]] = {"bare": [], "watch": [], "fleet": []}
    with (
        LoadServer() as server,
        redis_server() as redis,
        instant_backoff(),
        asyncio.Runner() as runner,
    ):
        modes: dict[Mode, Callable[[int], Awaitable[float]]] = {
            "bare": lambda rep: _bare(server.base_url, ids, warm, seconds),
            "watch": lambda rep: _watch(server.base_url, ids, warm, seconds),
            "fleet": lambda rep: _fleet(
                server.base_url, ids, warm, seconds, url=redis.url, name=f"cost{rep}"
            ),
        }
        keys: list[Mode] = list(modes)
        for rep in range(reps):
            for key in keys[rep % 3 :] + keys[: rep % 3]:
                cpu[key].append(runner.run(modes[key](rep)))
    return {"cpu": cpu, "servers": len(ids), "seconds": seconds, "reps": reps}


def table(results: dict[str, Any]) -> list[str]:
    cpu = results["cpu"]
    bare = cpu["bare"]

    def ratio(values: list[float]) -> str:
        return fmt_spread([v / b for v, b in zip(values, bare, strict=True)])

    return [
        "| loop | CPU per poll (request) | / bare GET + `read()` |",
        "|---|---|---|",
        f"| bare aiohttp GET + `read()` (the transport limit) | {fmt_spread(bare)} us | 1 |",
        f"| in-process watch, unchanged page | {fmt_spread(cpu['watch'])} us "
        f"| {ratio(cpu['watch'])} |",
        f"| Redis fleet worker, unchanged page | {fmt_spread(cpu['fleet'])} us "
        f"| {ratio(cpu['fleet'])} |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.poll_cost")
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--servers", type=int, default=300)
    parser.add_argument(
        "--write", type=Path, help="put the table in this Markdown file (its own section)"
    )
    args = parser.parse_args()
    results = measure(servers=args.servers, seconds=args.seconds, reps=args.reps)
    section = markdown(results)
    if args.write:
        write_section(args.write, section, "poll_cost")
    print(section)


def markdown(results: dict[str, Any]) -> str:
    bare = statistics.median(results["cpu"]["bare"])
    return "\n".join(
        [
            f"## A poll of an unchanged page next to the transport limit ({results['servers']} "
            f"servers, {results['reps']} repetitions of {results['seconds']:g} s a mode, "
            f"Python {sys.version.split()[0]})",
            "",
            "Worker CPU per poll (this process's CPU time over a window, divided by the polls "
            "the `watch_polled` hook counted) of the in-process watch and of one Redis fleet "
            "worker, and CPU per request of a bare aiohttp GET + `read()` loop, on the same "
            "34 KB page from the same load server (its own pinned process; redis-server its "
            f"own too), {CONCURRENCY} in flight each, taking turns in one process. Every poll "
            "after the first finds the page unchanged (its digest), so it is neither decoded "
            "nor structured. Median (min - max); the ratio is the median of per-repetition "
            f"ratios. Goal: at most 1.1x (bare median {bare:.0f} us).",
            "",
            *table(results),
        ]
    )


if __name__ == "__main__":
    main()
