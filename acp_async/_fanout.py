"""A bounded concurrent map that yields results as they complete.

Items are pulled from the iterable only as slots free up, so a generator of a
million ids costs ``concurrency`` tasks, not a million. Leaving early (``break``,
``aclose()``, cancellation) cancels and awaits what is in flight.

Each task reports its own completion (a done callback), so a result costs O(1)
however wide the fan-out: ``asyncio.wait`` would re-register a callback on every
pending task for every result.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")
S = TypeVar("S")


def _no_check(item: object) -> None:
    return None


async def as_completed_bounded(
    items: Iterable[T],
    work: Callable[[T], Awaitable[R]],
    concurrency: int,
    finish: Callable[[R], S],
    check: Callable[[T], object] = _no_check,
) -> AsyncGenerator[S, None]:
    """Run ``work`` over ``items``, at most ``concurrency`` at a time, yielding
    ``finish(result)`` as each ends.

    ``check`` runs on each item as it is taken; what it raises ends the iteration.
    ``finish`` runs in the consumer's task, on each result as it is taken: what it builds
    is used (and freed) before the next is built, while the results not yet taken wait
    as ``work`` left them.
    """
    loop = asyncio.get_running_loop()
    source = iter(items)
    exhausted = False
    pending: set[asyncio.Future[R]] = set()
    finished: deque[asyncio.Future[R]] = deque()
    wake: asyncio.Future[None] | None = None

    def on_done(task: asyncio.Future[R]) -> None:
        pending.discard(task)
        finished.append(task)
        if wake is not None and not wake.done():
            wake.set_result(None)

    try:
        while True:
            if finished:
                yield finish(finished.popleft().result())
            # Refill after each result is taken, so ids are pulled only as slots free up.
            while not exhausted and len(pending) < concurrency:
                for item in source:
                    check(item)
                    task = asyncio.ensure_future(work(item))
                    pending.add(task)
                    task.add_done_callback(on_done)
                    break
                else:
                    exhausted = True
            if finished:
                continue
            if not pending:
                return
            wake = loop.create_future()
            await wake
    finally:
        for left in pending:
            left.cancel()
        # Await the cancelled ones, and collect results nobody will read, so no task is
        # left behind and none logs "exception was never retrieved".
        await asyncio.gather(*pending, *finished, return_exceptions=True)
