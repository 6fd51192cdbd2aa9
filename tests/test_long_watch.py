"""A long watch under faults: healthy and failing periods alternate while runs progress.

No transition may be lost or reported twice, every fault surfaces as an error event
and is survived, and memory stays flat over many polls (tracemalloc).
"""

from __future__ import annotations

import asyncio
import gc
import os
import statistics
import tracemalloc
from collections import Counter
from contextlib import aclosing

import pytest

from acp_async import ACPClient, AgentRun, RunEvent
from acp_async.testing import FakeACPServer, instant_backoff

from .conftest import assert_no_leftovers

SOAK = os.environ.get("ACP_SOAK") == "1"
WARM_UP = 40
CYCLES = 2000 if SOAK else 200
# Traced memory is sampled every SAMPLE_EVERY cycles against the end of the warm-up,
# each time right after the fake server's own request log is cleared.
SAMPLE_EVERY = 10
PERIOD = 5  # cycles per healthy or failing period
STATUSES = ("queued", "running", "completed", "running", "failed", "queued")
# One client-visible failed poll each (a drop is two server hits: aiohttp re-sends once).
FAULTS = ("503", "429", "drop", "truncated", "html")
MEMORY_SLACK = 64 * 1024


def _inject(fake: FakeACPServer, sid: str, kind: str) -> int:
    """Queue one failed poll for ``sid``; returns how many server hits it takes."""
    if kind == "drop":
        fake.fail("drop", server_id=sid, times=2)
        return 2
    if kind == "stall":
        fake.fail("stall", server_id=sid, delay=5.0)
    elif kind == "truncated":
        fake.fail("truncated", server_id=sid)
    elif kind == "html":
        fake.fail("html", status=502, server_id=sid)
    elif kind == "429":
        fake.fail("status", status=429, retry_after="0", server_id=sid)
    else:
        fake.fail("status", status=503, server_id=sid)
    return 1


@pytest.mark.timeout(900 if SOAK else 60)
async def test_long_watch_under_faults_loses_nothing_and_stays_flat() -> None:
    """Every change is reported exactly once across failing periods; memory does not grow."""
    tracemalloc.start()
    try:
        figures = await _long_watch()
    finally:
        tracemalloc.stop()
    print(f"\nlong watch figures: {figures}")  # shown with -s; quoted in README
    # Flat: nine samples in ten close to the warm-up, and no climb from the early to the
    # late samples (a leak of even 50 bytes per poll would add about 50 KiB over these polls).
    assert figures["p90_growth_bytes"] < MEMORY_SLACK
    assert figures["late_median_bytes"] - figures["early_median_bytes"] < MEMORY_SLACK // 2


async def _long_watch() -> dict[str, int]:
    seen: dict[tuple[str, str], AgentRun] = {}
    kinds: Counter[str] = Counter()
    hits_expected = hits_seen = polls = injected = 0
    baseline = 0
    sizes: list[int] = []

    def check(event: RunEvent) -> None:
        """Validate one event against everything reported before it."""
        kinds[event.kind] += 1
        if event.kind == "error":
            assert event.error is not None
            return
        assert event.run is not None
        assert event.run.id is not None
        key = (event.server_id, event.run.id)
        if event.kind == "created":
            assert key not in seen, f"created twice: {key}"
        else:
            # `previous` is a summary (id and status) of what was reported last.
            assert event.previous is not None
            last = seen.get(key)
            assert last is not None, f"updated before created: {key}"
            assert (event.previous.id, event.previous.status) == (last.id, last.status), key
            assert event.run != last, f"updated without a change: {key}"
        seen[key] = event.run

    with instant_backoff():
        async with FakeACPServer(servers=4, runs_per_server=3, seed=3) as fake:
            ids = fake.server_ids
            client = ACPClient(fake.token, base_url=fake.base_url, timeout=0.25, max_retries=0)
            async with client, aclosing(client.runs.watch(ids, interval=0.002, limit=10)) as feed:

                async def until(done: object) -> None:
                    """Consume events (bounded in time) until ``done()`` is true."""
                    async with asyncio.timeout(15):
                        while not done():  # type: ignore[operator]
                            check(await anext(feed))

                await until(lambda: kinds["created"] == 12)
                for cycle in range(CYCLES):
                    if cycle == WARM_UP:
                        gc.collect()
                        baseline = tracemalloc.get_traced_memory()[0]
                    failing = (cycle // PERIOD) % 2 == 1
                    if failing:
                        for n, sid in enumerate(ids):
                            kind = FAULTS[(cycle + n) % len(FAULTS)]
                            if n == 0 and cycle % (4 * PERIOD) == PERIOD:
                                kind = "stall"  # costs a whole timeout: one per two periods
                            hits_expected += _inject(fake, sid, kind)
                            injected += 1
                    sid = ids[cycle % len(ids)]
                    if cycle < WARM_UP and cycle % 4 == 0:
                        new = fake.add_run(sid, title=f"added in cycle {cycle}")
                        key = (sid, new["id"])
                        await until(lambda key=key: key in seen)
                        continue
                    run_id = fake.runs(sid)[(cycle // len(ids)) % 3]["id"]
                    status = STATUSES[cycle % len(STATUSES)]
                    fake.set_run(sid, run_id, status=status, output=f"cycle {cycle}")
                    key = (sid, run_id)
                    await until(lambda key=key, c=cycle: seen[key].output == f"cycle {c}")
                    records = fake.requests
                    polls += len(records)
                    hits_seen += sum(r.fault is not None for r in records)
                    fake.reset_stats()  # the fake's log would grow; the client's state must not
                    if cycle >= WARM_UP and (cycle + 1) % SAMPLE_EVERY == 0:
                        gc.collect()
                        sizes.append(tracemalloc.get_traced_memory()[0] - baseline)
                # Let pending faults surface, then check nothing more is reported. (Counted on
                # the client: whether aiohttp re-sends after a drop varies, so a drop takes one
                # or two server hits.)
                async with asyncio.timeout(15):
                    while kinds["error"] < injected:
                        check(await anext(feed))
                changes = kinds["created"] + kinds["updated"]
                await asyncio.sleep(0.05)
                while True:
                    try:
                        async with asyncio.timeout(0.1):
                            check(await anext(feed))
                    except TimeoutError:
                        break
                assert kinds["created"] + kinds["updated"] == changes, "a change came twice"
                polls += len(fake.requests)
                hits_seen += sum(r.fault is not None for r in fake.requests)
                await feed.aclose()  # as a worker that stops would; idempotent on exit
                await assert_no_leftovers(client)
    mutations = CYCLES - len(range(0, WARM_UP, 4))
    assert kinds["updated"] == mutations
    assert kinds["created"] == 12 + len(range(0, WARM_UP, 4))
    assert injected <= hits_seen <= hits_expected
    # Each injected fault surfaced as exactly one error event (a drop as one, too).
    assert kinds["error"] == injected
    return {
        "cycles": CYCLES,
        "polls": polls,
        "faults": kinds["error"],
        "created": kinds["created"],
        "updated": kinds["updated"],
        "samples": len(sizes),
        "p90_growth_bytes": sorted(sizes)[len(sizes) * 9 // 10],
        "early_median_bytes": int(statistics.median(sizes[: len(sizes) // 3])),
        "late_median_bytes": int(statistics.median(sizes[-(len(sizes) // 3) :])),
    }
