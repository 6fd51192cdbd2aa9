"""``client.runs``: the agent-runs endpoint and the helpers built on it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar

import attrs
from yarl import URL

from . import _converter, _pagination, _validate
from ._fanout import as_completed_bounded
from ._log import log
from ._retry import Context, Verdict, decide
from ._transport import Later, Transport
from ._watch import FetchPage, Watcher, WatchState
from .errors import ACPError, WaitTimeoutError
from .models import AgentRun, AgentRunList, RunEvent, ServerRuns

T = TypeVar("T")
_Fetched = tuple[str, "Later[AgentRunList] | ACPError"]

__all__ = ("PollSource", "Runs", "poll_source", "runs_for")


def _parse_page(value: Any) -> AgentRunList:
    return _converter.structure(value, AgentRunList)


class Runs:
    """The agent runs of ACP servers: ``client.runs`` of an ``ACPClient``.

    Reads ``GET /v1/servers/{serverId}/runtime/agent/runs``. Not made directly: every
    client has one. ``list``, ``iter`` and ``pages`` read one server (the client's
    default server id, ``config.server_id``, when none is given); ``list_many``,
    ``watch`` and ``wait_for`` take their server ids explicitly.

    Every call checks its arguments before any request (``ValueError`` or
    ``TypeError``), and every request error is an ``ACPError`` carrying ``.url``.
    """

    __slots__ = ("_transport",)
    if TYPE_CHECKING:  # not in __annotations__: help() would show the private type
        _transport: Transport

    def _server(self, server_id: str | None) -> str:
        """``server_id``, or the client's default one; none at all is a ValueError."""
        if server_id is not None:
            return server_id
        default = self._transport.config.server_id
        if default is None:
            raise ValueError(
                "no server_id: pass one, or configure a default with "
                "ACPClient(server_id=...) or the COMPUTER_AGENTS_SERVER_ID environment "
                "variable (set for you inside a platform resource)"
            )
        return default

    def _url(self, server_id: object, limit: object) -> URL:
        segment = _validate.path_segment(server_id)
        page_size = _validate.positive_int("limit", limit)
        # An int needs no encoding: cheaper than yarl's with_query on every request.
        query = "" if page_size is None else f"limit={page_size}"
        return self._transport.url("servers", segment, "runtime", "agent", "runs", query=query)

    async def _fetch_page(
        self,
        server_id: str,
        limit: int,
        parse: Callable[[Any], T],
        peek: Callable[[bytes], T | None] | None = None,
    ) -> T:
        """One page for the watch engine: it peeks at the bytes (an identical page is
        skipped) and parses the rest (structuring changed runs only)."""
        value, _ = await self._transport.get(self._url(server_id, limit), parse, peek=peek)
        return value

    async def _fetch(self, url: URL) -> tuple[AgentRunList, URL | None]:
        return await self._transport.get(url, _parse_page)

    async def list(self, server_id: str | None = None, *, limit: int | None = None) -> AgentRunList:
        """One page of a server's runs: the newest ``limit`` of them, newest first.

        Args:
            server_id: the server to read. Default: the client's ``config.server_id``
                (``COMPUTER_AGENTS_SERVER_ID`` inside a platform resource).
            limit: how many runs, an ``int >= 1``. Default: the server's (20 on the
                platform).

        Returns:
            An ``AgentRunList``; its ``data`` holds the runs.

        Raises:
            ValueError: a bad ``server_id`` or ``limit``, or no server id given and none
                configured (the message names ``COMPUTER_AGENTS_SERVER_ID``); before any
                request.
            TypeError: an argument of the wrong type; before any request.
            AuthenticationError, NotFoundError, ...: the API's answer (``APIStatusError``
                subclasses), after the retries a transient one gets.
            APIConnectionError, APITimeoutError: the network, after retries.
            ResponseValidationError: a body that is not the documented shape.

        Example::

            page = await client.runs.list("srv-0001", limit=10)
            for run in page.data:
                print(run.id, run.status)
        """
        page, _ = await self._fetch(self._url(self._server(server_id), limit))
        return page

    def pages(
        self,
        server_id: str | None = None,
        *,
        limit: int | None = None,
        max_items: int | None = None,
    ) -> AsyncGenerator[AgentRunList, None]:
        """Each page of a server's runs as received, following ``Link: rel="next"``.

        A response's RFC 8288 ``Link: <...>; rel="next"`` header on the same origin is
        followed; a page that adds no new run, or a link seen before, ends the iteration.
        Breaking out of the loop releases the connection.

        Args:
            server_id: the server to read. Default: the client's ``config.server_id``.
            limit: the page size, an ``int >= 1``. Default: the server's.
            max_items: stop after this many runs in all (``int >= 1``). Default: no cap.

        Raises:
            ValueError, TypeError: bad arguments, or no server id at all, raised by this
                call (before any request); the request errors of ``list`` while iterating.

        Example::

            async for page in client.runs.pages("srv-0001", limit=100):
                print(len(page.data))
        """
        url = self._url(self._server(server_id), limit)  # checked now, before any request
        cap = _validate.positive_int("max_items", max_items)
        return self._pages(url, cap)

    async def _pages(self, url: URL, max_items: int | None) -> AsyncGenerator[AgentRunList, None]:
        async for page, _ in _pagination.walk(self._fetch, url, max_items):
            yield page

    def iter(
        self,
        server_id: str | None = None,
        *,
        limit: int | None = None,
        max_items: int | None = None,
    ) -> AsyncGenerator[AgentRun, None]:
        """Every run of a server once, across pages (de-duplicated by ``id``).

        Args:
            server_id: the server to read. Default: the client's ``config.server_id``.
            limit: the page size, an ``int >= 1``. Default: the server's.
            max_items: stop after this many runs (``int >= 1``). Default: no cap.

        Raises:
            ValueError, TypeError: as ``pages``, raised by this call before any request;
            the request errors of ``list`` while iterating.

        Example::

            async for run in client.runs.iter("srv-0001", max_items=500):
                print(run.id, run.status)
        """
        url = self._url(self._server(server_id), limit)
        cap = _validate.positive_int("max_items", max_items)
        return self._runs(url, cap)

    async def _runs(self, url: URL, max_items: int | None) -> AsyncGenerator[AgentRun, None]:
        async for _, fresh in _pagination.walk(self._fetch, url, max_items):
            for run in fresh:
                yield run

    def list_many(
        self, server_ids: Iterable[str], *, limit: int | None = None, concurrency: int = 16
    ) -> AsyncGenerator[ServerRuns, None]:
        """One ``list`` per server, at most ``concurrency`` in flight, yielded as they complete.

        A server's failure is its ``ServerRuns.error``; it never stops the others. Ids are
        taken from ``server_ids`` lazily (a generator of a million ids is fine). Closing or
        cancelling the loop cancels what is in flight. A 429 slows the whole fan-out.

        Args:
            server_ids: an iterable of server ids (not a single ``str``).
            limit: runs per server, an ``int >= 1``. Default: the server's.
            concurrency: requests in flight at most (also capped by the client's
                ``max_connections``). Default 16.

        Yields:
            ``ServerRuns(server_id, result, error)``: exactly one of ``result`` (an
            ``AgentRunList``) and ``error`` (an ``ACPError``) is set.

        Raises:
            ValueError, TypeError: bad arguments, from this call; a bad id taken from
            ``server_ids`` raises ``ValueError`` from the loop.

        Example::

            async for outcome in client.runs.list_many(server_ids, limit=20):
                if outcome.error is None:
                    print(outcome.server_id, len(outcome.result.data))
        """
        page_size = _validate.positive_int("limit", limit)
        slots = _validate.int_at_least("concurrency", concurrency, 1)
        ids = _validate.server_id_iterable(server_ids)
        return as_completed_bounded(
            ids,
            self._one_server(page_size),
            self._slots(slots),
            _server_runs,
            check=_validate.taken_server_id,
        )

    def _slots(self, concurrency: int) -> int:
        """Never more in flight than the connection pool can carry."""
        return min(concurrency, self._transport.pool_limit() or concurrency)

    def _one_server(self, limit: int | None) -> Any:
        """One server's request; its page is built by ``_server_runs`` as it is taken."""
        transport = self._transport

        async def fetch(server_id: str) -> _Fetched:
            try:
                return server_id, await transport.get_later(
                    self._url(server_id, limit), _parse_page
                )
            except ACPError as exc:
                return server_id, exc

        return fetch

    def watch(
        self,
        server_ids: Iterable[str],
        *,
        interval: float = 5.0,
        limit: int = 50,
        concurrency: int = 16,
        state: WatchState | None = None,
    ) -> AsyncGenerator[RunEvent, None]:
        """Poll ``server_ids`` and yield a ``RunEvent`` per created or updated run, or error.

        Every server is polled every ``interval`` seconds (with jitter). The first poll
        reports each run as ``"created"``; later ones report new runs as ``"created"``
        and runs whose fields changed as ``"updated"`` (``event.previous`` holds a
        summary of the previous state, with at least ``.status``). A failed poll is an
        event of kind ``"error"`` (``event.error``); that server is then polled on a
        backing-off cadence (at most 32x ``interval``) while the others go on. Runs
        forever: break out of the loop or cancel it to stop.

        Args:
            server_ids: an iterable of server ids (not a single ``str``).
            interval: seconds between polls of a server. Default 5.
            limit: runs per poll, an ``int >= 1``; a page of only new runs is re-polled
                with a larger limit, so no run is missed between polls. Default 50.
            concurrency: polls in flight at most. Default 16.
            state: a ``WatchState`` to resume from (see ``WatchState.to_dict``), or to
                inspect afterwards. Default: a fresh one.

        Raises:
            ValueError, TypeError: bad arguments.
            AuthenticationError: from the loop: no poll can succeed without a new token.
            BadRequestError, UnprocessableEntityError: from the loop, when the watch's own
                request is refused before any server answered it (which errors end a
                watch is ``_retry.LOOP_ENDING``'s answer).

        Example::

            async for event in client.runs.watch(["srv-0001", "srv-0002"], interval=10):
                if event.kind == "error":
                    print(event.server_id, event.error)
                else:
                    print(event.kind, event.server_id, event.run.id, event.run.status)
        """
        watcher = Watcher(
            self._fetch_page,
            _validate.server_id_iterable(server_ids),
            interval=_validate.positive_seconds("interval", interval),
            limit=_validate.int_at_least("limit", limit, 1),
            concurrency=self._slots(_validate.int_at_least("concurrency", concurrency, 1)),
            state=WatchState() if state is None else state,
            observer=self._transport.observer,
        )
        return watcher.events()

    async def wait_for(
        self,
        server_id: str,
        run_id: str,
        *,
        interval: float = 2.0,
        timeout: float = 300.0,  # noqa: ASYNC109 - the contract's signature
        limit: int = 100,
    ) -> AgentRun:
        """Poll until run ``run_id`` is terminal (completed, failed, cancelled); return it.

        Transient errors and invalid responses are retried until the deadline (others
        are raised).

        Args:
            server_id: the server the run belongs to.
            run_id: the run's id.
            interval: seconds between polls. Default 2.
            timeout: seconds to wait in all. Default 300.
            limit: how many of the server's newest runs each poll reads; the run must be
                among them. Default 100.

        Returns:
            The run, in its terminal state.

        Raises:
            WaitTimeoutError: after ``timeout`` seconds (a ``TimeoutError``); its ``.run``
                is the last state seen, or None; its ``__cause__`` is the last poll's
                error, if that poll failed.
            ValueError, TypeError: bad arguments, before any request.
            AuthenticationError, ...: an error no later poll can fix.

        Example::

            run = await client.runs.wait_for("srv-0001", "run-42", timeout=60)
            print(run.status, run.output)
        """
        url = self._url(server_id, limit)
        if not isinstance(run_id, str) or not run_id:
            raise ValueError(f"run_id must be a non-empty str, got {run_id!r}")
        pause = _validate.positive_seconds("interval", interval)
        deadline = asyncio.get_running_loop().time() + _validate.positive_seconds(
            "timeout", timeout
        )
        last: AgentRun | None = None  # the newest state seen
        missing = False  # the last successful poll did not list the run
        error: ACPError | None = None  # the last poll's error, if it failed
        try:
            async with asyncio.timeout_at(deadline):
                while True:
                    polled = await self._poll_run(url)
                    if isinstance(polled, ACPError):
                        error = polled
                    else:
                        error = None
                        found = next((run for run in polled.data if run.id == run_id), None)
                        if found is None and not missing:
                            log.warning(
                                "wait_for: run %s is not among the newest %d runs of %s",
                                run_id,
                                limit,
                                server_id,
                            )
                        missing = found is None
                        last = found or last
                        if found is not None and found.is_terminal:
                            return found
                    await asyncio.sleep(pause)
        except TimeoutError as exc:
            if isinstance(exc, ACPError):
                raise
            raise _wait_timeout(
                server_id, run_id, last, missing=missing, timeout=timeout, limit=limit
            ) from error

    async def _poll_run(self, url: URL) -> AgentRunList | ACPError:
        """The newest runs, or the error of a poll to try again (``LOOP_ENDING``)."""
        try:
            page, _ = await self._fetch(url)
        except ACPError as exc:
            if decide(exc, Context.WAIT_FOR) is Verdict.END:
                raise
            log.info("wait_for: polling %s failed, will poll again: %s", url, exc)
            return exc
        return page


def _server_runs(fetched: _Fetched) -> ServerRuns:
    """A server's outcome, its page decoded and structured now (as the consumer takes it)."""
    server_id, outcome = fetched
    if isinstance(outcome, ACPError):
        return ServerRuns(server_id, error=outcome)
    try:
        return ServerRuns(server_id, result=outcome.value())
    except ACPError as exc:
        return ServerRuns(server_id, error=exc)


def runs_for(transport: Transport) -> Runs:
    """``client.runs`` of the client that sends through ``transport`` (``Runs`` has no
    public constructor: users never make one)."""
    runs = object.__new__(Runs)
    runs._transport = transport
    return runs


@attrs.frozen
class PollSource:
    """What a poller outside this module (a fleet worker) takes from a client: the one
    seam between ``client.runs`` and ``acp_async.fleet``.

    Attributes:
        fetch: one page of a server, the watch engine's way (``FetchPage``: the body's
            bytes peeked at first, then parsed inside the request).
        concurrency: how many polls to run at once, never more than the client's
            connection pool carries.
    """

    fetch: FetchPage
    concurrency: int


def poll_source(runs: Runs, concurrency: int) -> PollSource:
    """What ``runs`` (a client's ``client.runs``) gives a poller that runs at most
    ``concurrency`` polls at once: the same fetch and cap as ``watch()`` uses."""
    return PollSource(runs._fetch_page, runs._slots(concurrency))


def _wait_timeout(
    server_id: str, run_id: str, last: AgentRun | None, *, missing: bool, timeout: float, limit: int
) -> WaitTimeoutError:
    where = f"the newest {limit} runs of server {server_id!r}"
    if last is None:
        message = f"run {run_id!r} never appeared among {where} within {timeout:g}s"
    elif missing:
        message = (
            f"run {run_id!r} was last seen {last.status}, then left {where}; "
            f"gave up after {timeout:g}s (a larger limit keeps it in view)"
        )
    else:
        message = (
            f"run {run_id!r} of server {server_id!r} was still {last.status} after {timeout:g}s"
        )
    return WaitTimeoutError(message, server_id=server_id, run_id=run_id, run=last)
