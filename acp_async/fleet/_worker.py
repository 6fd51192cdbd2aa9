"""A fleet worker: the engine over the Redis store.

Claims due servers in batches, polls them (at most ``concurrency`` at once), and
commits finished polls with one script that is fenced by the claim tokens. A commit
and the next claim travel in one round trip, in the background: up to
``_MAX_COMMITS`` round trips are in flight while polls go on, so waiting for Redis
never stalls polling. A server's next poll starts only after its commit's reply came
back, so one server's commits stay in order. Redis going away is waited out with
backoff; a commit is retried with the same tokens, so a commit whose reply was lost is
recognised (``done``) and never appended twice. A poll stops a margin before its claim's
lease ends, so its timeout still commits; a claim that waited too long for a slot is
handed back (released in the next round trip) rather than polled late.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote

from .. import _converter, _json
from .._log import log
from .._observe import Observer
from .._retry import Context, Verdict, decide
from .._watch._poll import Polled, poll
from .._watch._settle import contained, settle
from ..errors import ACPError, APITimeoutError
from ._store import (
    REDIS_BACKOFF,
    REDIS_UNAVAILABLE,
    Claim,
    Commit,
    RedisStore,
    Reply,
    Trip,
    stop_if_cancelled,
)

if TYPE_CHECKING:
    from .._runs import PollSource

__all__ = ("Worker", "event_key")


_MAX_COMMITS = 2  # commit-and-claim round trips in flight at once; polls finished
# meanwhile wait and go together in the next one (fewer round trips under load)
_STOP_WAIT = 2.0  # on SIGTERM, how long in-flight commits may take before they are dropped
_LEASE_MARGIN = 0.1  # of the lease (at most _MAX_MARGIN s) a poll leaves for its commit
_MAX_MARGIN = 5.0


def event_key(server_id: str, run_id: str, number: int, fingerprint: bytes) -> str:
    """Deterministic: the same change of the same run has the same key, in any worker.

    The fingerprint is part of it: a run that left the page and came back changed starts
    again at change 1, and must not share a key with its first "created" (a consumer
    that dedupes on the key would drop a real change)."""
    return f"{quote(server_id, safe='')}/{quote(run_id, safe='')}/{number}.{fingerprint.hex()}"


def _ends(outcome: Polled | ACPError) -> bool:
    """``LOOP_ENDING``'s answer for a fleet poll: no later poll can fix it."""
    return isinstance(outcome, ACPError) and decide(outcome, Context.FLEET) is Verdict.END


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(32):08x}"


class _Running(NamedTuple):
    claim: Claim
    started: float  # loop time


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
        # A poll stops this long before its claim's lease ends, so that its outcome (a
        # timeout: the server counts as failing) still commits under the claim.
        self._margin = min(lease * _LEASE_MARGIN, _MAX_MARGIN)
        self._max_events = max_events
        self._slots = source.concurrency
        self._ahead = source.concurrency  # claimed ahead of the slots: see _loop
        self._observer = observer
        self._id = worker_id()
        self._redis_failures = 0
        self._held: list[Claim] = []  # claimed, not yet polling
        self._finished: list[Commit] = []  # polled, commit not yet sent
        self._giving_back: list[Claim] = []  # held too long for a poll, not yet released
        self._cut_late: set[str] = set()  # servers whose last poll was cut, handed back
        self._in_flight: dict[asyncio.Future[Any], _Running] = {}  # each a Commit
        self._trips: dict[asyncio.Future[Any], Trip] = {}  # each a _Reply
        self._committing: set[str] = set()  # servers whose commit is in flight
        self._claim_at = 0.0  # loop time when claiming is worth a round trip of its own

    async def run(self) -> None:
        try:
            await self._loop()
        finally:
            await self._stop()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            stop_if_cancelled()
            self._start_polls()
            claiming = sum(trip.claim for trip in self._trips.values())
            # Claim up to a slot-full ahead, so a finished poll's slot is refilled at
            # once, never waiting for a claim's round trip (with a quarter, slots sat idle
            # and polls/s was 6% lower), and each round trip claims a batch.
            free = self._slots + self._ahead - len(self._in_flight) - len(self._held) - claiming
            claim_due = free > 0 and loop.time() >= self._claim_at
            if len(self._trips) < _MAX_COMMITS and (
                self._finished or self._giving_back or claim_due
            ):
                self._send(max(0, free))
                continue
            waiting = {*self._in_flight, *self._trips}
            timeout = self._cancel_overdue(loop.time())
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
                    # Finished before it leaves _in_flight: if the poll raised (a refused
                    # token), _stop still finds its claim and hands it back.
                    self._finish(future, self._in_flight[future])
                    del self._in_flight[future]

    def _start_polls(self) -> None:
        """Poll held claims while slots are free, except those whose previous commit has not
        answered yet."""
        waiting = []
        now = asyncio.get_running_loop().time()
        for claim in self._held:
            if self._left(claim, now) < self._left(claim, claim.arrived) / 2:
                # It waited for a slot until less than half its poll time was left: a poll
                # started now could be cut and count a healthy server as failing.
                log.info("fleet: handing back %s: no slot freed in time", claim.server_id)
                self._giving_back.append(claim)  # due at once, for any worker
                continue
            if claim.server_id in self._committing or len(self._in_flight) >= self._slots:
                waiting.append(claim)
                continue
            started = asyncio.ensure_future(self._poll(claim))
            self._in_flight[started] = _Running(claim, now)
        self._held = waiting

    def _send(self, count: int) -> None:
        """Start a round trip in the background: claims handed back, finished polls'
        commits, and a claim of up to ``count`` servers."""
        trip = Trip(self._finished, count, self._giving_back)
        self._finished, self._giving_back = [], []
        self._committing.update(commit.claim.server_id for commit in trip.commits)
        self._trips[asyncio.ensure_future(self._round_trip(trip))] = trip

    def _received(self, trip: Trip, reply: Reply) -> None:
        for commit, result in zip(trip.commits, reply.results, strict=True):
            self._committing.discard(commit.claim.server_id)
            self._report(commit, result)
        self._held.extend(reply.claimed)
        if trip.claim <= 0:
            return
        loop_now = asyncio.get_running_loop().time()
        if reply.claimed:
            self._claim_at = loop_now
        elif reply.next_due is None:
            self._claim_at = loop_now + self._interval
        else:
            wait = max(0.001, min(self._interval, reply.next_due - reply.now))
            self._claim_at = loop_now + wait

    async def _poll(self, claim: Claim) -> Commit:
        """One server, from its poll to its commit. This is that server's boundary:
        whatever else it raises is that server's failure (see ``contained``); only an
        error ``LOOP_ENDING`` says ends the loop (a refused token) leaves, ending
        ``work()``. A 400/422 leaves the server failing: the fleet keeps it."""
        sid = claim.server_id
        try:
            outcome = await poll(self._fetch, sid, self._limit, claim.state)
            if not _ends(outcome):
                return self._commit(claim, outcome)
        except Exception as exc:  # one server's isolation boundary, and only here
            return self._commit(claim, contained(exc, sid, Context.FLEET), logged=True)
        assert isinstance(outcome, ACPError)
        raise outcome

    def _cancel_overdue(self, now: float) -> float | None:
        """Cancel polls that reached the end of their claim's lease (less the margin its
        commit needs); the seconds until the next one does. One check of at most
        ``concurrency`` polls each time the loop wakes, not a timer each; a poll that
        ignored its cancellation is cancelled again."""
        soonest = None
        for task, (claim, _) in self._in_flight.items():
            if task.done():
                continue
            left = self._left(claim, now)
            if left <= 0:
                task.cancel()
            elif soonest is None or left < soonest:
                soonest = left
        return soonest

    def _left(self, claim: Claim, at: float) -> float:
        """Seconds a poll under ``claim`` may still take at loop time ``at``."""
        return claim.expires - self._margin - at

    def _finish(self, task: asyncio.Future[Any], running: _Running) -> None:
        """A finished poll, to commit. One cut at its deadline after it started late (it
        waited for a slot) is handed back instead, once: the server is polled afresh,
        not counted as failing. If it is cut again, it fails, late or not (a hung server
        that always waits behind slow ones still counts as failing and backs off)."""
        claim = running.claim
        sid = claim.server_id
        if task.cancelled() and sid not in self._cut_late and self._started_late(running):
            self._cut_late.add(sid)
            self._giving_back.append(claim)
            return
        self._cut_late.discard(sid)
        if task.cancelled():  # it outlived its claim's lease
            timeout = APITimeoutError(f"the poll reached the end of its lease ({self._lease:g}s)")
            self._finished.append(self._commit(claim, timeout))
        else:
            self._finished.append(task.result())

    def _started_late(self, running: _Running) -> bool:
        """It had less than 90% of the time its claim had on arrival: it waited."""
        claim = running.claim
        return self._left(claim, running.started) < 0.9 * self._left(claim, claim.arrived)

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
        if settled.error is not None and not logged:
            log.warning("fleet: polling %s failed: %s", claim.server_id, settled.error)
        return Commit(claim, settled.state.pack(), settled.delay, settled.failed, events)

    async def _round_trip(self, trip: Trip) -> Reply:
        """The trip, retried until Redis answers (with the same tokens: a retried commit
        is never appended twice)."""
        while True:
            try:
                reply = await self._store.round_trip(
                    self._id, trip, lease=self._lease, max_events=self._max_events
                )
            except REDIS_UNAVAILABLE as exc:
                stop_if_cancelled()
                self._redis_failures += 1
                pause = REDIS_BACKOFF.delay(self._redis_failures)
                log.warning("fleet: Redis unavailable (%s); retrying in %.2fs", exc, pause)
                for _ in trip.commits:
                    self._observer.fleet_committed("error")
                await asyncio.sleep(pause)
                continue
            self._redis_failures = 0
            return reply

    def _report(self, commit: Commit, result: str) -> None:
        if result == "fenced":
            log.info("fleet: the claim on %s was lost; its poll is dropped", commit.claim.server_id)
            self._observer.fleet_committed("fenced")
            return
        self._observer.fleet_committed("ok")
        if result == "ok":
            for _, kind, _, _ in commit.events:
                self._observer.watch_event(kind)  # type: ignore[arg-type]

    async def _stop(self) -> None:
        """Drop in-flight polls, let in-flight commits land (briefly), and hand every
        claim back, so another worker takes it now."""
        claims = [*self._held, *(running.claim for running in self._in_flight.values())]
        claims.extend(self._giving_back)
        claims.extend(commit.claim for commit in self._finished)  # polled, not yet sent
        self._finished, self._giving_back = [], []
        for task in self._in_flight:
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        self._in_flight.clear()
        self._held = []
        if self._trips:
            done, pending = await asyncio.wait(self._trips, timeout=_STOP_WAIT)
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
            async with asyncio.timeout(2.0):
                released = await self._store.release(claims)
        except (*REDIS_UNAVAILABLE, TimeoutError) as exc:
            log.warning("fleet: could not release %d claims (%s); they expire", len(claims), exc)
        else:
            log.info("fleet: released %d claims", released)
