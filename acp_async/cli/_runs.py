"""``runs list``, ``runs poll`` and ``runs watch``: thin loops over ``client.runs``."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, Callable, Iterator

from .. import _converter
from .._client import ACPClient
from ..errors import ACPError, AuthenticationError
from ..models import RunEvent, ServerRuns
from ._report import (
    clean,
    describe,
    emit,
    error_json,
    error_line,
    event_json,
    note,
    page_json,
    warn,
)


async def list_runs(client: ACPClient, server_id: str, *, limit: int | None, as_json: bool) -> int:
    """One page of one server's runs, newest first."""
    try:
        page = await client.runs.list(server_id, limit=limit)
    except ACPError as exc:
        error_line(server_id, exc)
        return 1
    if as_json:
        for run in page.data:
            emit(_converter.to_json(run))
        return 0
    from ._human import runs_table, stdout_console  # noqa: PLC0415 - rich is optional

    console = stdout_console()
    console.print(runs_table(page.data, width=console.width))
    return 0


async def poll(
    client: ACPClient,
    server_ids: list[str],
    *,
    limit: int | None,
    concurrency: int,
    as_json: bool,
) -> int:
    """Every server once, at most ``concurrency`` at a time; 1 when any server failed."""
    started = time.monotonic()
    stream = client.runs.list_many(server_ids, limit=limit, concurrency=concurrency)
    with _progress(len(server_ids), "polling servers") as advance:
        outcomes = await collect(
            stream, advance, (lambda outcome: emit(_server_json(outcome))) if as_json else None
        )
    failed = sum(1 for o in outcomes.values() if o.error is not None)
    if not as_json:
        from ._human import poll_table, stdout_console  # noqa: PLC0415 - rich is optional

        stdout_console().print(poll_table([outcomes[sid] for sid in server_ids]))
        elapsed = time.monotonic() - started
        note(f"polled {len(server_ids)} servers in {elapsed:.1f}s, {failed} failed")
    return 1 if failed else 0


async def collect(
    stream: AsyncGenerator[ServerRuns, None],
    advance: Callable[[bool], None],
    each: Callable[[ServerRuns], None] | None = None,
) -> dict[str, ServerRuns]:
    """A fan-out's outcomes by server, advancing the bar and reporting each failure."""
    outcomes: dict[str, ServerRuns] = {}
    async with contextlib.aclosing(stream):
        async for outcome in stream:
            outcomes[outcome.server_id] = outcome
            advance(outcome.error is not None)
            if outcome.error is not None:
                error_line(outcome.server_id, outcome.error)
            if each is not None:
                each(outcome)
    return outcomes


def _server_json(outcome: ServerRuns) -> dict[str, object]:
    if outcome.result is not None:
        return page_json(outcome.server_id, outcome.result)
    assert outcome.error is not None
    return {"serverId": outcome.server_id, "error": error_json(outcome.error)}


@contextlib.contextmanager
def _progress(total: int, label: str) -> Iterator[Callable[[bool], None]]:
    """The rich bar on a terminal's stderr; nothing without rich (``--json`` needs no extra)."""
    try:
        from ._human import progress  # noqa: PLC0415 - rich is optional
    except ImportError:
        yield lambda failed: None
        return
    with progress(total, label) as advance:
        yield advance


async def watch(
    client: ACPClient,
    server_ids: list[str],
    *,
    interval: float,
    limit: int,
    concurrency: int,
    as_json: bool,
) -> int:
    """Print each created or updated run as it is seen, until stopped (Ctrl-C, SIGTERM)."""
    show = None if as_json else _event_printer(server_ids)
    stream = client.runs.watch(server_ids, interval=interval, limit=limit, concurrency=concurrency)
    try:
        async with contextlib.aclosing(stream):
            async for event in stream:
                if event.error is not None:
                    error_line(event.server_id, event.error, "; still watching")
                if show is None:
                    emit(event_json(event))
                elif event.run is not None:
                    show(event)
    except AuthenticationError as exc:
        warn(f"watch stopped: {describe(exc)}; set a valid ACP_API_KEY")
        return 1
    return 0  # pragma: no cover - a watch with servers only ends by a signal or an error


def _event_printer(server_ids: list[str]) -> Callable[[RunEvent], None]:
    from ._human import event_line, stdout_console  # noqa: PLC0415 - rich is optional

    console = stdout_console()
    width = max(len(clean(sid)) for sid in server_ids)

    def show(event: RunEvent) -> None:
        console.print(event_line(event, width), no_wrap=True, overflow="ellipsis")

    return show
