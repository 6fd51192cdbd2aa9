"""Fleet on Redis, side by side with the in-process watch (``python -m benchmarks.fleet``).

Every figure is measured in one run on this machine against a real ``redis-server`` and
``FakeACPServer`` on loopback; the targets are ratios or sizes, never absolute speeds.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from acp_async import ACPClient, AgentRunList, _converter, _json
from acp_async._watch import Watcher, WatchState
from acp_async._watch._diff import diff
from acp_async._watch._poll import poll
from acp_async._watch._settle import settle
from acp_async._watch._state import ServerState, body_digest
from acp_async.fleet import RedisFleet
from acp_async.fleet._store import RedisStore
from acp_async.testing import FakeACPServer, instant_backoff

from .payload import make_run

STATE_KEYS = ("due", "claims", "state", "failing", "workers", "seq")


def redis_server() -> contextlib.AbstractContextManager[Any]:
    """A redis-server of the tests' fixture class, stopped on the way out."""
    from tests.redis_server import RedisServer  # noqa: PLC0415 - the tests' own fixture class

    return _started(RedisServer)


def redis_cluster() -> contextlib.AbstractContextManager[Any]:
    """A local 3-master Redis Cluster (the tests' fixture class), stopped on the way out."""
    from tests.redis_server import RedisCluster  # noqa: PLC0415 - the tests' own fixture class

    return _started(RedisCluster)


@contextlib.contextmanager
def _started(deployment: Callable[[Path], Any]) -> Iterator[Any]:
    """``deployment`` made in a temporary directory, started, and stopped at the end."""
    from tests.redis_server import running  # noqa: PLC0415 - the tests' own fixtures

    with tempfile.TemporaryDirectory() as directory, running(deployment(Path(directory))) as it:
        yield it


def _cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _page(runs: int, output: int) -> dict[str, Any]:
    items = [{**make_run(i), "output": "x" * output, "status": "completed"} for i in range(runs)]
    return {"serverId": "srv", "object": "list", "data": items}


# -- 1. polls per second and round trips -------------------------------------------------


class _RoundTrips:
    """Counts the worker's Redis round trips (each one script call)."""

    def __init__(self) -> None:
        self.count = 0
        self._original = RedisStore.round_trip

    def __enter__(self) -> _RoundTrips:
        original = self._original

        async def counted(store: RedisStore, *args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return await original(store, *args, **kwargs)

        RedisStore.round_trip = counted  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        RedisStore.round_trip = self._original  # type: ignore[method-assign]


async def _window(fake: FakeACPServer, warm: float, seconds: float) -> float:
    """Polls per second the fake saw over ``seconds`` after ``warm`` seconds."""
    await asyncio.sleep(warm)
    fake.reset_stats()
    started = time.monotonic()
    await asyncio.sleep(seconds)
    return len(fake.requests) / (time.monotonic() - started)


async def _inprocess_rate(fake: FakeACPServer, seconds: float, concurrency: int) -> float:
    async with ACPClient(fake.token, base_url=fake.base_url) as client:
        stream = client.runs.watch(
            fake.server_ids, interval=0.005, limit=50, concurrency=concurrency
        )

        async def drain() -> None:
            async for _ in stream:
                pass

        task = asyncio.create_task(drain())
        try:
            return await _window(fake, seconds / 3, seconds)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await stream.aclose()


async def _redis_rate(
    fake: FakeACPServer, url: str, name: str, seconds: float, concurrency: int
) -> tuple[float, float, float]:
    """(polls/s, round trips per poll, Redis commands per poll)."""
    async with (
        ACPClient(fake.token, base_url=fake.base_url) as client,
        RedisFleet(url, name=name, interval=0.005, lease=10.0, max_events=10_000) as fleet,
    ):
        await fleet.add(fake.server_ids)
        redis = fleet._store._redis  # type: ignore[union-attr]
        with _RoundTrips() as trips:
            task = asyncio.create_task(fleet.work(client, concurrency=concurrency))
            try:
                await asyncio.sleep(seconds / 3)
                fake.reset_stats()
                trips.count = 0
                before = (await redis.info("stats"))["total_commands_processed"]
                started = time.monotonic()
                await asyncio.sleep(seconds)
                elapsed = time.monotonic() - started
                polls = len(fake.requests)
                rounds = trips.count
                after = (await redis.info("stats"))["total_commands_processed"]
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await fleet.remove(fake.server_ids)
    return polls / elapsed, rounds / max(1, polls), (after - before - 1) / max(1, polls)


def throughput(servers: int, seconds: float, reps: int, url: str) -> dict[str, Any]:
    """The same fake fleet (busy runs, unchanged pages), watched in-process or by one
    worker on Redis, alternating; the ratio's median is the overhead."""

    async def measure() -> dict[str, Any]:
        inproc: list[float] = []
        redis: list[float] = []
        trips: list[float] = []
        commands: list[float] = []
        async with FakeACPServer(servers=servers, runs_per_server=5, seed=1) as fake:
            for sid in fake.server_ids:
                for run in fake.runs(sid):
                    fake.set_run(sid, run["id"], status="running")
            for rep in range(reps):
                inproc.append(await _inprocess_rate(fake, seconds, 16))
                rate, per_poll, cmds = await _redis_rate(fake, url, f"tp{rep}", seconds, 16)
                redis.append(rate)
                trips.append(per_poll)
                commands.append(cmds)
        ratios = [r / i for r, i in zip(redis, inproc, strict=True)]
        return {
            "inprocess_polls_per_s": statistics.median(inproc),
            "redis_polls_per_s": statistics.median(redis),
            "ratio": statistics.median(ratios),
            "ratios": ratios,
            "round_trips_per_poll": statistics.median(trips),
            "redis_commands_per_poll": statistics.median(commands),
        }

    with instant_backoff():
        return asyncio.run(measure())


# -- 2. state bytes per server -----------------------------------------------------------


async def _redis_state_bytes(url: str, servers: int, runs: int, output: int) -> float:
    name = f"mem{output}"
    async with FakeACPServer(servers=servers, runs_per_server=0, seed=2) as fake:
        for sid in fake.server_ids:
            for _ in range(runs):
                fake.add_run(sid, status="completed", output="x" * output)
        async with (
            ACPClient(fake.token, base_url=fake.base_url) as client,
            RedisFleet(url, name=name, interval=60.0, lease=30.0) as fleet,
        ):
            await fleet.add(fake.server_ids)
            task = asyncio.create_task(fleet.work(client, concurrency=16))
            try:
                async with asyncio.timeout(120):
                    while (await fleet.status()).stream_length < servers * runs:
                        await asyncio.sleep(0.05)
                    redis = fleet._store._redis  # type: ignore[union-attr]
                    while await redis.hlen(f"acp:{{{name}}}:state") < servers:
                        await asyncio.sleep(0.05)
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            redis = fleet._store._redis  # type: ignore[union-attr]
            total = 0
            for key in STATE_KEYS:
                total += await redis.memory_usage(f"acp:{{{name}}}:{key}", samples=0) or 0
            await fleet.remove(fake.server_ids)
    return total / servers


async def _inprocess_state_bytes(servers: int, runs: int, output: int) -> float:
    """Bytes per server as the marginal cost between a fleet of ``servers`` and one of
    half that, so one-off costs (first imports, generated code, the polls still being
    handed over when measured) do not count as per-server memory."""
    half = max(1, servers // 2)
    small = await _inprocess_held_bytes(half, runs, output)
    large = await _inprocess_held_bytes(servers, runs, output)
    return (large - small) / (servers - half)


async def _inprocess_held_bytes(servers: int, runs: int, output: int) -> float:
    page = _page(runs, output)
    ids = [f"srv_{i:06d}" for i in range(servers)]

    async def fetch(
        server_id: str, limit: int, parse: Callable[[Any], Any], peek: Any = None
    ) -> Any:
        return parse(page)

    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    state = WatchState()
    watcher = Watcher(fetch, ids, interval=60.0, limit=runs, concurrency=16, state=state)
    events = watcher.events()
    seen = 0
    async for _ in events:
        seen += 1
        if seen == servers * runs:
            break
    # Every server polled once and its events handed over; the next poll is a minute away.
    for _ in range(20):
        await asyncio.sleep(0)
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    await events.aclose()
    return held


def state_bytes(servers: int, url: str) -> dict[str, float]:
    """Bytes kept per server at limit=50: in Redis (all keys but the stream) and in-process."""
    with instant_backoff():
        return {
            "redis_5kb": asyncio.run(_redis_state_bytes(url, servers, 50, 5_000)),
            "inprocess_100b": asyncio.run(_inprocess_state_bytes(servers, 50, 100)),
            "inprocess_5kb": asyncio.run(_inprocess_state_bytes(servers, 50, 5_000)),
            "inprocess_50kb": asyncio.run(_inprocess_state_bytes(servers, 50, 50_000)),
        }


# -- 3. CPU of an unchanged poll ----------------------------------------------------------


def _without_a_loop(coroutine: Any) -> Any:
    """Run a coroutine that never waits (a fetch answering from memory) to its end."""
    try:
        coroutine.send(None)
    except StopIteration as finished:
        return finished.value
    raise RuntimeError("the poll waited for something")


def unchanged_cpu(loops: int, reps: int) -> dict[str, float]:
    """CPU of the engine's whole work on a poll whose 50 runs (5 KB outputs) did not
    change, as either store does it: the state unpacked from its bytes, ``poll`` given
    the body (digested, found equal to the last page's), ``settle`` (the next delay),
    the state packed again. Against structuring that page into models, and against
    decoding and structuring it (a poll without the watch's memory). All start from the
    same bytes."""
    page = _page(50, 5_000)
    body = _json.dumps(page)
    first = diff(_converter.page_items(page), ServerState())[0]
    first.page = body_digest(body)
    saved = first.pack()

    async def fetch(sid: str, limit: int, parse: Any, peek: Any = None) -> Any:
        seen = peek(body)
        return seen if seen is not None else parse(_json.loads(body))

    def unchanged() -> None:
        known = ServerState.unpack(saved)
        polled = _without_a_loop(poll(fetch, "srv", 50, known))
        assert not polled.items  # the page was not even decoded
        settle(known, polled, 1.0).state.pack()

    def structured() -> None:
        _converter.structure(page, AgentRunList)

    def decoded_and_structured() -> None:
        _converter.structure(_json.loads(body), AgentRunList)

    jobs = (unchanged, structured, decoded_and_structured)
    samples: list[list[float]] = [[] for _ in jobs]
    for _ in range(reps):
        for job, times in zip(jobs, samples, strict=True):
            started = time.process_time()
            for _ in range(loops):
                job()
            times.append((time.process_time() - started) / loops)
    return {
        "unchanged_us": statistics.median(samples[0]) * 1e6,
        "structure_us": statistics.median(samples[1]) * 1e6,
        "decode_structure_us": statistics.median(samples[2]) * 1e6,
        "ratio": statistics.median(u / s for u, s in zip(samples[0], samples[1], strict=True)),
        "ratio_with_decode": statistics.median(
            u / d for u, d in zip(samples[0], samples[2], strict=True)
        ),
    }


# -- 4. recovery after SIGKILL -------------------------------------------------------------


async def _worker(
    url: str, name: str, fake: FakeACPServer, *extra: str, cluster: bool = False
) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACP_", "COMPUTER_"))}
    env.update(ACP_API_KEY=fake.token, ACP_BASE_URL=fake.base_url, ACP_REDIS_URL=url)
    if cluster:
        env["ACP_REDIS_CLUSTER"] = "1"
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "acp_async", "fleet", "worker", "--fleet", name, *extra,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL, env=env,
    )  # fmt: skip


def recovery(
    url: str, servers: int, lease: float, interval: float, reps: int, *, concurrency: int
) -> dict[str, Any]:
    """Two workers; one is SIGKILLed: seconds until every server is polled again.

    The bound ``lease + interval`` holds by construction when the surviving worker can
    carry the whole fleet: a server the dead worker was polling was claimed before the
    kill, so it is due again at most ``lease`` later; any other server is due within
    ``interval * 1.2`` (jitter) of its last commit. ``concurrency`` must leave the
    survivor room for that: each poll takes ``interval / 2`` here, so a busy server
    cycles every ~1.5 intervals and ``servers`` of them keep ``servers / 3`` polls in
    flight. With fewer slots the survivor falls behind and the figure measures its
    queue, not the takeover (the first version of this benchmark did, with 8 slots for
    ~13 polls in flight: 2.41-2.54 s against 2.5 s).
    """

    async def once(rep: int) -> float:
        name = f"recovery{rep}"
        async with (
            FakeACPServer(servers=servers, runs_per_server=1, latency=interval / 2) as fake,
            RedisFleet(url, name=name) as fleet,
        ):
            for sid in fake.server_ids:
                fake.add_run(sid, status="running")  # busy: polled every interval
            await fleet.add(fake.server_ids)
            timing = ("--interval", str(interval), "--lease", str(lease))
            timing += ("--concurrency", str(concurrency))
            procs = [await _worker(url, name, fake, *timing) for _ in range(2)]
            first: dict[str, float] = {}
            try:
                async with asyncio.timeout(60):  # both started (on a busy machine, slowly)
                    while (await fleet.status()).workers < 2:
                        await asyncio.sleep(0.05)
                await asyncio.sleep(2 * lease + 1)  # both busy, each holding claims
                procs[0].send_signal(signal.SIGKILL)
                killed = time.monotonic()
                fake.reset_stats()
                # Until every server is polled again (bounded: a server never polled again
                # fails below); the figure is the last of those first polls.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(30.0, 10 * (lease + interval))):
                        while len(first) < servers:
                            await asyncio.sleep(interval / 10)
                            for request in fake.requests:
                                if request.server_id is not None:
                                    first.setdefault(request.server_id, request.started - killed)
            finally:
                for proc in procs:
                    if proc.returncode is None:
                        proc.send_signal(signal.SIGTERM)
                    await proc.wait()
            await fleet.remove(fake.server_ids)
        assert len(first) == servers, "a server was never polled again"
        return max(first.values())

    seconds = [asyncio.run(once(rep)) for rep in range(reps)]
    return {
        "lease": lease,
        "interval": interval,
        "concurrency": concurrency,
        "seconds": seconds,
        "max": max(seconds),
    }


# -- 5. scale ------------------------------------------------------------------------------


async def _commands(urls: Sequence[str]) -> int:
    """Commands the Redis servers at ``urls`` (a cluster's nodes) have run so far."""
    total = 0
    for url in urls:
        async with aioredis.Redis.from_url(url) as node:
            total += (await node.info("stats"))["total_commands_processed"]
    return total


def scale(
    url: str,
    nodes: Sequence[tuple[str, int]],
    servers: int,
    workers: int,
    seconds: float,
    *,
    names: Sequence[str] = ("scale",),
    cluster: bool = False,
) -> dict[str, Any]:
    """``servers`` busy servers split over the fleets ``names``, ``workers`` worker
    processes taking the fleets in turn, interval 1 s: what one run of this machine
    sustains (the fake server shares the two cores). ``nodes``: each Redis server's URL
    and pid (a cluster's masters), whose commands and CPU are counted."""

    async def measure() -> dict[str, Any]:
        async with (
            FakeACPServer(servers=servers, runs_per_server=1, seed=3) as fake,
            contextlib.AsyncExitStack() as stack,
        ):
            fleets = [
                await stack.enter_async_context(
                    RedisFleet(url, name=name, interval=1.0, cluster=cluster)
                )
                for name in names
            ]
            for sid in fake.server_ids:
                fake.set_run(sid, fake.runs(sid)[0]["id"], status="running")
            for i, fleet in enumerate(fleets):
                await fleet.add(fake.server_ids[i :: len(fleets)])
            timing = ("--interval", "1", "--lease", "30", "--concurrency", "32")
            procs = [
                await _worker(url, names[i % len(names)], fake, *timing, cluster=cluster)
                for i in range(workers)
            ]
            urls = [node_url for node_url, _ in nodes]
            pids = [pid for _, pid in nodes]
            try:
                await asyncio.sleep(seconds / 2)  # first polls: every run created
                fake.reset_stats()
                commands = await _commands(urls)
                cpu = [*map(_cpu_seconds, pids), *(_cpu_seconds(p.pid) for p in procs)]
                own = time.process_time()
                started = time.monotonic()
                await asyncio.sleep(seconds)
                elapsed = time.monotonic() - started
                polls = len(fake.requests)
                commands = await _commands(urls) - commands
                cpu_after = [*map(_cpu_seconds, pids), *(_cpu_seconds(p.pid) for p in procs)]
                own = time.process_time() - own
                overdue = sum([(await fleet.status()).overdue for fleet in fleets])
            finally:
                for proc in procs:
                    proc.send_signal(signal.SIGTERM)
                    await proc.wait()
            state = 0
            for fleet in fleets:
                redis = fleet._store._redis  # type: ignore[union-attr]
                for key in STATE_KEYS:
                    state += await redis.memory_usage(f"acp:{{{fleet.name}}}:{key}", samples=0) or 0
            for i, fleet in enumerate(fleets):
                await fleet.remove(fake.server_ids[i :: len(fleets)])
        used = [b - a for a, b in zip(cpu, cpu_after, strict=True)]
        redis_cpu = sum(used[: len(pids)])
        worker_cpu = sum(used[len(pids) :])
        return {
            "servers": servers,
            "workers": workers,
            "fleets": len(names),
            "polls_per_s": polls / elapsed,
            "redis_commands_per_s": commands / elapsed,
            "redis_cpu": redis_cpu / elapsed,
            "workers_cpu": worker_cpu / elapsed,
            "fake_server_cpu": own / elapsed,
            "worker_cpu_ms_per_poll": worker_cpu / max(1, polls) * 1e3,
            "redis_cpu_us_per_poll": redis_cpu / max(1, polls) * 1e6,
            "redis_commands_per_poll": commands / max(1, polls),
            "state_bytes_per_server": state / servers,
            "overdue": overdue,
        }

    with instant_backoff():
        return asyncio.run(measure())


def estimate(
    scale_result: dict[str, Any], servers: int = 1_000_000, every: float = 60.0
) -> dict[str, float]:
    """From the measured per-poll costs: what ``servers`` polled every ``every`` s needs."""
    polls = servers / every
    return {
        "polls_per_s": polls,
        "worker_cores": polls * scale_result["worker_cpu_ms_per_poll"] / 1e3,
        "redis_cores": polls * scale_result["redis_cpu_us_per_poll"] / 1e6,
        "redis_commands_per_s": polls * scale_result["redis_commands_per_poll"],
        "state_gb": servers * scale_result["state_bytes_per_server"] / 1e9,
    }
