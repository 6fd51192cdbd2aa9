"""Page following: same-origin ``Link: rel="next"``, de-duplication by id, a clear ending."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable

import attrs
from yarl import URL

from .models import AgentRun, AgentRunList

Fetch = Callable[[URL], Awaitable[tuple[AgentRunList, URL | None]]]


async def walk(
    fetch: Fetch, first: URL, max_items: int | None
) -> AsyncGenerator[tuple[AgentRunList, list[AgentRun]], None]:
    """Yield each page with the runs it adds, until no next link, a repeated link, a page that
    adds nothing new, or ``max_items`` runs (the last page is then cut to the cap).

    The first page is always yielded, even empty; an empty first page ends it too.
    """
    seen_ids: set[str] = set()
    seen_urls = {first}
    total = 0
    url = first
    while True:
        page, next_url = await fetch(url)
        fresh = _fresh_runs(page, seen_ids)
        # Runs without an id cannot be told apart, so only new ids count as progress.
        progress = any(run.id is not None for run in fresh)
        if not progress and url is not first:
            return  # nothing new (an empty page included): following on could never end
        if max_items is not None and total + len(fresh) >= max_items:
            fresh = fresh[: max_items - total]
            yield _cut_after(page, fresh[-1]) if fresh else page, fresh
            return
        total += len(fresh)
        yield page, fresh
        if not progress or next_url is None or next_url in seen_urls:
            return
        seen_urls.add(next_url)
        url = next_url


def _fresh_runs(page: AgentRunList, seen_ids: set[str]) -> list[AgentRun]:
    fresh = []
    for run in page.data:
        if run.id is None:
            fresh.append(run)  # nothing to de-duplicate on: every one counts
        elif run.id not in seen_ids:
            seen_ids.add(run.id)
            fresh.append(run)
    return fresh


def _cut_after(page: AgentRunList, last: AgentRun) -> AgentRunList:
    index = next(i for i, run in enumerate(page.data) if run is last)
    return attrs.evolve(page, data=page.data[: index + 1])
