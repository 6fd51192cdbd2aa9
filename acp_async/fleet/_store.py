"""The fleet's Redis store: every Redis command a fleet sends is sent from here.

Callers ask for a fleet's operations (a worker's round trip, add, remove, status, a
consumer's read, claim and ack), never for commands: key names, scripts and the shape of
replies stay in this module.

Every key of a fleet shares the ``{name}`` hash tag, so the scripts run on Redis
Cluster too. Times are Redis's own clock (``TIME``), so workers' clocks never matter.

    acp:{name}:due      sorted set  server id -> when it is due (a claim pushes it to now+lease)
    acp:{name}:claims   hash        server id -> claim token (a fencing counter)
    acp:{name}:seq      string      the fencing counter
    acp:{name}:state    hash        server id -> "<token of its last commit>:<packed state>"
    acp:{name}:failing  set         servers whose last poll failed
    acp:{name}:errors   hash        server id -> its last error (one escaped line); a
                                    failing server may have none (failing since before
                                    the release that added this key)
    acp:{name}:workers  sorted set  worker id -> until when it counts as a worker (two of its
                                    leases after it last claimed or committed)
    acp:{name}:events   stream      key, kind, server, run (JSON), previous (status)

The scripts are ``scripts/*.lua`` beside this module (package data), read once per
process. Each is a redis-py ``Script``: one ``EVALSHA`` a call, and on ``NOSCRIPT`` (a
Redis that has not seen it since it started) ``SCRIPT LOAD`` and the ``EVALSHA`` again,
so a script is loaded once per Redis server. No script goes through a pipeline
(redis-py's pipeline sends ``SCRIPT EXISTS`` before each one).

The store takes a ready client (``RedisStore(client, name)``, borrowed: never closed;
``owned=True``: closed by ``close()``), a ``redis.asyncio.Redis`` or ``RedisCluster``
(``_connection`` makes and checks them). No command goes through a pipeline, so nothing
is ever sent across slots.

What Redis's errors mean is decided elsewhere, once (``_classify.classify``): every call
here raises ``FleetRedisError`` for what no retry can fix and ``RedisUnavailableError``
for the rest, never a redis-py exception. Entries that are not the fleet's (a due member
that is not a valid server id, a state that cannot be read) are reported to the worker,
not raised.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator, Sequence
from importlib import resources
from typing import Any, NamedTuple, cast

import attrs
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from .. import _validate
from .._log import one_line
from .._watch._state import ServerState, UnreadableState
from . import _connection
from ._classify import classify
from ._errors import FleetRedisError
from .models import FleetStatus

__all__ = (
    "SCRIPTS",
    "Claim",
    "Commit",
    "Entry",
    "GroupMissing",
    "Keys",
    "RedisStore",
    "Reply",
    "Trip",
    "stop_if_cancelled",
    "valid_server_id",
)


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


READ_COUNT = 100  # stream entries a consumer reads (or claims) at once
SCAN_COUNT = 1000  # set members read (and their errors looked up) at once
ERROR_LIMIT = 200  # characters of a failing server's last error that the fleet keeps
_HEAD = 4  # a round trip's reply: now, next due, released, failing; then results, claims


def _read_scripts() -> dict[str, str]:
    """Each ``scripts/<name>.lua`` by name, read from the installed package."""
    folder = resources.files(__name__.rpartition(".")[0]).joinpath("scripts")
    return {
        item.name.removesuffix(".lua"): item.read_text(encoding="utf-8")
        for item in folder.iterdir()
        if item.name.endswith(".lua")
    }


SCRIPTS = _read_scripts()  # once per process


class GroupMissing(Exception):
    """The consumer group (or the whole stream) is gone: deleted by hand, or never made."""


@attrs.frozen
class Keys:
    """The names of one fleet's keys (see the module's docstring)."""

    due: str
    claims: str
    seq: str
    state: str
    failing: str
    errors: str
    workers: str
    events: str

    @classmethod
    def of(cls, name: str) -> Keys:
        tag = f"acp:{{{name}}}:"
        return cls(**{field.name: tag + field.name for field in attrs.fields(cls)})


@attrs.frozen
class Claim:
    """A server this worker holds until its lease ends: the token fences its commit."""

    server_id: str
    token: bytes
    late: float  # how long after it was due it was claimed, on Redis's clock
    state: ServerState
    expires: float  # when the lease ends, on this process's loop clock (a little early)
    arrived: float  # when the claim's reply came, on the same clock
    unreadable: str = ""  # why its saved state cannot be read ("": it can); state is empty


@attrs.frozen
class Commit:
    """One poll's outcome, ready to write: the new state, the events, the next delay."""

    claim: Claim
    state: bytes
    delay: float
    failed: bool
    events: Sequence[tuple[str, str, bytes, str]]  # key, kind, run JSON, previous status
    error: str = ""  # a failed poll's error, one escaped line (kept in the errors hash)


@attrs.frozen
class Trip:
    """What one round trip sends: claims handed back, commits, how many servers to claim."""

    commits: Sequence[Commit] = ()
    claim: int = 0
    releases: Sequence[Claim] = ()


class Reply(NamedTuple):
    """What one round trip brought back."""

    results: list[str]  # per commit of the trip, in order: "ok", "done" or "fenced"
    now: float  # Redis's clock
    claimed: list[Claim]
    next_due: float | None  # when the next server is due, if none was due to claim
    # Due members that are not valid server ids, claimed by this trip: the worker
    # removes them (``remove``), outside the trip, so a failed removal never retries it.
    invalid: Sequence[bytes] = ()
    failing: int = 0  # servers failing in the fleet, after this trip's commits


class Entry(NamedTuple):
    """One stream entry as read: its id and its fields (none once the stream's cap
    trimmed an entry that was pending)."""

    id: str
    fields: dict[bytes, bytes]


class RedisStore:
    """One fleet's keys and the commands and scripts that read and change them."""

    def __init__(self, client: _connection.Client, name: str, *, owned: bool = False) -> None:
        self._redis = client
        self._owned = owned
        self._address = _connection.address(client)
        self.name = name
        self.keys = Keys.of(name)
        # RedisCluster's register_script is Redis's (redis-py types it on Redis alone).
        register = cast(aioredis.Redis, client).register_script
        self._commit_and_claim = register(SCRIPTS["commit_and_claim"])
        self._add = register(SCRIPTS["add"])
        self._remove = register(SCRIPTS["remove"])
        self._status = register(SCRIPTS["status"])

    @property
    def address(self) -> str:
        """Where Redis is, for people: ``host:port/db`` (a socket: its path and db), never
        with credentials."""
        return self._address

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Redis's errors in the block as the fleet's (``classify``); ours go through."""
        try:
            yield
        except Exception as exc:
            error = classify(exc, self._address, self.keys)
            if error is None:
                raise
            raise error from exc

    async def close(self) -> None:
        """Close the client if it is the fleet's own; a borrowed one is left open."""
        if self._owned:
            await _connection.close(self._redis)

    # -- a worker ----------------------------------------------------------------------

    async def round_trip(self, worker: str, trip: Trip, *, lease: float, max_events: int) -> Reply:
        """Hand back ``trip.releases``, write ``trip.commits`` and claim up to ``trip.claim``
        due servers (for ``lease`` seconds), in one round trip.

        Each commit is written only if its claim is still ours: ``ok``, ``done`` (written
        by an earlier try whose reply was lost) or ``fenced`` (the claim is gone). Then
        Redis's time, the claims, and (when none was due) when the next server is due.

        Claimed due members that are not valid server ids are ``invalid``, for the
        caller to remove (each by one removal of its own, so across workers exactly one
        removal of a member succeeds). A claimed server whose saved state cannot be read
        is claimed with an empty state and ``unreadable`` set.
        """
        # The leases begin on Redis after this moment: counted from here, they end early.
        expires = asyncio.get_running_loop().time() + lease
        reply = await self._script(worker, max_events, lease, trip)
        arrived = asyncio.get_running_loop().time()
        count = len(trip.commits)
        results = [r.decode() for r in reply[_HEAD : _HEAD + count]]
        now = float(reply[0])
        next_due = float(reply[1]) if reply[1] else None
        claims = []
        invalid = []
        for i in range(_HEAD + count, len(reply), 4):
            sid, token, due, saved = reply[i : i + 4]
            server_id = valid_server_id(sid)
            if server_id is None:
                invalid.append(sid)
                continue
            late = max(0.0, now - float(due))
            state, unreadable = _saved_state(saved)
            claims.append(Claim(server_id, token, late, state, expires, arrived, unreadable))
        return Reply(results, now, claims, next_due, invalid, int(reply[3]))

    async def release(self, claims: Sequence[Claim]) -> int:
        """Hand claims back (due at once); how many were still ours."""
        if not claims:
            return 0
        reply = await self._script("", 0, 0.0, Trip(releases=claims))
        return int(reply[2])

    async def _script(self, worker: str, max_events: int, lease: float, trip: Trip) -> list[Any]:
        k = self.keys
        keys = [k.due, k.claims, k.state, k.events, k.failing, k.workers, k.seq, k.errors]
        args = _trip_args(worker, max_events, lease, trip)
        with self._errors():
            reply: list[Any] = await self._commit_and_claim(keys=keys, args=args)
        return reply

    # -- the fleet's servers -----------------------------------------------------------

    async def add(self, server_ids: Sequence[str]) -> int:
        """Add servers, due at once; how many were new."""
        if not server_ids:
            return 0
        with self._errors():
            return int(await self._add(keys=[self.keys.due], args=list(server_ids)))

    async def remove(self, server_ids: Sequence[str | bytes]) -> int:
        """Remove servers (or due members that are not valid ids, as bytes) and what is
        kept about them; how many were in the fleet."""
        if not server_ids:
            return 0
        k = self.keys
        keys = [k.due, k.claims, k.state, k.failing, k.errors]
        with self._errors():
            return int(await self._remove(keys=keys, args=list(server_ids)))

    async def server_ids(self) -> set[str]:
        """The fleet's servers; due members that are not valid ids are left out (workers
        drop them)."""
        with self._errors():
            members = [sid async for sid, _ in self._redis.zscan_iter(self.keys.due, count=1000)]
        return {sid for sid in map(valid_server_id, members) if sid is not None}

    async def failing(self) -> dict[str, str]:
        """Each failing server's last error ("" where none was kept), read in batches (a
        fleet in an outage may have a million). Text written by anything else is escaped
        and cut here too."""
        found: dict[str, str] = {}
        batch: list[bytes] = []
        with self._errors():
            async for sid in self._redis.sscan_iter(self.keys.failing, count=SCAN_COUNT):
                batch.append(sid)
                if len(batch) >= SCAN_COUNT:
                    found.update(await self._errors_of(batch))
                    batch = []
            found.update(await self._errors_of(batch))
        return found

    async def _errors_of(self, server_ids: list[bytes]) -> dict[str, str]:
        if not server_ids:
            return {}
        errors: list[bytes | None] = await self._redis.hmget(  # type: ignore[misc]
            self.keys.errors, server_ids
        )
        return {
            _readable(sid): ""
            if error is None
            else one_line(error.decode(errors="replace"), ERROR_LIMIT)
            for sid, error in zip(server_ids, errors, strict=True)
        }

    async def persists(self) -> bool | None:
        """Whether the Redis server writes anything to disk (AOF, or RDB ``save`` points);
        None when it cannot tell (``CONFIG`` denied, renamed or not answered). On a Redis
        Cluster, the master that holds the fleet's slot is asked (redis-py would ask its
        default node, which may hold none of the fleet's keys)."""
        try:
            with self._errors():
                where: dict[str, Any] = {}
                if isinstance(self._redis, aioredis.RedisCluster):
                    where["target_nodes"] = self._redis.get_node_from_key(self.keys.due)
                aof = await self._redis.config_get("appendonly", **where)
                rdb = await self._redis.config_get("save", **where)
        except FleetRedisError:  # NOPERM, an unknown command, Redis away: cannot tell
            return None
        appendonly, save = _text(aof.get("appendonly")), _text(rdb.get("save"))
        if appendonly is None or save is None:
            return None
        return appendonly.lower() == "yes" or bool(save.strip())

    async def status(self, interval: float) -> FleetStatus:
        """How the fleet is doing (``overdue`` judged by ``interval``), with the pending
        events of every consumer group."""
        k = self.keys
        keys = [k.due, k.workers, k.failing, k.events]
        with self._errors():
            reply = await self._status(keys=keys, args=[repr(interval)])
            servers, workers, overdue, oldest, failing, length = reply
            groups = await self._groups()
        pending: dict[str, int] = {}
        for info in groups:
            pending[_readable(info["name"])] = int(info["pending"])
        return FleetStatus(
            int(servers),
            int(workers),
            int(overdue),
            float(oldest) if oldest else 0.0,
            int(failing),
            int(length),
            pending,
        )

    async def _groups(self) -> list[dict[str, Any]]:
        """The stream's consumer groups (none while there is no stream)."""
        try:
            groups: list[dict[str, Any]] = await self._redis.xinfo_groups(self.keys.events)
        except ResponseError as exc:
            if "no such key" not in str(exc):
                raise
            return []
        return groups

    # -- consumers -----------------------------------------------------------------------

    async def create_group(self, group: str) -> None:
        """Make consumer group ``group`` from the start of the stream (and the stream, if
        there is none yet); one that exists is left as it is."""
        with self._errors():
            try:
                await self._redis.xgroup_create(self.keys.events, group, id="0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def read(
        self, group: str, consumer: str, start: str, block_ms: int | None
    ) -> list[Entry]:
        """Entries for ``consumer`` of ``group``, oldest first: its own pending ones after
        ``start`` (an entry id), or new ones (``start=">"``, waiting up to ``block_ms``).

        Raises ``GroupMissing`` when the group or the stream is gone."""
        with self._errors():
            try:
                reply: Any = await self._redis.xreadgroup(
                    group, consumer, {self.keys.events: start}, count=READ_COUNT, block=block_ms
                )
            except ResponseError as exc:
                raise _group_missing(exc) from exc
        return [_entry(raw) for _, entries in reply or () for raw in entries or ()]

    async def claim_idle(self, group: str, consumer: str, idle_ms: int) -> list[Entry]:
        """Entries of ``group`` another consumer has held for more than ``idle_ms``, now
        ``consumer``'s. Raises ``GroupMissing`` when the group or the stream is gone."""
        with self._errors():
            try:
                reply = await self._redis.xautoclaim(
                    self.keys.events, group, consumer, idle_ms, "0-0", count=READ_COUNT
                )
            except ResponseError as exc:
                raise _group_missing(exc) from exc
        return _autoclaimed(reply)

    async def ack(self, group: str, *entry_ids: str) -> int:
        """Acknowledge entries for ``group``; how many were pending."""
        with self._errors():
            return int(await self._redis.xack(self.keys.events, group, *entry_ids))


def valid_server_id(member: bytes) -> str | None:
    """A due-set member as a server id; None when it is not a valid one (not UTF-8, or
    refused by the one definition, ``_validate.path_segment``)."""
    try:
        server_id = member.decode()
        _validate.path_segment(server_id)
    except ValueError:  # UnicodeDecodeError is one
        return None
    return server_id


def _group_missing(exc: ResponseError) -> Exception:
    """``GroupMissing`` for Redis's NOGROUP; any other error as it is."""
    return GroupMissing(str(exc)) if "NOGROUP" in str(exc) else exc


def _autoclaimed(reply: Any) -> list[Entry]:
    """The entries of an ``XAUTOCLAIM`` reply. Redis 6.2 answers an entry deleted or
    trimmed while pending as nil, which redis-py gives as ``(None, None)``: gone, and
    without its id nothing can be acknowledged, so it is skipped (the consumer's own
    pending read at its next start gives its id, with no fields, and acks it; Redis 7
    drops such entries from the pending list itself)."""
    return [_entry(raw) for raw in reply[1] if raw is not None and raw[0] is not None]


def _entry(raw: Any) -> Entry:
    entry_id, fields = raw
    return Entry(entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id), fields or {})


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value if isinstance(value, str) else None


def _readable(name: bytes | str) -> str:
    """A name Redis holds as any bytes (a consumer group's, a failing server's): what is
    not UTF-8 is kept as ``\\xff`` escapes rather than failing ``status()``/``failing()``."""
    return name.decode(errors="backslashreplace") if isinstance(name, bytes) else str(name)


def _trip_args(worker: str, max_events: int, lease: float, trip: Trip) -> list[Any]:
    commits, releases = trip.commits, trip.releases
    args: list[Any] = [worker, max_events, repr(lease), trip.claim, len(commits), len(releases)]
    for claim in releases:
        args += [claim.server_id, claim.token]
    for commit in commits:
        claim = commit.claim
        head = b"%s %r %d %d " % (claim.token, commit.delay, commit.failed, len(commit.events))
        args += [claim.server_id, head + commit.state, commit.error]
        for event in commit.events:
            args.extend(event)
    return args


def _saved_state(saved: bytes) -> tuple[ServerState, str]:
    """A claimed server's state (``"<token>:<packed state>"``), and why it cannot be read
    ("" when it can). One that cannot be read (written by something else, or a newer
    format) is an empty state: the worker counts that claim a failing poll, and the
    server starts afresh (its runs reported again as "created", those never updated
    under the keys they had, on which consumers dedupe)."""
    if not saved:
        return ServerState(), ""
    token, colon, blob = saved.partition(b":")
    if not colon or not token.isdigit() or not blob:
        return ServerState(), "not <token>:<packed state>"
    try:
        return ServerState.unpack(blob), ""
    except UnreadableState as exc:
        return ServerState(), str(exc)
