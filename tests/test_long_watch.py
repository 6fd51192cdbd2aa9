"""A long watch under faults: healthy and failing periods alternate while runs progress.

No transition may be lost or reported twice, every fault surfaces as an error event
and is survived, and memory stays flat over many polls: traced memory (tracemalloc),
sampled after a full collection, shows no trend against the number of polls made.
"""

from __future__ import annotations

import array
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
# After the warm-up, traced memory is sampled every SAMPLE_EVERY cycles, after gc.collect()
# (about 30 ms: the whole heap) and right after the fake server's own request log is
# cleared. A single sample is noisy (tens of KiB: buffers and responses in flight, free
# lists), so the check is on the trend: the
# least-squares slope of the samples against the polls made so far. A leak of 50 bytes per
# poll gives a slope of about 50; a flat client gives one within a few bytes of zero.
MAX_SLOPE = 20.0  # bytes per poll
SAMPLE_EVERY = 2  # 80 samples: the slope's noise is a few bytes per poll (every 10: +-30)
BASELINE_SAMPLES = 10  # the baseline for the growth figures: the median of the first samples
PERIOD = 5  # cycles per healthy or failing period
STATUSES = ("queued", "running", "completed", "running", "failed", "queued")
# Timeout of one attempt: wide enough that a healthy poll on a loaded machine never hits it
# (0.25 s did, and 0.5 s did under a parallel run at load 8, adding error events nobody
# injected); a stall (5 s) costs one whole timeout, five times in a run.
TIMEOUT = 2.0
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


# The work is bounded (CYCLES, each wait 15 s at most), but on a loaded 2-core machine it
# takes up to a minute; the timeout is a guard against a hang, not a speed check.
@pytest.mark.timeout(900 if SOAK else 120)
async def test_long_watch_under_faults_loses_nothing_and_stays_flat() -> None:
    """Every change is reported exactly once across failing periods; memory does not grow."""
    # From the start: traced late, the first replacement of each long-lived object (the
    # runs seen, pools, caches) would count as growth, and the early samples would climb.
    tracemalloc.start()
    try:
        figures = await _long_watch()
    finally:
        tracemalloc.stop()
    print(f"\nlong watch figures: {figures}")  # shown with -s; quoted in README
    # Flat: no trend against the polls made (a leak of 50 bytes per poll fails this), and
    # nine samples in ten within MEMORY_SLACK of the baseline.
    assert figures["slope_bytes_per_poll"] < MAX_SLOPE
    assert figures["p90_growth_bytes"] < MEMORY_SLACK


async def _no_request_open(client: ACPClient) -> None:
    """Wait (bounded) until no connection is acquired: no poll is on the wire."""
    session = client._transport._session  # as conftest.assert_no_leftovers looks
    assert session is not None
    assert session.connector is not None
    async with asyncio.timeout(15):
        while session.connector._acquired:  # type: ignore[attr-defined]
            await asyncio.sleep(0.001)


async def _long_watch() -> dict[str, float]:
    seen: dict[tuple[str, str], AgentRun] = {}
    kinds: Counter[str] = Counter()
    hits_expected = hits_seen = polls = injected = 0
    # Preallocated, so that recording a sample allocates nothing the samples would count.
    sampled_at = array.array("q", bytes(8 * len(range(WARM_UP, CYCLES, SAMPLE_EVERY))))
    sizes = array.array("q", sampled_at)

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
            client = ACPClient(fake.token, base_url=fake.base_url, timeout=TIMEOUT, max_retries=0)
            async with client, aclosing(client.runs.watch(ids, interval=0.002, limit=10)) as feed:

                async def until(done: object) -> None:
                    """Consume events (bounded in time) until ``done()`` is true."""
                    async with asyncio.timeout(15):
                        while not done():  # type: ignore[operator]
                            check(await anext(feed))

                await until(lambda: kinds["created"] == 12)
                for cycle in range(CYCLES):
                    failing = (cycle // PERIOD) % 2 == 1
                    if failing:
                        for n, sid in enumerate(ids):
                            kind = FAULTS[(cycle + n) % len(FAULTS)]
                            if n == 0 and cycle % (8 * PERIOD) == PERIOD:
                                kind = "stall"  # costs a whole timeout: one per four periods
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
                    if cycle >= WARM_UP and (cycle - WARM_UP) % SAMPLE_EVERY == 0:
                        # The watch is paused between events: once its last polls are back,
                        # the collection (which blocks the loop) cannot time a poll out.
                        await _no_request_open(client)
                        gc.collect()
                        sample = (cycle - WARM_UP) // SAMPLE_EVERY
                        sampled_at[sample] = polls
                        sizes[sample] = tracemalloc.get_traced_memory()[0]
                # Let pending faults surface, then check nothing more is reported. (Counted on
                # the client: whether aiohttp re-sends after a drop varies, so a drop takes one
                # or two server hits.)
                async with asyncio.timeout(15):
                    while kinds["error"] < injected:
                        check(await anext(feed))
                changes = kinds["created"] + kinds["updated"]
                # One last change on every server: each comes after anything that server's
                # earlier polls could still report, so an event in between came twice.
                last = {sid: fake.runs(sid)[0]["id"] for sid in ids}
                for sid, run_id in last.items():
                    fake.set_run(sid, run_id, output="the last change")
                await until(
                    lambda: all(seen[key].output == "the last change" for key in last.items())
                )
                assert kinds["created"] + kinds["updated"] == changes + len(ids), (
                    "a change came twice"
                )
                polls += len(fake.requests)
                hits_seen += sum(r.fault is not None for r in fake.requests)
                await feed.aclose()  # as a worker that stops would; idempotent on exit
                await assert_no_leftovers(client)
    mutations = CYCLES - len(range(0, WARM_UP, 4)) + 4  # and the last change of each server
    assert kinds["updated"] == mutations
    assert kinds["created"] == 12 + len(range(0, WARM_UP, 4))
    assert injected <= hits_seen <= hits_expected
    # Each injected fault surfaced as exactly one error event (a drop as one, too).
    assert kinds["error"] == injected
    baseline = statistics.median(sizes[:BASELINE_SAMPLES])
    growth = sorted(size - baseline for size in sizes)
    slope = statistics.linear_regression(sampled_at, sizes).slope
    return {
        "cycles": CYCLES,
        "polls": polls,
        "faults": kinds["error"],
        "created": kinds["created"],
        "updated": kinds["updated"],
        "samples": len(sizes),
        "sampled_polls": sampled_at[-1] - sampled_at[0],
        "p90_growth_bytes": int(growth[len(growth) * 9 // 10]),
        "max_growth_bytes": int(growth[-1]),
        "slope_bytes_per_poll": round(slope, 1),
    }
