"""The in-process watch: the engine over a memory store (``WatchState``).

Each server keeps its own schedule; a heap of due times feeds at most ``concurrency``
poll tasks, and each result is handled as it lands, so one slow server never holds back
the others.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import heapq
import itertools
from collections.abc import AsyncGenerator, Iterable, Iterator, Sequence
from typing import Any

import attrs

from .. import _converter, _validate
from .._log import watch_log
from .._observe import NO_OBSERVER, Observer
from .._retry import Context, Verdict, decide
from ..errors import ResponseValidationError
from ..models import AgentRunList, RunEvent
from ._diff import Change, summary
from ._poll import FetchPage, Polled, poll
from ._settle import Settled, contained, settle
from ._state import Seen, ServerState, fingerprint, id_digest
from ._transitions import Transitions

__all__ = ("WatchState", "Watcher")


@attrs.define(eq=False)
class WatchState:
    """What a watch knows: per server, a compact record of the runs of its last poll.

    Per run only an id digest, a fingerprint of its fields, its status and a change
    count are kept (a few dozen bytes, whatever the size of its text). Pass one to
    ``watch(state=...)`` and save ``to_dict()`` (JSON-ready) when the worker stops;
    ``from_dict`` on restart means known runs are not reported again.

    ``servers`` maps each server id to its packed record (opaque bytes); read it only to
    see which servers the state knows.

    Example::

        saved = json.loads(path.read_text()) if path.exists() else {}
        state = WatchState.from_dict(saved)
        try:
            async for event in client.runs.watch(server_ids, state=state):
                ...
        finally:
            path.write_text(json.dumps(state.to_dict()))
    """

    servers: dict[str, bytes] = attrs.Factory(dict)
    # A server whose poll's events are being handed over: its live state, which counts
    # over its packed record (so a state saved meanwhile has the runs delivered so far).
    _live: dict[str, ServerState] = attrs.field(factory=dict, init=False, repr=False, eq=False)

    def to_dict(self) -> dict[str, str]:
        """The state as JSON-ready data: server id -> its packed record, base64-encoded
        (about 1 KB per server at ``limit=50``). ``from_dict`` reads it back."""
        live = self._live
        return {
            sid: base64.b64encode(live[sid].pack() if sid in live else saved).decode()
            for sid, saved in self.servers.items()
        }

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by content

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WatchState):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    @classmethod
    def from_dict(cls, data: object) -> WatchState:
        """Rebuild a state from ``data``, the output of ``to_dict()`` (or the runs lists
        that versions 0.x saved).

        Raises:
            ResponseValidationError: ``data`` is not such an object, or a server's record
                is malformed (it names the server).
        """
        if type(data) is not dict:
            raise ResponseValidationError("watch state must be an object of server id -> state")
        state = cls()
        for sid, saved in data.items():
            if type(sid) is not str:
                raise ResponseValidationError("watch state: server ids must be strings")
            state.servers[sid] = _restore(sid, saved)
        return state


def _restore(sid: str, saved: object) -> bytes:
    if isinstance(saved, list):  # saved by 0.x: the runs themselves
        page = _converter.structure({"data": saved}, AgentRunList)
        raw = [_converter.to_json(run) for run in reversed(page.data)]
        runs = {
            id_digest(item["id"]): Seen(fingerprint(item), run.status, 1)
            for item, run in zip(raw, reversed(page.data), strict=True)
            if "id" in item
        }
        return ServerState(runs, polled=True).pack()
    try:
        if not isinstance(saved, str):
            raise ValueError(f"expected a string, got {type(saved).__name__}")
        blob = base64.b64decode(saved, validate=True)
        ServerState.unpack(blob).runs  # noqa: B018 - read now: a saved state is checked whole
    except (ValueError, binascii.Error) as exc:
        raise ResponseValidationError(f"watch state of server {sid!r}: {exc}") from None
    return blob


_NOTHING_KNOWN = ServerState().pack()


class Watcher:
    """One watch: its servers, their schedules and what it has seen."""

    def __init__(
        self,
        fetch: FetchPage,
        server_ids: Iterable[str],
        *,
        interval: float,
        limit: int,
        concurrency: int,
        state: WatchState,
        observer: Observer = NO_OBSERVER,
    ) -> None:
        self._fetch = fetch
        self._source = server_ids
        self._interval = interval
        self._limit = limit
        self._concurrency = concurrency
        self._state = state
        self._observer = observer
        self._lateness: dict[asyncio.Future[Any], float] = {}
        self._answered = False  # a server has answered the watch's request: see LOOP_ENDING
        # Servers whose last poll failed: the first failure and the recovery are logged.
        self._failing: set[str] = set()
        self._transitions = Transitions(watch_log, "watch", lambda: len(self._failing))

    async def events(self) -> AsyncGenerator[RunEvent, None]:
        loop = asyncio.get_running_loop()
        # Taken (and checked) here, inside the iterator: a bad id raises from it.
        ids = dict.fromkeys(_validate.taken_server_id(sid) for sid in self._source)
        # Due servers by time; a server is either here or in flight, never both.
        queue = [(0.0, order, sid) for order, sid in enumerate(ids)]
        del ids
        order = itertools.count(len(queue))  # breaks ties in the queue: first come, first polled
        in_flight: dict[asyncio.Future[Settled], str] = {}
        try:
            while queue or in_flight:
                now = loop.time()
                while queue and queue[0][0] <= now and len(in_flight) < self._concurrency:
                    due, _, sid = heapq.heappop(queue)
                    started = asyncio.ensure_future(self._poll(sid, self._known(sid)))
                    in_flight[started] = sid
                    self._lateness[started] = max(0.0, now - due) if due else 0.0
                idle = len(in_flight) >= self._concurrency or not queue
                wake_in = None if idle else max(0.0, queue[0][0] - now)
                if not in_flight:
                    await asyncio.sleep(wake_in or 0.0)
                    continue
                # Each server on its own clock: one slow poll holds back no other server.
                done, _ = await asyncio.wait(
                    in_flight, timeout=wake_in, return_when=asyncio.FIRST_COMPLETED
                )
                for finished in done:
                    sid = in_flight.pop(finished)
                    late = self._lateness.pop(finished)
                    delay, events = self._apply(sid, finished.result(), late)
                    for event in events:
                        yield event
                    heapq.heappush(queue, (loop.time() + delay, next(order), sid))
        finally:
            for task in in_flight:
                task.cancel()
            # Await them, so aclose() returns with no poll running and no error unread.
            await asyncio.gather(*in_flight, return_exceptions=True)

    def _known(self, sid: str) -> ServerState:
        live = self._state._live
        if live and sid in live:
            return live[sid]
        saved = self._state.servers.get(sid)
        return ServerState() if saved is None else ServerState.unpack(saved)

    async def _poll(self, sid: str, known: ServerState) -> Settled:
        """One server's poll, settled. This is that server's boundary: whatever else it
        raises is that server's failure (see ``contained``), never the watch's end."""
        try:
            outcome = await poll(self._fetch, sid, self._limit, known)
            if isinstance(outcome, Polled) and outcome.unreadable:
                watch_log.warning(
                    "watch: the saved state of %s: %s; starting afresh", sid, outcome.unreadable
                )
            return settle(known, outcome, self._interval)
        except Exception as exc:  # one server's isolation boundary, and only here
            return settle(known, contained(exc, sid, Context.WATCH), self._interval)

    def _apply(self, sid: str, settled: Settled, late: float) -> tuple[float, Iterator[RunEvent]]:
        """The server's next delay, and the events of its poll (which update the state).
        An error that ``LOOP_ENDING`` says ends the watch is raised."""
        error = settled.error
        if error is not None and (
            decide(error, Context.WATCH, answered=self._answered) is Verdict.END
        ):
            raise error
        self._answered = self._answered or error is None
        self._observer.watch_polled(ok=error is None, late=late)
        if error is not None and sid not in self._failing:
            self._failing.add(sid)
            self._transitions.failing(sid, str(error) or type(error).__name__)
        elif error is None and sid in self._failing:
            self._failing.discard(sid)
            self._transitions.recovered(sid)
        if error is not None:
            self._save(sid, settled.state.pack())
            self._observer.watch_event("error")
            return settled.delay, iter((RunEvent("error", sid, error=error),))
        return settled.delay, self._hand_over(sid, settled.against, settled.state, settled.changes)

    def _hand_over(
        self, sid: str, known: ServerState, fresh: ServerState, changes: Sequence[Change]
    ) -> Iterator[RunEvent]:
        if not changes:  # the steady state: the runs are not even read
            self._save(sid, fresh.pack())
            return
        live = ServerState(dict(known.runs), polled=True)
        self._state._live[sid] = live  # packed once the poll's events are handed over
        self._state.servers.setdefault(sid, _NOTHING_KNOWN)  # listed by to_dict meanwhile
        for change in changes:
            # Delivered once handed over: a state saved after this point (say by a
            # worker that stops here) does not report the run again on resume.
            digest = id_digest(change.run_id)
            live.runs[digest] = fresh.runs[digest]
            self._observer.watch_event(change.kind)
            if change.previous is None:
                yield RunEvent("created", sid, run=change.run)
            else:
                previous = summary(change.run_id, change.previous)
                yield RunEvent("updated", sid, run=change.run, previous=previous)
        self._save(sid, fresh.pack())  # forget runs that left the page

    def _save(self, sid: str, packed: bytes) -> None:
        """``sid``'s record, packed; it replaces a live one left by an earlier hand-over."""
        self._state.servers[sid] = packed
        live = self._state._live
        if live:
            live.pop(sid, None)
