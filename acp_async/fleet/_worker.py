"""A fleet worker: the engine over the Redis store, each claim's life a small state machine.

The worker claims due servers in batches, polls them (at most ``concurrency`` at once)
and commits finished polls with one script fenced by the claim tokens. Commits, claims
handed back and the next claim travel together in one round trip, in the background: up
to ``MAX_TRIPS`` round trips are in flight while polls go on, so waiting for Redis never
stalls polling. Redis going away is waited out with backoff; a trip is retried with the
same tokens, so a commit whose reply was lost is recognised (``done``) and never
appended twice; an error no retry can fix (``FleetRedisError``) ends the worker.

Entries in Redis that are not the fleet's never stop it: a claimed due member that is not
a valid server id is removed (and logged by the worker whose removal succeeded, so once
per fleet); a claimed server whose saved state cannot be read is not polled (or, when
only its runs cannot be read, found as a changed page is diffed, that page is dropped):
the claim commits as a failing poll with an empty state, so the server starts afresh.

One claim's life. Each stage is one collection of the ``Worker``; each arrow is one
method, named beside it::

                  claimed: a round trip's reply (_received)
                                  |
                                  v
      +------------------------- HELD ---------------------------+
      | a slot is free, and no commit of the same                | less than HAND_BACK_BELOW of
      | server awaits its reply (the ordering gate,              | the poll time it had on
      | _committing) (_start_polls)                              | arrival is left (_start_polls)
      v                                                          |
   POLLING -- cut at its deadline after a late start (it had  -->|
      |       less than LATE_BELOW of its poll time when it      |
      |       began), the first time in a row for that server    |
      |       (_finish)                                          v
      | answered, failed, or cut at its deadline            HANDING_BACK
      | (the cut is a timeout: the server fails) (_finish)       |
      v                                                          |
   POLLED                                                        |
      | the next round trip (_send)                              | the next round trip (_send)
      v                                                          v
   COMMITTING -- its reply (_received):                      RELEASING -- its reply: due at
                 ok, done or fenced                                       once, for any worker

    HELD          _held          claims waiting for a slot, in the order they came
    POLLING       _polling       poll task -> its claim and when it started
    POLLED        _polled        commits waiting for the next round trip
    HANDING_BACK  _handing_back  claims waiting for the next round trip
    COMMITTING,   _trips         round trip -> what it carries; _committing names the
    RELEASING                    servers whose commit awaits its reply

A poll's deadline is its claim's lease end less ``LEASE_MARGIN`` of the lease (at most
``MAX_MARGIN`` seconds), so a cut poll's timeout still commits under the claim. The
ordering gate keeps one server's commits in order: a server claimed again (its commit
landed, and it was due again) while that commit's reply is still out (slow, or lost and
the trip retried) is not polled until the reply came. Without it, the next commit of the
server could land before the retried one, which would then find another token on the
state and count as fenced, its events uncounted, though it had landed.
On stop (cancelled, SIGTERM), every claim in every stage is handed back in one last round
trip, after the trips in flight had ``STOP_WAIT`` seconds to land.

What it logs (``acp_async.fleet``): a start and a stop line (with its counts); a server
that starts failing or recovers, once a streak (``Transitions``: the state a server was
claimed with says how its last poll went, whichever worker made it); once, a Redis that
persists nothing and a fleet without servers. Each failed poll only at DEBUG.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote

import attrs

from .. import _converter, _json
from .._log import fleet_log as log
from .._log import one_line
from .._observe import Observer
from .._retry import Context, Verdict, decide
from .._watch._poll import Polled, poll
from .._watch._settle import contained, settle
from .._watch._state import ServerState
from .._watch._transitions import Transitions
from ..errors import ACPError, APITimeoutError
from ._errors import FleetRedisError, RedisUnavailableError
from ._outage import Outage
from ._store import ERROR_LIMIT, Claim, Commit, RedisStore, Reply, Trip, stop_if_cancelled

if TYPE_CHECKING:
    from .._runs import PollSource

__all__ = (
    "HAND_BACK_BELOW",
    "LATE_BELOW",
    "LEASE_MARGIN",
    "MAX_MARGIN",
    "MAX_TRIPS",
    "PERSISTENCE_WAIT",
    "RELEASE_WAIT",
    "STOP_WAIT",
    "Worker",
    "event_key",
)

# A held claim is handed back when less than this share of the poll time it had on
# arrival is left: a poll started then could be cut, and count a healthy server failing.
HAND_BACK_BELOW = 0.5
# A poll that began with less than this share of the poll time its claim had on arrival
# started late (it waited for a slot): cut at its deadline, it is handed back once.
LATE_BELOW = 0.9
# A poll stops this share of the lease (at most MAX_MARGIN seconds) before the lease ends,
# so its outcome (a timeout: the server fails) still commits under the claim.
LEASE_MARGIN = 0.1
MAX_MARGIN = 5.0
# Round trips in flight at once; polls finished meanwhile wait and go together in the
# next one (fewer round trips under load).
MAX_TRIPS = 2
STOP_WAIT = 2.0  # on stop, how long the trips in flight may take before they are dropped
RELEASE_WAIT = 2.0  # on stop, how long the last release may take (then claims expire)
PERSISTENCE_WAIT = 5.0  # how long the one-time check of Redis's persistence may take


def event_key(server_id: str, run_id: str, number: int, fingerprint: bytes) -> str:
    """Deterministic: the same change of the same run has the same key, in any worker.

    The fingerprint is part of it: a run that left the page and came back changed starts
    again at change 1, and must not share a key with its first "created" (a consumer
    that dedupes on the key would drop a real change)."""
    return f"{quote(server_id, safe='')}/{quote(run_id, safe='')}/{number}.{fingerprint.hex()}"


def _ends(outcome: Polled | ACPError) -> bool:
    """``LOOP_ENDING``'s answer for a fleet poll: no later poll can fix it."""
    return isinstance(outcome, ACPError) and decide(outcome, Context.FLEET) is Verdict.END


def _shown(member: bytes) -> str:
    """A due member as Python writes it: quoted, control characters escaped (bytes that
    are not UTF-8 as ``b'...'``)."""
    try:
        return repr(member.decode())
    except UnicodeDecodeError:
        return repr(member)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(32):08x}"


class _Polling(NamedTuple):
    """A claim in POLLING: its claim, and when its poll began (loop time)."""

    claim: Claim
    started: float


class _Counts:
    """What the stop line reports."""

    def __init__(self) -> None:
        self.polls = self.failed = self.commits = self.fenced = self.events = 0


class Worker:
    """One worker process's loop; ``run()`` goes on until cancelled."""

    def __init__(
        self,
        store: RedisStore,
        source: PollSource,
        *,
        interval: float,
        limit: int,
        lease: float,
        max_events: int,
        observer: Observer,
    ) -> None:
        self._store = store
        self._fetch = source.fetch
        self._interval = interval
        self._limit = limit
        self._lease = lease
        self._margin = min(lease * LEASE_MARGIN, MAX_MARGIN)
        self._max_events = max_events
        self._slots = source.concurrency
        self._ahead = source.concurrency  # claimed ahead of the slots: see _loop
        self._observer = observer
        self._id = worker_id()
        self._outage = Outage("fleet", observer)
        # The stages (see the module's docstring).
        self._held: list[Claim] = []
        self._polling: dict[asyncio.Future[Any], _Polling] = {}  # each task gives a Commit
        self._polled: list[Commit] = []
        self._handing_back: list[Claim] = []
        self._trips: dict[asyncio.Future[Any], Trip] = {}  # COMMITTING and RELEASING
        self._committing: set[str] = set()  # the ordering gate: servers in COMMITTING
        # Servers whose last poll was cut after a late start and handed back: cut again,
        # late or not, they fail (a hung server behind slow ones still backs off).
        self._cut_late: set[str] = set()
        self._claim_at = 0.0  # loop time when claiming is worth a round trip of its own
        # What the worker reports: its counts, the fleet's failing servers as the last
        # round trip saw them, and the servers that start failing or recover.
        self._counts = _Counts()
        self._failing = 0
        self._transitions = Transitions(log, "fleet", lambda: self._failing)
        self._answered = False  # Redis answered a round trip
        self._check_persistence = True  # once, after Redis first answered
        self._check_empty = True  # once, on the first claiming round trip's reply

    async def run(self) -> None:
        log.info(
            "fleet: worker %s started: fleet %s on Redis %s, concurrency %d, interval %gs, "
            "lease %gs",
            self._id,
            self._store.name,
            self._store.address,
            self._slots,
            self._interval,
            self._lease,
        )
        started = asyncio.get_running_loop().time()
        try:
            await self._loop()
        finally:
            await self._stop()
            counts = self._counts
            log.info(
                "fleet: worker %s stopped after %.0fs: %d polls (%d failed), %d commits "
                "(%d fenced), %d events appended; %d servers failing in the fleet",
                self._id,
                asyncio.get_running_loop().time() - started,
                counts.polls,
                counts.failed,
                counts.commits,
                counts.fenced,
                counts.events,
                self._failing,
            )

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            stop_if_cancelled()
            if self._check_persistence and self._answered:
                self._check_persistence = False
                await self._warn_if_not_persisted()
            self._start_polls(loop.time())
            claiming = sum(trip.claim for trip in self._trips.values())
            # Claim up to a slot-full ahead, so a finished poll's slot is refilled at
            # once, never waiting for a claim's round trip (with a quarter, slots sat idle
            # and polls/s was 6% lower), and each round trip claims a batch.
            free = self._slots + self._ahead - len(self._polling) - len(self._held) - claiming
            claim_due = free > 0 and loop.time() >= self._claim_at
            if len(self._trips) < MAX_TRIPS and (self._polled or self._handing_back or claim_due):
                self._send(max(0, free))
                continue
            waiting = {*self._polling, *self._trips}
            timeout = self._cut_overdue(loop.time())
            if free > 0 and not self._trips:
                claim_in = max(0.0, self._claim_at - loop.time())
                timeout = claim_in if timeout is None else min(timeout, claim_in)
            if not waiting:
                await asyncio.sleep(timeout or 0.0)
                continue
            done, _ = await asyncio.wait(
                waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            for future in done:
                if future in self._trips:
                    self._received(self._trips.pop(future), future.result())
                else:
                    # Finished before it leaves POLLING: if the poll raised (a refused
                    # token), _stop still finds its claim and hands it back.
                    self._finish(future, self._polling[future])
                    del self._polling[future]

    # -- the transitions, in the order of the diagram -------------------------------------

    def _received(self, trip: Trip, reply: Reply) -> None:
        """COMMITTING and RELEASING end (each commit's result is reported); the trip's
        claims are HELD."""
        self._answered = True
        self._failing = reply.failing  # before the reports: a summary line gives it
        self._observer.fleet_failing(reply.failing)
        for commit, result in zip(trip.commits, reply.results, strict=True):
            self._committing.discard(commit.claim.server_id)
            self._report(commit, result)
        self._held.extend(reply.claimed)
        if trip.claim <= 0:
            return
        if self._check_empty:
            self._check_empty = False
            if not reply.claimed and reply.next_due is None:
                log.warning(
                    "fleet: the fleet %s has no servers: this worker idles until some are "
                    "added (acp-async fleet add SERVER_ID... --fleet %s)",
                    self._store.name,
                    self._store.name,
                )
        loop_now = asyncio.get_running_loop().time()
        if reply.claimed:
            self._claim_at = loop_now
        elif reply.next_due is None:
            self._claim_at = loop_now + self._interval
        else:
            wait = max(0.001, min(self._interval, reply.next_due - reply.now))
            self._claim_at = loop_now + wait

    def _start_polls(self, now: float) -> None:
        """HELD -> POLLING while slots are free, but not past the ordering gate; HELD ->
        HANDING_BACK when too little of its poll time is left."""
        waiting = []
        for claim in self._held:
            if self._left(claim, now) < HAND_BACK_BELOW * self._left(claim, claim.arrived):
                log.debug("fleet: handing back %s: no slot freed in time", claim.server_id)
                self._handing_back.append(claim)  # due at once, for any worker
                continue
            if claim.server_id in self._committing or len(self._polling) >= self._slots:
                waiting.append(claim)
                continue
            started = asyncio.ensure_future(self._poll(claim))
            self._polling[started] = _Polling(claim, now)
        self._held = waiting

    def _cut_overdue(self, now: float) -> float | None:
        """Cancel polls that reached their deadline (their claim's lease end less the
        margin its commit needs); the seconds until the next one does. One check of at
        most ``concurrency`` polls each time the loop wakes, not a timer each; a poll that
        ignored its cancellation is cancelled again. (``_finish`` moves them on.)"""
        soonest = None
        for task, (claim, _) in self._polling.items():
            if task.done():
                continue
            left = self._left(claim, now)
            if left <= 0:
                task.cancel()
            elif soonest is None or left < soonest:
                soonest = left
        return soonest

    def _finish(self, task: asyncio.Future[Any], polling: _Polling) -> None:
        """POLLING -> POLLED (answered, failed, or cut on time: a timeout), or ->
        HANDING_BACK (cut after a late start, the first time in a row for the server)."""
        claim = polling.claim
        sid = claim.server_id
        if task.cancelled() and sid not in self._cut_late and self._started_late(polling):
            self._cut_late.add(sid)
            self._handing_back.append(claim)
            return
        self._cut_late.discard(sid)
        if task.cancelled():  # it outlived its claim's lease
            timeout = APITimeoutError(f"the poll reached the end of its lease ({self._lease:g}s)")
            self._polled.append(self._commit(claim, timeout))
        else:
            self._polled.append(task.result())

    def _send(self, count: int) -> None:
        """POLLED -> COMMITTING and HANDING_BACK -> RELEASING: one round trip in the
        background, which also claims up to ``count`` servers."""
        trip = Trip(self._polled, count, self._handing_back)
        self._polled, self._handing_back = [], []
        self._committing.update(commit.claim.server_id for commit in trip.commits)
        self._trips[asyncio.ensure_future(self._round_trip(trip))] = trip

    async def _stop(self) -> None:
        """Every stage -> released: drop polls, let trips in flight land (briefly), and
        hand every claim back in one last round trip, so another worker takes it now."""
        claims = [*self._held, *(polling.claim for polling in self._polling.values())]
        claims.extend(self._handing_back)
        claims.extend(commit.claim for commit in self._polled)  # polled, not yet sent
        self._polled, self._handing_back = [], []
        for task in self._polling:
            task.cancel()
        await asyncio.gather(*self._polling, return_exceptions=True)
        self._polling.clear()
        self._held = []
        if self._trips:
            done, pending = await asyncio.wait(self._trips, timeout=STOP_WAIT)
            for future in pending:
                future.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for future, trip in self._trips.items():
                # A commit that landed dropped its claim: releasing it again is a no-op.
                claims.extend(commit.claim for commit in trip.commits)
                claims.extend(trip.releases)
                if future in done and not future.cancelled() and future.exception() is None:
                    claims.extend(future.result().claimed)
            self._trips.clear()
        if not claims:
            return
        try:
            async with asyncio.timeout(RELEASE_WAIT):
                released = await self._store.release(claims)
        except (FleetRedisError, TimeoutError) as exc:
            log.warning("fleet: could not release %d claims (%s); they expire", len(claims), exc)
        else:
            log.info("fleet: released %d claims", released)

    # -- what the transitions ask ----------------------------------------------------------

    def _left(self, claim: Claim, at: float) -> float:
        """Seconds a poll under ``claim`` may still take at loop time ``at`` (its poll
        time): until the lease ends, less the margin its commit needs."""
        return claim.expires - self._margin - at

    def _started_late(self, polling: _Polling) -> bool:
        """It began with less than LATE_BELOW of the poll time its claim had on arrival:
        it waited for a slot."""
        claim = polling.claim
        return self._left(claim, polling.started) < LATE_BELOW * self._left(claim, claim.arrived)

    # -- the work each stage does ------------------------------------------------------------

    async def _poll(self, claim: Claim) -> Commit:
        """One server, from its poll to its commit. This is that server's boundary:
        whatever else it raises is that server's failure (see ``contained``); only an
        error ``LOOP_ENDING`` says ends the loop (a refused token) leaves, ending
        ``work()``. A 400/422 leaves the server failing: the fleet keeps it."""
        sid = claim.server_id
        if claim.unreadable:
            return self._unreadable(claim)
        try:
            outcome = await poll(self._fetch, sid, self._limit, claim.state)
            if isinstance(outcome, Polled) and outcome.unreadable:  # its runs, read just now
                afresh = attrs.evolve(claim, state=ServerState(), unreadable=outcome.unreadable)
                return self._unreadable(afresh)
            if not _ends(outcome):
                return self._commit(claim, outcome)
        except Exception as exc:  # one server's isolation boundary, and only here
            return self._commit(claim, contained(exc, sid, Context.FLEET), logged=True)
        assert isinstance(outcome, ACPError)
        raise outcome

    def _unreadable(self, claim: Claim) -> Commit:
        """A claim whose saved state cannot be read: a failing poll whose commit writes an
        empty state (the server starts afresh at its next poll). The one place for both
        ways it is found: at the claim (not polled), or when a changed page made the poll
        read the runs behind a good header (that page is dropped)."""
        why = f"its saved state in Redis cannot be read ({claim.unreadable}); it starts afresh"
        log.warning("fleet: %s: %s", claim.server_id, why)
        self._observer.fleet_dropped("state")
        return self._commit(claim, ACPError(why), logged=True)

    def _commit(self, claim: Claim, outcome: Polled | ACPError, *, logged: bool = False) -> Commit:
        """A finished poll as a commit: ``settle``'s new state and next delay, and the
        changes as stream events. ``logged``: the failure was logged already."""
        settled = settle(claim.state, outcome, self._interval)
        events: list[tuple[str, str, bytes, str]] = []
        for change in settled.changes:
            previous = "" if change.previous is None else str(change.previous.status or "")
            key = event_key(claim.server_id, change.run_id, change.number, change.fingerprint)
            run = _json.dumps(_converter.to_json(change.run))
            events.append((key, change.kind, run, previous))
        self._observer.watch_polled(ok=not settled.failed, late=claim.late)
        self._counts.polls += 1
        error = ""
        if settled.error is not None:
            self._counts.failed += 1
            error = one_line(str(settled.error) or type(settled.error).__name__, ERROR_LIMIT)
            if not logged:  # each failure; the first of a row is a WARNING once it lands
                log.debug("fleet: polling %s failed: %s", claim.server_id, error)
        state = settled.state.pack()
        return Commit(claim, state, settled.delay, settled.failed, events, error)

    async def _round_trip(self, trip: Trip) -> Reply:
        """The trip, retried until Redis answers (with the same tokens: a retried commit
        is never appended twice); a ``FleetRedisError`` no retry fixes ends the worker.
        Then the due members it claimed that are not server ids are dropped, once the
        trip is done: a failed drop never sends the trip again."""
        reply = await self._trip(trip)
        for member in reply.invalid:
            await self._drop(member)
        return reply

    async def _trip(self, trip: Trip) -> Reply:
        while True:
            try:
                reply = await self._store.round_trip(
                    self._id, trip, lease=self._lease, max_events=self._max_events
                )
            except RedisUnavailableError as exc:
                stop_if_cancelled()
                for _ in trip.commits:
                    self._observer.fleet_committed("error")
                await self._outage.wait(exc)
                continue
            self._outage.answered()
            return reply

    async def _drop(self, member: bytes) -> None:
        """Remove a claimed due member that is not a server id; logged by the worker whose
        removal succeeded, so once per fleet. Redis away: it stays claimed, and comes due
        again (for any worker to drop) when its lease ends."""
        try:
            removed = await self._store.remove([member])
        except RedisUnavailableError as exc:
            log.debug("fleet: could not drop %s now (%s); it comes again", _shown(member), exc)
            return
        if removed == 1:
            log.warning(
                "fleet: dropped %s from the fleet's due set: not a valid server id",
                _shown(member),
            )
            self._observer.fleet_dropped("due")

    def _report(self, commit: Commit, result: str) -> None:
        """A commit's result: counted, and logged when its server started failing or
        recovered (the state it was claimed with says how its last poll went, whichever
        worker made it; a state that could not be read was logged when claimed)."""
        sid = commit.claim.server_id
        if result == "fenced":
            log.debug("fleet: the claim on %s was lost; its poll is dropped", sid)
            self._counts.fenced += 1
            self._observer.fleet_committed("fenced")
            return
        # "done": an earlier try of this very trip landed and its reply was lost, so its
        # events were appended (once) and never counted: they are counted now.
        self._counts.commits += 1
        self._observer.fleet_committed("ok")
        self._counts.events += len(commit.events)
        for _, kind, _, _ in commit.events:
            self._observer.watch_event(kind)  # type: ignore[arg-type]
        was_failing = commit.claim.state.errors > 0
        if commit.failed and not was_failing and not commit.claim.unreadable:
            self._transitions.failing(sid, commit.error)
        elif was_failing and not commit.failed:
            self._transitions.recovered(sid)

    async def _warn_if_not_persisted(self) -> None:
        """WARNING once when the Redis server writes nothing to disk: a restart of it
        loses the fleet. Skipped silently when it cannot tell (``CONFIG`` denied)."""
        try:
            async with asyncio.timeout(PERSISTENCE_WAIT):
                persists = await self._store.persists()
        except TimeoutError:
            return
        if persists is False:
            log.warning(
                "fleet: Redis %s persists nothing (no AOF, no RDB save points): a restart "
                "of it loses the fleet; run it with appendonly yes (see docs/operations.md)",
                self._store.address,
            )
