"""The Redis store: due times, fenced claims, compact state and the event stream.

Every key of a fleet shares the ``{name}`` hash tag, so the scripts run on Redis
Cluster too. Times are Redis's own clock (``TIME``), so workers' clocks never matter.

    acp:{name}:due      sorted set  server id -> when it is due (a claim pushes it to now+lease)
    acp:{name}:claims   hash        server id -> claim token (a fencing counter)
    acp:{name}:seq      string      the fencing counter
    acp:{name}:state    hash        server id -> "<token of its last commit>:<packed state>"
    acp:{name}:failing  set         servers whose last poll failed
    acp:{name}:workers  sorted set  worker id -> until when it counts as a worker (two of its
                                    leases after it last claimed or committed)
    acp:{name}:events   stream      key, kind, server, run (JSON), previous (status)
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import attrs
import redis.asyncio as aioredis
from redis.exceptions import BusyLoadingError, ConnectionError, ReadOnlyError, TimeoutError

from .._log import log
from .._retry import Backoff
from ._state import ServerState, UnreadableState

__all__ = ("REDIS_BACKOFF", "REDIS_UNAVAILABLE", "Claim", "Commit", "RedisStore", "Trip")

# What a worker or consumer waits out: Redis down, restarting (loading its AOF), or a
# replica that was a primary before a failover.
REDIS_UNAVAILABLE = (ConnectionError, TimeoutError, BusyLoadingError, ReadOnlyError, OSError)
# Between tries while Redis is away: full jitter from 0.1 s, doubling, up to 5 s (the
# exponent is capped, so an outage of any length never overflows a float).
REDIS_BACKOFF = Backoff(first=0.1, cap=5.0)


def stop_if_cancelled() -> None:
    """Raise the cancellation that a Redis command swallowed: a loop that awaits Redis
    calls this each turn, so SIGTERM (or a consumer's cancel) still ends it.

    On Python 3.11, redis-py sends through ``asyncio.wait_for``, which loses a
    cancellation that arrives as the send completes (fixed in 3.12, where ``wait_for``
    is built on ``asyncio.timeout``); the task still says it is being cancelled. See
    docs/redis8-hang.md."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
"""

# One script, one round trip: hand back claims, commit finished polls, claim due servers.
# KEYS due claims state events failing workers seq
# ARGV worker maxlen lease claim-count commit-count release-count, then per release: its
# server id and token; then per commit: its server id and "<token> <delay> <failed 0|1>
# <event count> <packed state>", then per event: key kind run previous. (Two arguments a
# commit, not six: redis-py's encoding is per argument.)
# Returns {now, next due ('' unless nothing was due), how many were released, commit
# results..., claims...}, a claim being sid token due saved-state.
_COMMIT_AND_CLAIM = (
    _NOW
    + """
local due, claims, state, events, failing, workers, seq = unpack(KEYS)
local lease = tonumber(ARGV[3])
if tonumber(ARGV[4]) > 0 or tonumber(ARGV[5]) > 0 then  -- a worker at work, not stopping
  redis.call('ZADD', workers, now + 2 * lease, ARGV[1])
  redis.call('ZREMRANGEBYSCORE', workers, '-inf', now - 100 * lease)  -- long gone
end
local out = {string.format('%.6f', now), '', 0}
local i = 7
for r = 1, tonumber(ARGV[6]) do  -- released: due at once, so any worker takes it now
  if redis.call('HGET', claims, ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', claims, ARGV[i])
    redis.call('ZADD', due, 'XX', now, ARGV[i])
    out[3] = out[3] + 1
  end
  i = i + 2
end
for s = 1, tonumber(ARGV[5]) do
  local sid, head = ARGV[i], ARGV[i + 1]
  local _, stop, token, delay, failed, count = string.find(head, '^(%d+) (%S+) ([01]) (%d+) ')
  local blob = string.sub(head, stop + 1)
  delay, count = tonumber(delay), tonumber(count)
  i = i + 2
  -- Still ours: the claim's token, and its lease (the due time it set) not over yet.
  local held = redis.call('HGET', claims, sid) == token
  if held then
    local lease_ends = tonumber(redis.call('ZSCORE', due, sid))  -- nil: no longer due at all
    held = lease_ends ~= nil and lease_ends >= now  -- else a zombie, taken over or not
  end
  if held then
    for e = 1, count do
      redis.call('XADD', events, 'MAXLEN', '~', ARGV[2], '*', 'key', ARGV[i], 'kind', ARGV[i + 1],
                 'server', sid, 'run', ARGV[i + 2], 'previous', ARGV[i + 3])
      i = i + 4
    end
    redis.call('HSET', state, sid, token .. ':' .. blob)
    redis.call('ZADD', due, 'XX', now + delay, sid)
    redis.call('HDEL', claims, sid)
    if failed == '1' then
      redis.call('SADD', failing, sid)
    else
      redis.call('SREM', failing, sid)
    end
    table.insert(out, 'ok')
  else
    i = i + 4 * count
    local saved = redis.call('HGET', state, sid)
    if saved and string.sub(saved, 1, #token + 1) == token .. ':' then
      table.insert(out, 'done')
    else
      table.insert(out, 'fenced')
    end
  end
end
local wanted = tonumber(ARGV[4])
if wanted <= 0 then
  return out
end
local ids = redis.call('ZRANGEBYSCORE', due, '-inf', now, 'WITHSCORES', 'LIMIT', 0, wanted)
if #ids == 0 then
  local first = redis.call('ZRANGE', due, 0, 0, 'WITHSCORES')
  out[2] = first[2] or ''
  return out
end
local until_ = now + lease
for c = 1, #ids, 2 do
  local sid = ids[c]
  local token = tostring(redis.call('INCR', seq))
  redis.call('ZADD', due, until_, sid)
  redis.call('HSET', claims, sid, token)
  table.insert(out, sid)
  table.insert(out, token)
  table.insert(out, ids[c + 1])
  table.insert(out, redis.call('HGET', state, sid) or '')
end
return out
"""
)

# KEYS due; ARGV sid ...
_ADD = (
    _NOW
    + """
local added = 0
for i = 1, #ARGV do
  added = added + redis.call('ZADD', KEYS[1], 'NX', now, ARGV[i])
end
return added
"""
)

# KEYS due claims state failing; ARGV sid ...
_REMOVE = """
local removed = 0
for i = 1, #ARGV do
  removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  redis.call('HDEL', KEYS[2], ARGV[i])
  redis.call('HDEL', KEYS[3], ARGV[i])
  redis.call('SREM', KEYS[4], ARGV[i])
end
return removed
"""

# KEYS due workers failing events; ARGV interval
_STATUS = (
    _NOW
    + """
local overdue_before = now - tonumber(ARGV[1])
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local oldest = ''
if first[2] and tonumber(first[2]) < overdue_before then
  oldest = string.format('%.6f', now - tonumber(first[2]))
end
return {
  redis.call('ZCARD', KEYS[1]),
  redis.call('ZCOUNT', KEYS[2], now, '+inf'),
  redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. string.format('%.6f', overdue_before)),
  oldest,
  redis.call('SCARD', KEYS[3]),
  redis.call('XLEN', KEYS[4]),
}
"""
)


@attrs.frozen
class Claim:
    """A server this worker holds until its lease ends: the token fences its commit."""

    server_id: str
    token: bytes
    late: float  # how long after it was due it was claimed, on Redis's clock
    state: ServerState
    expires: float  # when the lease ends, on this process's loop clock (a little early)
    arrived: float  # when the claim's reply came, on the same clock


@attrs.frozen
class Commit:
    """One poll's outcome, ready to write: the new state, the events, the next delay."""

    claim: Claim
    state: bytes
    delay: float
    failed: bool
    events: Sequence[tuple[str, str, bytes, str]]  # key, kind, run JSON, previous status


@attrs.frozen
class Trip:
    """What one round trip sends: claims handed back, commits, how many servers to claim."""

    commits: Sequence[Commit] = ()
    claim: int = 0
    releases: Sequence[Claim] = ()


def _trip_args(worker: str, max_events: int, lease: float, trip: Trip) -> list[Any]:
    commits, releases = trip.commits, trip.releases
    args: list[Any] = [worker, max_events, repr(lease), trip.claim, len(commits), len(releases)]
    for claim in releases:
        args += [claim.server_id, claim.token]
    for commit in commits:
        claim = commit.claim
        head = b"%s %r %d %d " % (claim.token, commit.delay, commit.failed, len(commit.events))
        args += [claim.server_id, head + commit.state]
        for event in commit.events:
            args.extend(event)
    return args


def _saved_state(server_id: str, saved: bytes) -> ServerState:
    """A claimed server's state; one that cannot be read (written by something else, or
    a newer format) starts afresh, logged, where failing would stop every worker that
    claims it: its runs are reported again as "created", those never updated under the
    keys they had (consumers dedupe on them)."""
    blob = saved.partition(b":")[2] if saved else b""
    if not blob:
        return ServerState()
    try:
        return ServerState.unpack(blob)
    except UnreadableState as exc:
        log.warning(
            "fleet: the saved state of %s cannot be read (%s); starting afresh", server_id, exc
        )
        return ServerState()


@attrs.frozen
class FleetStatus:
    """How the fleet is doing, as ``RedisFleet.status()`` returns it.

    Attributes:
        servers: servers in the fleet.
        workers: workers that claimed or committed within the last two leases.
        overdue: servers due more than one ``interval`` ago and not claimed.
        oldest_overdue: seconds the most overdue server has waited beyond that.
        failing: servers whose last poll failed.
        stream_length: events in the stream.
        pending: unacknowledged events per consumer group.

    Public as ``acp_async.fleet.FleetStatus``; defined here, where it is read."""

    servers: int
    workers: int
    overdue: int
    oldest_overdue: float
    failing: int
    stream_length: int
    pending: dict[str, int] = attrs.Factory(dict)


class RedisStore:
    """The fleet's keys and the scripts that change them, one round trip each."""

    def __init__(self, client: aioredis.Redis, name: str) -> None:
        self.redis = client
        tag = f"acp:{{{name}}}:"
        self.due, self.claims, self.seq = tag + "due", tag + "claims", tag + "seq"
        self.state, self.failing = tag + "state", tag + "failing"
        self.workers, self.events = tag + "workers", tag + "events"
        self._commit_and_claim = client.register_script(_COMMIT_AND_CLAIM)
        self._add = client.register_script(_ADD)
        self._remove = client.register_script(_REMOVE)
        self._status = client.register_script(_STATUS)

    async def round_trip(
        self, worker: str, trip: Trip, *, lease: float, max_events: int
    ) -> tuple[list[str], float, list[Claim], float | None]:
        """Hand back ``trip.releases``, write ``trip.commits`` and claim up to ``trip.claim``
        due servers (for ``lease`` seconds), in one round trip.

        Each commit is written only if its claim is still ours: ``ok``, ``done`` (written
        by an earlier try whose reply was lost) or ``fenced`` (the claim is gone). Then
        Redis's time, the claims, and (when none was due) when the next server is due.
        """
        # The leases begin on Redis after this moment: counted from here, they end early.
        expires = asyncio.get_running_loop().time() + lease
        reply = await self._script(worker, max_events, lease, trip)
        arrived = asyncio.get_running_loop().time()
        count = len(trip.commits)
        results = [r.decode() for r in reply[3 : 3 + count]]
        now = float(reply[0])
        next_due = float(reply[1]) if reply[1] else None
        claims = []
        for i in range(3 + count, len(reply), 4):
            sid, token, due, saved = reply[i : i + 4]
            server_id = sid.decode()
            late = max(0.0, now - float(due))
            state = _saved_state(server_id, saved)
            claims.append(Claim(server_id, token, late, state, expires, arrived))
        return results, now, claims, next_due

    async def release(self, claims: Sequence[Claim]) -> int:
        """Hand claims back (due at once); how many were still ours."""
        if not claims:
            return 0
        reply = await self._script("", 0, 0.0, Trip(releases=claims))
        return int(reply[2])

    async def _script(self, worker: str, max_events: int, lease: float, trip: Trip) -> list[Any]:
        keys = [
            self.due, self.claims, self.state, self.events, self.failing, self.workers, self.seq
        ]  # fmt: skip
        args = _trip_args(worker, max_events, lease, trip)
        reply: list[Any] = await self._commit_and_claim(keys=keys, args=args)
        return reply

    async def add(self, server_ids: Sequence[str]) -> int:
        return int(await self._add(keys=[self.due], args=list(server_ids))) if server_ids else 0

    async def remove(self, server_ids: Sequence[str]) -> int:
        if not server_ids:
            return 0
        keys = [self.due, self.claims, self.state, self.failing]
        return int(await self._remove(keys=keys, args=list(server_ids)))

    async def server_ids(self) -> set[str]:
        return {sid.decode() async for sid, _ in self.redis.zscan_iter(self.due, count=1000)}

    async def status(self, interval: float) -> FleetStatus:
        """Everything but ``pending`` (the consumer groups' part, read by the fleet)."""
        keys = [self.due, self.workers, self.failing, self.events]
        reply = await self._status(keys=keys, args=[repr(interval)])
        servers, workers, overdue, oldest, failing, length = reply
        return FleetStatus(
            int(servers),
            int(workers),
            int(overdue),
            float(oldest) if oldest else 0.0,
            int(failing),
            int(length),
        )
