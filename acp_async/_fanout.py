"""A bounded concurrent map that yields results as they complete.

Items are pulled from the iterable only as slots free up, so a generator of a
million ids costs ``concurrency`` tasks, not a million. Leaving early (``break``,
``aclose()``, cancellation) cancels and awaits what is in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def _no_check(item: object) -> None:
    return None


async def as_completed_bounded(
    items: Iterable[T],
    work: Callable[[T], Awaitable[R]],
    concurrency: int,
    check: Callable[[T], object] = _no_check,
) -> AsyncIterator[R]:
    """Run ``work`` over ``items``, at most ``concurrency`` at a time, yielding as each ends.

    ``check`` runs on each item as it is taken; what it raises ends the iteration.
    """
    source = iter(items)
    exhausted = False
    pending: set[asyncio.Future[R]] = set()
    done: list[asyncio.Future[R]] = []
    try:
        while True:
            while not exhausted and len(pending) < concurrency:
                for item in source:
                    check(item)
                    pending.add(asyncio.ensure_future(work(item)))
                    break
                else:
                    exhausted = True
            if not pending:
                return
            finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            done = list(finished)
            while done:
                yield done.pop().result()
    finally:
        for task in pending:
            task.cancel()
        # Await the cancelled ones, and collect results nobody will read, so no task is
        # left behind and none logs "exception was never retrieved".
        await asyncio.gather(*pending, *done, return_exceptions=True)
