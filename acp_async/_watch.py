"""``watch``: a change feed over many servers.

Each server keeps its own schedule: busy servers (queued or running runs) are
polled every ``interval``, quiet ones back off gradually, failing ones back off
exponentially; every delay is jittered so a fleet never polls in lock-step.
A heap of due times feeds at most ``concurrency`` poll tasks, and each result
is handled as it lands, so one slow server never holds back the others.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator
from typing import Any

import attrs

from . import _converter, _validate
from ._log import log
from ._retry import RetryPolicy, jittered
from .errors import (
    ACPError,
    AuthenticationError,
    BadRequestError,
    ResponseValidationError,
    UnprocessableEntityError,
)
from .models import AgentRun, AgentRunList, RunEvent

ListPage = Callable[[str, int], Awaitable[AgentRunList]]

__all__ = ("WatchState",)


QUIET_BACKOFF = 1.5  # a quiet server's interval grows by this per quiet poll ...
QUIET_CAP = 8  # ... up to this many intervals
ERROR_CAP = 32  # a failing server waits 2, 4, 8 ... up to this many intervals
GAP_CAP = 16  # gap closing doubles limit up to this many times the watch's limit


@attrs.define
class WatchState:
    """What a watch knows: per server, the runs of its last poll by id.

    Pass one to ``watch(state=...)`` and save ``to_dict()`` (JSON-ready) when the
    worker stops; ``from_dict`` on restart means known runs are not reported again.
    """

    servers: dict[str, dict[str, AgentRun]] = attrs.Factory(dict)

    def to_dict(self) -> dict[str, list[dict[str, Any]]]:
        return {
            sid: [_converter.to_json(run) for run in runs.values()]
            for sid, runs in self.servers.items()
        }

    @classmethod
    def from_dict(cls, data: object) -> WatchState:
        """Rebuild from ``to_dict()`` output; a malformed one raises ResponseValidationError."""
        if type(data) is not dict:
            raise ResponseValidationError("watch state must be an object of server id -> runs")
        state = cls()
        for sid, runs in data.items():
            page = _converter.structure({"data": runs}, AgentRunList)
            state.servers[sid] = {run.id: run for run in page.data if run.id is not None}
        return state


@attrs.define
class _Schedule:
    due: float = 0.0
    quiet_polls: int = 0
    errors: int = 0


class Watcher:
    """One watch: its servers, their schedules and what it has seen."""

    def __init__(
        self,
        list_page: ListPage,
        policy: RetryPolicy,
        server_ids: Iterable[str],
        *,
        interval: float,
        limit: int,
        concurrency: int,
        state: WatchState,
    ) -> None:
        self._list_page = list_page
        self._policy = policy
        self._source = server_ids
        self._interval = interval
        self._limit = limit
        self._concurrency = concurrency
        self._state = state
        self._schedules: dict[str, _Schedule] = {}

    async def events(self) -> AsyncGenerator[RunEvent, None]:
        loop = asyncio.get_running_loop()
        # Taken (and checked) here, inside the iterator: a bad id raises from it.
        for sid in self._source:
            self._schedules.setdefault(_validate.taken_server_id(sid), _Schedule())
        # Due servers by time; a server is either here or in flight, never both.
        queue = [(0.0, order, sid) for order, sid in enumerate(self._schedules)]
        order = itertools.count(len(queue))  # breaks ties in the queue: first come, first polled
        in_flight: dict[asyncio.Future[AgentRunList | ACPError], str] = {}
        try:
            while queue or in_flight:
                now = loop.time()
                while queue and queue[0][0] <= now and len(in_flight) < self._concurrency:
                    sid = heapq.heappop(queue)[2]
                    in_flight[asyncio.ensure_future(self._poll(sid))] = sid
                idle = len(in_flight) >= self._concurrency or not queue
                wake_in = None if idle else max(0.0, queue[0][0] - now)
                if not in_flight:
                    await asyncio.sleep(wake_in or 0.0)
                    continue
                # Each server on its own clock: one slow poll holds back no other server.
                done, _ = await asyncio.wait(
                    in_flight, timeout=wake_in, return_when=asyncio.FIRST_COMPLETED
                )
                for poll in done:
                    sid = in_flight.pop(poll)
                    for event in self._apply(sid, poll.result(), loop.time()):
                        yield event
                    heapq.heappush(queue, (self._schedules[sid].due, next(order), sid))
        finally:
            for poll in in_flight:
                poll.cancel()
            # Await them, so aclose() returns with no poll running and no error unread.
            await asyncio.gather(*in_flight, return_exceptions=True)

    def _apply(self, sid: str, outcome: AgentRunList | ACPError, now: float) -> Iterator[RunEvent]:
        """The events of one poll; reschedules the server and updates what is known."""
        if isinstance(outcome, ACPError):
            self._reschedule(sid, now, failed=True)
            yield RunEvent("error", sid, error=outcome)
            return
        latest, changes = self._diff(sid, outcome)
        busy = changes or any(not run.is_terminal for run in latest.values())
        self._reschedule(sid, now, busy=bool(busy))
        known = self._state.servers.setdefault(sid, {})
        for run_id, run, previous in changes:
            # Delivered once handed over: a state saved after this point (say by a
            # worker that stops here) does not report the run again on resume.
            known[run_id] = run
            if previous is None:
                yield RunEvent("created", sid, run=run)
            else:
                yield RunEvent("updated", sid, run=run, previous=previous)
        self._state.servers[sid] = latest  # forget runs that left the page

    async def _poll(self, sid: str) -> AgentRunList | ACPError:
        """One server's newest runs, or the error; errors no poll can fix end the watch."""
        try:
            page = await self._list_page(sid, self._limit)
        except ACPError as exc:
            if self._ends_watch(exc):
                raise
            return exc
        known = self._state.servers.get(sid)
        limit = self._limit
        # Every run of a full page is new: more may have arrived than one page holds.
        while known is not None and self._is_gap(page, known, limit):
            limit = min(limit * 2, self._limit * GAP_CAP)
            try:
                page = await self._list_page(sid, limit)
            except AuthenticationError:
                raise
            except ACPError as exc:
                # The host refuses a larger page: report what the last one showed.
                log.info("watch: closing a gap on %s with limit=%d failed: %s", sid, limit, exc)
                break
        return page

    def _ends_watch(self, exc: ACPError) -> bool:
        """No later poll can succeed: the token was refused, or the host refuses the watch's
        own request (say a ``limit`` it does not accept). Anything else is retried, at the
        failing cadence (a 403/404 server stays watched: access may be granted later)."""
        if self._policy.is_transient(exc):
            return False
        return isinstance(exc, AuthenticationError | BadRequestError | UnprocessableEntityError)

    def _is_gap(self, page: AgentRunList, known: dict[str, AgentRun], limit: int) -> bool:
        return (
            limit < self._limit * GAP_CAP
            and len(page.data) >= limit
            and not any(run.id in known for run in page.data)
        )

    def _diff(
        self, sid: str, page: AgentRunList
    ) -> tuple[dict[str, AgentRun], list[tuple[str, AgentRun, AgentRun | None]]]:
        """The page's runs by id, and those new or changed (oldest first) with their past."""
        known = self._state.servers.get(sid, {})
        latest: dict[str, AgentRun] = {}
        changes = []
        for run in reversed(page.data):  # pages are newest first
            if run.id is None or run.id in latest:
                continue
            latest[run.id] = run
            previous = known.get(run.id)
            if previous != run:
                changes.append((run.id, run, previous))
        return latest, changes

    def _reschedule(
        self, sid: str, now: float, *, failed: bool = False, busy: bool = False
    ) -> None:
        schedule = self._schedules[sid]
        if failed:
            schedule.errors += 1
            factor = min(2.0**schedule.errors, ERROR_CAP)
        else:
            schedule.errors = 0
            schedule.quiet_polls = 0 if busy else schedule.quiet_polls + 1
            factor = min(QUIET_BACKOFF**schedule.quiet_polls, QUIET_CAP)
        schedule.due = now + jittered(self._interval * factor)
