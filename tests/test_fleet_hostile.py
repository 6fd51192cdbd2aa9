"""A hostile Redis: entries the fleet did not write never stop it.

Due-set members that are not server ids are dropped (logged once per fleet, by the
worker whose removal succeeded); a saved state that cannot be read is a failing poll and
the server starts afresh; stream entries that cannot be events are skipped, logged with
their id and acknowledged, the good ones of the same batch still yielded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from acp_async import ACPClient
from acp_async.fleet import RedisFleet
from acp_async.metrics import PrometheusMetrics
from acp_async.testing import FakeACPServer

from .cli_processes import Logged, log_text, logged
from .conftest import wait_until
from .redis_server import RedisServer
from .test_cli import cli_env
from .test_fleet_processes import ORDER, Workers, churn, fake_statuses, wait_for_workers

HEALTHY = 50
VICTIMS = 12  # servers added with a saved state that cannot be read
LEASE = 3.0  # long enough that no claim of these tests is fenced (a bad entry read twice)
# Unreadable saved states, each "<token>:<value>" or not even that.
BAD_STATES = [b"junk", b"7:", b"7:" + bytes(5), b"7:\xf0" + bytes(20), b"x:\x31" + bytes(12)]


def shown(member: bytes) -> str:
    """A due member as the workers' log line writes it."""
    try:
        return repr(member.decode())
    except UnicodeDecodeError:
        return repr(member)


class LongLeaseWorkers(Workers):
    """CLI workers with this module's lease, so no claim is fenced and read twice."""

    lease, concurrency = LEASE, 8


class Consumer(Logged):
    """``acp-async fleet events --json -v``: its events as read, its stderr kept."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        super().__init__(proc, log)
        self.events: list[dict[str, Any]] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            self.events.append(json.loads(line))

    def latest(self, servers: set[str]) -> dict[tuple[str, str], str]:
        return {
            (e["serverId"], e["run"]["id"]): e["run"]["status"]
            for e in self.events
            if e["serverId"] in servers
        }

    async def stop(self) -> int:
        code = await super().stop()
        await self._reader
        return code


@contextlib.asynccontextmanager
async def consumer(redis_url: str, fleet: str, log: Path) -> AsyncIterator[Consumer]:
    async with logged(
        "fleet", "events", "--json", "-v",
        "--redis", redis_url, "--fleet", fleet, "--group", "check", "--consumer", "c1",
        log=log, env=cli_env(), stdout=asyncio.subprocess.PIPE,
    ) as proc:  # fmt: skip
        yield Consumer(proc, log)


class Hostile:
    """Writes bad entries into a fleet's keys, and remembers each one it wrote."""

    def __init__(self, redis: aioredis.Redis, fleet: str, victims: list[str]) -> None:
        self.redis = redis
        self.key = f"acp:{{{fleet}}}:"
        self.victims = list(victims)
        self.due: Counter[bytes] = Counter()  # member -> times it was added afresh
        self.states: list[str] = []  # servers added with an unreadable saved state
        self.stream: list[str] = []  # ids of undecodable stream entries

    async def step(self, rng: random.Random, n: int) -> None:
        what = rng.choice(["due", "due", "stream", "state"])
        if what == "due":
            member = rng.choice([b"", b".", b"..", b"\xff\xfe-%d" % n, b"bad-\xc3(%d" % n])
            if await self.redis.zadd(self.key + "due", {member: 0}, nx=True):
                self.due[member] += 1
        elif what == "stream":
            fields = rng.choice(
                [
                    {"junk": "1"},
                    {"key": "k", "kind": "deleted", "server": "s", "run": "{}", "previous": ""},
                    {"key": "k", "kind": "created", "server": "s", "run": "{no", "previous": ""},
                    {"key": b"\xff", "kind": "created", "server": "s", "run": "{}", "previous": ""},
                    {"key": "k", "kind": "created", "server": "s", "run": "[1]", "previous": ""},
                ]
            )
            entry = await self.redis.xadd(self.key + "events", fields)  # type: ignore[arg-type]
            self.stream.append(entry.decode())
        elif self.victims:
            sid = self.victims.pop()
            await self.redis.hset(self.key + "state", sid, rng.choice(BAD_STATES))
            await self.redis.zadd(self.key + "due", {sid: 0})
            self.states.append(sid)

    def bad_due(self) -> list[bytes]:
        return list(self.due)


def count_in(logs: list[Path], text: str) -> int:
    return sum(log_text(path).count(text) for path in logs)


async def test_hostile_entries_never_stop_a_fleet(
    redis_server: RedisServer, fleet_name: str, tmp_path: Path
) -> None:
    """While 2 CLI workers watch 50 healthy servers whose runs progress, bad due members,
    unreadable saved states and undecodable stream entries are written for a while.
    Afterwards every healthy server's changes reached the consumer group exactly once
    (no key twice, each run created once, its final status last), no worker or consumer
    died, and each bad entry was logged exactly once across the workers (the consumer,
    for the stream)."""
    rng = random.Random(22)
    async with (
        FakeACPServer(servers=HEALTHY + VICTIMS, runs_per_server=1, seed=5) as fake,
        RedisFleet(redis_server.url, name=fleet_name, interval=0.05, lease=LEASE) as fleet,
        aioredis.Redis(port=redis_server.port) as raw,
    ):
        healthy, victims = fake.server_ids[:HEALTHY], fake.server_ids[HEALTHY:]
        await fleet.add(healthy)
        group = LongLeaseWorkers(["--redis", redis_server.url], fleet_name, fake, tmp_path)
        hostile = Hostile(raw, fleet_name, victims)
        try:
            procs = [await group.start() for _ in range(2)]
            async with consumer(redis_server.url, fleet_name, tmp_path / "events.log") as reader:
                await wait_for_workers(fleet, 2)
                for n in range(200):  # hostile writes among progressing runs
                    await hostile.step(rng, n)
                    await churn(fake, rng, 1)
                fake.advance(steps=2)  # every run ends
                expected = {k: v for k, v in fake_statuses(fake).items() if k[0] in healthy}
                await wait_until(lambda: reader.latest(set(healthy)) == expected, 60)
                await _until_dropped(raw, hostile)
                await _until_stream_skipped(reader, hostile)
                await _until_states_logged(group, hostile)
                assert all(proc.returncode is None for proc in procs), "a worker died"
                assert reader.proc.returncode is None, "the consumer died"
                codes = await group.stop_all()
                consumer_code = await reader.stop()
        finally:
            await group.kill_all()
    assert codes == [0, 0]
    assert consumer_code == 0
    # It did write: bad due members, bad stream entries, unreadable states.
    assert sum(hostile.due.values()) >= 10
    assert hostile.stream
    assert hostile.states
    check_once(reader.events, set(healthy), expected)
    logs = [group.log(0), group.log(1)]
    for member, added in hostile.due.items():
        line = f"dropped {shown(member)} from the fleet's due set"
        assert count_in(logs, line) == added, member
    for sid in hostile.states:
        assert count_in(logs, f"fleet: {sid}: its saved state in Redis cannot be read") == 1, sid
    for entry_id in hostile.stream:
        assert count_in([tmp_path / "events.log"], f"entry {entry_id} is malformed") == 1
    # A victim started afresh: its runs came (again) as created once its state was new.
    created = {(e["serverId"], e["run"]["id"]) for e in reader.events if e["kind"] == "created"}
    assert {k for k in fake_statuses(fake) if k[0] in hostile.states} <= created


async def _until_dropped(raw: aioredis.Redis, hostile: Hostile) -> None:
    """Until no bad member is left in the due set (the workers dropped each)."""
    key = hostile.key + "due"
    async with asyncio.timeout(30):
        while any([await raw.zscore(key, m) is not None for m in hostile.bad_due()]):
            await asyncio.sleep(0.02)


async def _until_stream_skipped(reader: Consumer, hostile: Hostile) -> None:
    """Until the consumer logged every bad stream entry."""
    await wait_until(
        lambda: all(
            f"entry {entry_id} is malformed" in reader.err() for entry_id in hostile.stream
        ),
        30,
    )


async def _until_states_logged(group: Workers, hostile: Hostile) -> None:
    """Until a worker logged every unreadable saved state."""
    logs = [group.log(0), group.log(1)]
    await wait_until(
        lambda: all(
            count_in(logs, f"fleet: {sid}: its saved state in Redis cannot be read") >= 1
            for sid in hostile.states
        ),
        30,
    )


def check_once(
    events: list[dict[str, Any]], servers: set[str], expected: dict[tuple[str, str], str]
) -> None:
    """The healthy servers' events: no key twice, each run created once, never updated
    before created, status never backwards, the final status last."""
    mine = [e for e in events if e["serverId"] in servers]
    keys = [e["key"] for e in mine]
    assert len(keys) == len(set(keys)), "a key reached the group twice"
    created: dict[tuple[str, str], int] = defaultdict(int)
    last: dict[tuple[str, str], str] = {}
    for event in mine:
        run = (event["serverId"], event["run"]["id"])
        status = event["run"]["status"]
        if event["kind"] == "created":
            created[run] += 1
        else:
            assert run in last, f"updated before created: {run}"
            assert event["previousStatus"] == last[run], run
            assert ORDER[status] >= ORDER[last[run]], f"status went backwards: {run}"
        last[run] = status
    assert dict(created) == dict.fromkeys(expected, 1), "a run not created exactly once"
    assert last == expected


async def test_bad_due_members_are_dropped_once_by_in_process_workers(
    redis_server: RedisServer, fleet_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Two workers in one process, one registry: each bad member is dropped and logged
    once, counted once in acp_fleet_dropped_entries_total{kind="due"}; the fleet's
    server ids never include one; `remove` still refuses them."""
    registry = CollectorRegistry()
    dropped = "acp_fleet_dropped_entries_total"
    bad = [b"", b".", b"..", b"\xff\xfe", b"x\xc3("]
    async with (
        FakeACPServer(servers=3, runs_per_server=1) as fake,
        RedisFleet(
            redis_server.url,
            name=fleet_name,
            interval=0.05,
            lease=LEASE,
            metrics=PrometheusMetrics(registry),
        ) as fleet,
        aioredis.Redis(port=redis_server.port) as raw,
        ACPClient(fake.token, base_url=fake.base_url) as client,
    ):
        await fleet.add(fake.server_ids)
        await raw.zadd(f"acp:{{{fleet_name}}}:due", dict.fromkeys(bad, 0))
        assert await fleet.server_ids() == set(fake.server_ids)
        with caplog.at_level("WARNING", logger="acp_async"):
            tasks = [asyncio.create_task(fleet.work(client, concurrency=2)) for _ in range(2)]
            try:
                await wait_until(
                    lambda: registry.get_sample_value(dropped, {"kind": "due"}) == len(bad), 10
                )
                await wait_until(lambda: len(fake.requests) >= 3, 10)
                assert not any(task.done() for task in tasks)
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        assert await raw.zcard(f"acp:{{{fleet_name}}}:due") == 3
        for member in (".", ".."):
            with pytest.raises(ValueError, match="server_id must be"):
                await fleet.remove([member])
    messages = [r.getMessage() for r in caplog.records]
    for member in bad:
        assert sum(f"dropped {shown(member)} from" in m for m in messages) == 1, messages
    assert registry.get_sample_value(dropped, {"kind": "due"}) == len(bad)
