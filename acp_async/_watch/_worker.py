"""A fleet worker: the engine over the Redis store.

Claims due servers in batches, polls them (at most ``concurrency`` at once), and
commits each finished batch with one script that is fenced by the claim tokens.
A commit and the next claim travel in one round trip. Redis going away is waited
out with backoff; a commit is retried with the same tokens, so a commit whose reply
was lost is recognised (``done``) and never appended twice.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
from collections.abc import Sequence
from urllib.parse import quote

from .. import _converter, _json
from .._observe import Observer
from ..errors import ACPError, APITimeoutError, AuthenticationError
from ._poll import FetchPage, Polled, poll
from ._redis import REDIS_UNAVAILABLE, Claim, Commit, RedisStore
from ._schedule import next_delay

__all__ = ("Worker", "event_key")

log = logging.getLogger("acp_async")

_BATCH_WAIT = 0.002  # after a poll finishes, wait this long for others to commit together
_MAX_REDIS_BACKOFF = 5.0


def event_key(server_id: str, run_id: str, number: int) -> str:
    """Deterministic: the same change of the same run has the same key, in any worker."""
    return f"{quote(server_id, safe='')}/{quote(run_id, safe='')}/{number}"


def _stop_if_cancelled() -> None:
    """A cancellation some library swallowed (the task still says it is being
    cancelled) still stops the worker: SIGTERM must end it."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{random.getrandbits(32):08x}"


class Worker:
    """One worker process's loop; ``run()`` goes on until cancelled."""

    def __init__(
        self,
        store: RedisStore,
        fetch: FetchPage,
        *,
        interval: float,
        limit: int,
        lease: float,
        max_events: int,
        concurrency: int,
        observer: Observer,
    ) -> None:
        self._store = store
        self._fetch = fetch
        self._interval = interval
        self._limit = limit
        self._lease = lease
        self._max_events = max_events
        self._slots = concurrency
        self._observer = observer
        self._id = worker_id()
        self._redis_failures = 0
        self._held: list[Claim] = []  # claimed, not yet polling
        self._in_flight: dict[asyncio.Future[Polled | ACPError], Claim] = {}

    async def run(self) -> None:
        try:
            await self._loop()
        finally:
            await self._stop()

    async def _loop(self) -> None:
        finished: list[tuple[Claim, Polled | ACPError]] = []
        while True:
            _stop_if_cancelled()
            commits = [self._settle(claim, outcome) for claim, outcome in finished]
            finished = []
            free = self._slots - len(self._in_flight) - len(self._held)
            sleep_for = await self._commit_and_claim(commits, free)
            for claim in self._held:
                started = asyncio.ensure_future(self._poll(claim))
                self._in_flight[started] = claim
            self._held = []
            if not self._in_flight:
                await asyncio.sleep(sleep_for)
                continue
            timeout = None if free <= 0 else sleep_for
            done, _ = await asyncio.wait(
                self._in_flight, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if done and len(done) < len(self._in_flight):
                # Let others that are about to finish join this commit (fewer round trips).
                more, _ = await asyncio.wait(set(self._in_flight) - done, timeout=_BATCH_WAIT)
                done |= more
            for task in done:
                claim = self._in_flight.pop(task)
                finished.append((claim, task.result()))

    async def _poll(self, claim: Claim) -> Polled | ACPError:
        """One server's page; errors other than a refused token are the poll's outcome."""
        try:
            async with asyncio.timeout(self._lease):
                return await poll(self._fetch, claim.server_id, self._limit, claim.state)
        except AuthenticationError:
            raise
        except ACPError as exc:  # a 400/422 too: the fleet keeps the server, failing
            return exc
        except TimeoutError:
            return APITimeoutError(f"the poll took longer than the lease ({self._lease:g}s)")

    def _settle(self, claim: Claim, outcome: Polled | ACPError) -> Commit:
        """A finished poll as a commit: the diff's events and the server's next delay."""
        known = claim.state
        events: list[tuple[str, str, bytes, str]] = []
        failed = isinstance(outcome, ACPError)
        if isinstance(outcome, ACPError):
            log.warning("fleet: polling %s failed: %s", claim.server_id, outcome)
            self._observer.watch_polled(ok=False, late=claim.late)
            delay = next_delay(known, self._interval, failed=True, busy=False)
            fresh = known
        else:
            self._observer.watch_polled(ok=True, late=claim.late)
            fresh, changes = outcome.fresh, outcome.changes
            busy = bool(changes) or fresh.busy()
            delay = next_delay(fresh, self._interval, failed=False, busy=busy)
            for change in changes:
                previous = "" if change.previous is None else str(change.previous.status or "")
                key = event_key(claim.server_id, change.run_id, change.number)
                run = _json.dumps(_converter.to_json(change.run))
                events.append((key, change.kind, run, previous))
        return Commit(claim, fresh.pack(), delay, failed, events)

    async def _commit_and_claim(self, commits: Sequence[Commit], free: int) -> float:
        """Write ``commits`` and claim up to ``free`` servers; seconds until one is due."""
        while True:
            try:
                results, now, claimed, next_due = await self._store.commit_and_claim(
                    self._id, self._max_events, commits, self._lease, free
                )
            except REDIS_UNAVAILABLE as exc:
                _stop_if_cancelled()
                self._redis_failures += 1
                pause = min(_MAX_REDIS_BACKOFF, 0.05 * 2**self._redis_failures)
                log.warning("fleet: Redis unavailable (%s); retrying in %.2fs", exc, pause)
                for _ in commits:
                    self._observer.fleet_committed("error")
                await asyncio.sleep(random.uniform(pause / 2, pause))
                continue
            break
        self._redis_failures = 0
        for commit, result in zip(commits, results, strict=True):
            self._report(commit, result)
        self._held.extend(claimed)
        if claimed:
            return 0.0
        if next_due is None:
            return self._interval
        return max(0.001, min(self._interval, next_due - now))

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
        """Drop in-flight polls and hand every claim back, so another worker takes it now."""
        claims = [*self._held, *self._in_flight.values()]
        for task in self._in_flight:
            task.cancel()
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        self._in_flight.clear()
        self._held = []
        if not claims:
            return
        try:
            async with asyncio.timeout(2.0):
                released = await self._store.release(claims)
        except (*REDIS_UNAVAILABLE, TimeoutError) as exc:
            log.warning("fleet: could not release %d claims (%s); they expire", len(claims), exc)
        else:
            log.info("fleet: released %d claims", released)
