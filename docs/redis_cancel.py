"""Does cancelling a task in the middle of a redis.asyncio command always stop it?

A task runs GET in a loop and is cancelled after a few milliseconds, ``--trials`` times.
A cancellation is *lost* when the task is still running half a second later (a cancel
ends it within a millisecond otherwise): redis-py, or asyncio under it, swallowed the
``CancelledError`` and the loop went on, as a worker would after SIGTERM. See
docs/redis8-hang.md.

    python docs/redis_cancel.py redis://127.0.0.1:6379/0
    python docs/redis_cancel.py --timeout-shim redis://127.0.0.1:6379/0

``--timeout-shim`` replaces the one ``asyncio.wait_for`` redis-py awaits a send with by
``asyncio.timeout`` (what ``wait_for`` is built on from Python 3.12): with it, Python 3.11
loses no cancellation. Exit status 1 when one was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import sys
import types
from collections.abc import Awaitable
from typing import Any

import redis
import redis.asyncio as aioredis
import redis.asyncio.connection


def timeout_shim() -> None:
    async def wait_for(awaitable: Awaitable[Any], seconds: float | None) -> Any:
        async with asyncio.timeout(seconds):
            return await awaitable

    shim = types.SimpleNamespace(**vars(asyncio))
    shim.wait_for = wait_for
    redis.asyncio.connection.asyncio = shim  # type: ignore[attr-defined,assignment]


async def get_loop(client: aioredis.Redis, stop: asyncio.Event) -> None:
    while not stop.is_set():
        await client.get("redis-cancel-probe")


async def probe(url: str, trials: int) -> int:
    # A socket_timeout, as any service sets one: redis-py then sends through wait_for.
    client = aioredis.Redis.from_url(url, socket_timeout=30)
    lost = 0
    for trial in range(trials):
        stop = asyncio.Event()
        task = asyncio.create_task(get_loop(client, stop))
        await asyncio.sleep(0.001 * (1 + trial % 5))
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=0.5)
        if not done:
            lost += 1
            stop.set()  # ends the loop that ignored its cancellation
            await task
    await client.aclose()
    return lost


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url", nargs="?", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--timeout-shim", action="store_true")
    args = parser.parse_args()
    if args.timeout_shim:
        timeout_shim()
    lost = asyncio.run(probe(args.url, args.trials))
    shim = ", wait_for -> timeout shim" if args.timeout_shim else ""
    print(
        f"Python {platform.python_version()}, redis-py {redis.__version__}{shim}: "
        f"{lost} of {args.trials} cancellations lost"
    )
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())
