"""``client.runs``: the agent-runs endpoint and the helpers built on it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import Any, TypeVar

from yarl import URL

from . import _converter, _pagination, _validate
from ._fanout import as_completed_bounded
from ._log import log
from ._retry import Context, Verdict, decide
from ._transport import Transport
from ._watch import Watcher, WatchState
from .errors import ACPError, WaitTimeoutError
from .models import AgentRun, AgentRunList, RunEvent, ServerRuns

T = TypeVar("T")

__all__ = ("Runs",)


def _parse_page(value: Any) -> AgentRunList:
    return _converter.structure(value, AgentRunList)


class Runs:
    """Reads ``GET /v1/servers/{serverId}/runtime/agent/runs``."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

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

    async def list(self, server_id: str, *, limit: int | None = None) -> AgentRunList:
        """One page of a server's runs (the newest ``limit`` of them)."""
        page, _ = await self._fetch(self._url(server_id, limit))
        return page

    def pages(
        self, server_id: str, *, limit: int | None = None, max_items: int | None = None
    ) -> AsyncGenerator[AgentRunList, None]:
        """Each page as received, following same-origin ``Link: rel="next"`` headers."""
        url = self._url(server_id, limit)  # checked now, before any request
        cap = _validate.positive_int("max_items", max_items)
        return self._pages(url, cap)

    async def _pages(self, url: URL, max_items: int | None) -> AsyncGenerator[AgentRunList, None]:
        async for page, _ in _pagination.walk(self._fetch, url, max_items):
            yield page

    def iter(
        self, server_id: str, *, limit: int | None = None, max_items: int | None = None
    ) -> AsyncGenerator[AgentRun, None]:
        """Every run once, across pages; ``limit`` is the page size."""
        url = self._url(server_id, limit)
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

        A server's failure is its ``ServerRuns.error``; it never stops the others.
        """
        page_size = _validate.positive_int("limit", limit)
        slots = _validate.int_at_least("concurrency", concurrency, 1)
        ids = _validate.server_id_iterable(server_ids)
        return as_completed_bounded(
            ids, self._one_server(page_size), self._slots(slots), check=_validate.taken_server_id
        )

    def _slots(self, concurrency: int) -> int:
        """Never more in flight than the connection pool can carry."""
        return min(concurrency, self._transport.pool_limit() or concurrency)

    def _one_server(self, limit: int | None) -> Any:
        async def fetch(server_id: str) -> ServerRuns:
            try:
                return ServerRuns(server_id, result=await self.list(server_id, limit=limit))
            except ACPError as exc:
                return ServerRuns(server_id, error=exc)

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

        Runs forever; break out or cancel to stop. Pass a ``WatchState`` to resume.
        An ``AuthenticationError`` ends the watch (no poll can succeed without a new
        token), and so does a 400/422 while no server has answered the watch's request;
        which errors end it is ``_retry.LOOP_ENDING``'s answer.
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
        """Poll until run ``run_id`` is terminal and return it.

        Transient errors and invalid responses are retried until the deadline (others
        are raised); after ``timeout`` seconds a ``WaitTimeoutError`` (a ``TimeoutError``)
        carries the last state seen, or None, and has the last poll's error (if it
        failed) as its ``__cause__``.
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
