"""Fleet workers as users run them: CLI processes against a FakeACPServer and a real Redis.

Workers are killed, added, paused past their lease and resumed; Redis is stopped and
killed under them. Afterwards the stream must hold every run as created exactly once,
each run's final status last, no key twice and no status going backwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from acp_async.fleet import FleetEvent, RedisFleet
from acp_async.testing import FakeACPServer

from .cli_processes import kill_group, log_text, start_logged
from .conftest import every_deployment, wait_until
from .redis_server import FleetRedis, RedisServer
from .test_cli import cli_env, run
from .test_fleet import polled_again

INTERVAL = 0.05
LEASE = 0.6
ORDER = {"queued": 0, "running": 1, "completed": 2, "failed": 2, "cancelled": 2}


class Workers:
    """``acp-async fleet worker`` processes, stderr kept in files."""

    lease, concurrency = LEASE, 4  # a subclass may take others

    def __init__(
        self,
        redis: list[str],
        fleet: str,
        fake: FakeACPServer,
        logs: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        self.redis, self.fleet, self.fake, self.logs = redis, fleet, fake, logs
        self.env = env or {}
        self.procs: list[asyncio.subprocess.Process] = []

    def log(self, index: int) -> Path:
        return self.logs / f"worker-{index}.log"

    async def start(self) -> asyncio.subprocess.Process:
        """One more worker; ``-v``: its retries (Redis gone) are in its log."""
        proc = await start_logged(
            "fleet", "worker", *self.redis,
            "--fleet", self.fleet,
            "--interval", str(INTERVAL),
            "--lease", str(self.lease),
            "--concurrency", str(self.concurrency),
            "-v",
            log=self.log(len(self.procs)), env=cli_env(self.fake, **self.env),
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    async def stop_all(self) -> list[int]:
        """SIGTERM each live worker; their exit codes (killed ones excluded)."""
        codes = []
        for proc in self.procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGCONT)
                    proc.send_signal(signal.SIGTERM)
                codes.append(await asyncio.wait_for(proc.wait(), 15))
        return codes

    async def kill_all(self) -> None:
        for proc in self.procs:
            await kill_group(proc)


@contextlib.asynccontextmanager
async def workers(
    redis: list[str],
    fleet: str,
    fake: FakeACPServer,
    logs: Path,
    env: dict[str, str] | None = None,
) -> AsyncIterator[Workers]:
    """``fleet worker`` processes; ``redis``: their Redis options (``--redis URL`` ...),
    ``env``: more variables (``ACP_REDIS_*``)."""
    group = Workers(redis, fleet, fake, logs, env)
    try:
        yield group
    finally:
        await group.kill_all()


class Stream:
    """Reads the whole stream through a consumer group of its own, in order."""

    def __init__(self, fleet: RedisFleet, before: list[FleetEvent] | None = None) -> None:
        self.fleet = fleet
        self.events: list[FleetEvent] = list(before or ())  # read by an earlier reader
        self._stream = fleet.events("check", "checker", block=0.05)

    async def until(self, done: object, timeout: float = 30.0) -> None:
        async with asyncio.timeout(timeout):
            while not done():  # type: ignore[operator]
                event = await anext(self._stream)
                self.events.append(event)
                await self.fleet.ack("check", event)

    async def caught_up(self, fake: FakeACPServer, timeout: float = 30.0) -> None:
        """Until the stream's latest status of every run is the fake's; says what lags."""
        expected = fake_statuses(fake)
        try:
            await self.until(lambda: self.latest() == expected, timeout)
        except TimeoutError:
            seen = self.latest()
            lagging = {
                run: (seen.get(run), status)
                for run, status in expected.items()
                if seen.get(run) != status
            }
            status = await self.fleet.status()
            raise AssertionError(f"stream behind: {lagging}; {status}") from None

    async def aclose(self) -> None:
        await self._stream.aclose()

    def latest(self) -> dict[tuple[str, str], str]:
        return {(e.server_id, str(e.run.id)): str(e.run.status) for e in self.events}


def fake_statuses(fake: FakeACPServer) -> dict[tuple[str, str], str]:
    return {(sid, r["id"]): r["status"] for sid in fake.server_ids for r in fake.runs(sid)}


def check_stream(events: list[FleetEvent], fake: FakeACPServer) -> None:
    """Created once, final status last, no key twice, no status backwards."""
    keys = [e.key for e in events]
    assert len(keys) == len(set(keys)), "a key appended twice"
    created: dict[tuple[str, str], int] = defaultdict(int)
    last: dict[tuple[str, str], str] = {}
    for event in events:
        run = (event.server_id, str(event.run.id))
        status = str(event.run.status)
        if event.kind == "created":
            created[run] += 1
            assert run not in last, f"updated before created: {run}"
        else:
            assert run in last, f"updated before created: {run}"
            assert str(event.previous_status) == last[run], f"previous is not the last: {run}"
            assert ORDER[status] >= ORDER[last[run]], f"status went backwards: {run}"
        last[run] = status
    expected = fake_statuses(fake)
    assert dict(created) == dict.fromkeys(expected, 1), "a run not created exactly once"
    assert last == expected, "a run's final status is not its last event"


async def churn(fake: FakeACPServer, rng: random.Random, steps: int) -> None:
    """Runs are created and progress while the workers poll."""
    for _ in range(steps):
        sid = rng.choice(fake.server_ids)
        if rng.random() < 0.4:
            fake.add_run(sid, status="queued")
        else:
            fake.advance(sid)
        await asyncio.sleep(0.01)


def met_the_outage(group: Workers, index: int) -> bool:
    """The worker's log says Redis was gone and it retries."""
    return "is unavailable" in log_text(group.log(index))


async def lease_over(fleet: RedisFleet, lease: float) -> None:
    """Until ``lease`` seconds have passed on Redis's clock (the clock leases are kept on)."""
    store = fleet._store
    assert store is not None
    redis = store._redis
    seconds, micros = await redis.time()
    end = seconds + micros / 1e6 + lease
    async with asyncio.timeout(lease + 10):
        while True:
            seconds, micros = await redis.time()
            if seconds + micros / 1e6 >= end:
                return
            await asyncio.sleep(0.02)


async def wait_for_workers(fleet: RedisFleet, count: int) -> None:
    async with asyncio.timeout(20):
        while (await fleet.status()).workers < count:
            await asyncio.sleep(0.02)


@every_deployment
async def test_workers_killed_added_and_paused_lose_and_double_nothing(
    fleet_redis: FleetRedis, fleet_name: str, tmp_path: Path, no_backoff: None
) -> None:
    """SIGKILL one of three workers, add one, SIGSTOP one past its lease and resume it."""
    rng = random.Random(9)
    async with (
        FakeACPServer(servers=12, runs_per_server=3, seed=4) as fake,
        fleet_redis.fleet(fleet_name, interval=INTERVAL, lease=LEASE) as fleet,
        workers(fleet_redis.args, fleet_name, fake, tmp_path) as group,
    ):
        await fleet.add(fake.server_ids)
        first = [await group.start() for _ in range(3)]
        stream = Stream(fleet)
        try:
            await wait_for_workers(fleet, 3)
            await churn(fake, rng, 30)
            first[0].kill()  # SIGKILL: its claims expire after the lease
            await churn(fake, rng, 30)
            await group.start()
            await churn(fake, rng, 30)
            first[1].send_signal(signal.SIGSTOP)  # a zombie past its lease
            await churn(fake, rng, 40)
            await asyncio.sleep(LEASE * 1.5)
            first[1].send_signal(signal.SIGCONT)
            await churn(fake, rng, 30)
            fake.advance(steps=2)  # every run ends
            await stream.caught_up(fake)
            # Two more polls of each server: the first is committed (or fenced) before the
            # second is claimed. Then every worker exits, and the stream, now final, is
            # read to its end: check_stream sees every entry ever appended.
            await polled_again(fake, fake.server_ids, 1, within=30)
            codes = await group.stop_all()
            appended = (await fleet.status()).stream_length
            await stream.until(lambda: len(stream.events) >= appended)
        finally:
            await stream.aclose()
    assert codes == [0, 0, 0]  # SIGTERM: claims released, exit 0
    assert len(fake_statuses(fake)) > 36  # runs were created while the workers worked
    check_stream(stream.events, fake)


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_workers_ride_out_a_redis_restart(
    tmp_path: Path, fleet_name: str, how: str, no_backoff: None
) -> None:
    """Redis stopped (or SIGKILLed under appendfsync always) and restarted: workers keep
    running, catch up, and the stream still holds each change once."""
    redis = RedisServer(tmp_path, fsync="always")
    redis.start()
    rng = random.Random(3)
    try:
        async with (
            FakeACPServer(servers=6, runs_per_server=2, seed=8) as fake,
            workers(["--redis", redis.url], fleet_name, fake, tmp_path) as group,
        ):
            async with RedisFleet(redis.url, name=fleet_name, interval=INTERVAL) as fleet:
                await fleet.add(fake.server_ids)
                procs = [await group.start() for _ in range(2)]
                await wait_for_workers(fleet, 2)
                stream = Stream(fleet)
                await stream.until(lambda: len(stream.events) >= 12)
                await stream.aclose()
                before = stream.events
            if how == "stop":
                redis.stop()
            else:
                redis.kill()
            await churn(fake, rng, 30)  # changes while Redis is away
            # Each worker meets the outage (its log says it retries), and keeps running.
            await wait_until(lambda: all(met_the_outage(group, i) for i in range(2)), 20)
            assert all(proc.returncode is None for proc in procs), "a worker exited"
            redis.start()
            await churn(fake, rng, 20)
            fake.advance(steps=2)
            async with RedisFleet(redis.url, name=fleet_name, interval=INTERVAL) as fleet:
                stream = Stream(fleet, before)
                try:
                    await stream.caught_up(fake)
                finally:
                    await stream.aclose()
            codes = await group.stop_all()
    finally:
        redis.kill()
    assert codes == [0, 0]
    check_stream(stream.events, fake)


@every_deployment
async def test_add_and_remove_while_workers_run(
    fleet_redis: FleetRedis, fleet_name: str, tmp_path: Path, no_backoff: None
) -> None:
    """`fleet add` is picked up by running workers; after `fleet remove` a server is no
    longer polled once an interval has passed. (The commands find Redis in ACP_REDIS_*.)"""
    async with (
        FakeACPServer(servers=3, runs_per_server=1, seed=2) as fake,
        fleet_redis.fleet(fleet_name, interval=INTERVAL) as fleet,
        workers(fleet_redis.args, fleet_name, fake, tmp_path) as group,
    ):
        first, second, later = fake.server_ids
        for sid in fake.server_ids:
            fake.add_run(sid, status="running")  # busy: polled every interval
        env = cli_env(fake, **fleet_redis.env)
        added = await run("fleet", "add", first, second, "--fleet", fleet_name, env=env)
        assert added.code == 0, added
        for _ in range(2):
            await group.start()
        stream = Stream(fleet)
        try:
            await stream.until(lambda: len(stream.events) >= 4)
            added = await run("fleet", "add", later, "--fleet", fleet_name, env=env)
            assert added.code == 0, added
            await stream.until(lambda: any(e.server_id == later for e in stream.events))
            removed = await run("fleet", "remove", first, "--fleet", fleet_name, env=env)
            assert removed.code == 0, removed
            assert "removed 1 of 1" in removed.out
            # A claim on `first` taken before the removal ends with its lease; none is
            # taken after it. Once the lease is over (on Redis's clock) and the polls of
            # `first` then on the wire have ended, no poll of it can start again.
            await lease_over(fleet, LEASE)
            await wait_until(
                lambda: all(r.finished for r in fake.requests if r.server_id == first), 10
            )
            fake.reset_stats()
            await polled_again(fake, [second, later], 5, within=30)
            polled = {r.server_id for r in fake.requests}
            status = await run("fleet", "status", "--json", "--fleet", fleet_name, env=env)
        finally:
            await stream.aclose()
        assert await group.stop_all() == [0, 0]
    assert polled == {second, later}  # six polls each since, none of `first`
    assert status.code == 0, status
    assert status.json()[0]["servers"] == 2
