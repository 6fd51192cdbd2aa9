"""``fake-server``: the SDK's own FakeACPServer on a port, until stopped."""

from __future__ import annotations

import argparse
import asyncio
import math
import random

from ..testing import FakeACPServer
from ._report import warn


async def serve(args: argparse.Namespace) -> int:
    """Serve until a signal cancels us; the fake closes on the way out."""
    fake = FakeACPServer(
        token=args.token,
        servers=args.servers,
        runs_per_server=args.runs,
        seed=args.seed,
        shape=args.shape,
        fault_rate=args.fault_rate,
        latency=args.latency,
        host=args.host,
        port=args.port,
    )
    try:
        await fake.start()
    except OSError as exc:
        warn(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
        return 1
    try:
        ids = fake.server_ids
        print(
            f"FakeACPServer: {len(ids)} servers ({ids[0]} .. {ids[-1]}), {args.runs} runs each",
            f"  export ACP_BASE_URL={fake.base_url}",
            f"  export ACP_API_KEY={fake.token}",
            f"  then: seq -f 'srv-%04g' 1 {len(ids)} | acp-async runs poll --servers-file -",
            "Ctrl-C stops it.",
            sep="\n",
            flush=True,
        )
        await churn(
            fake,
            ids,
            step_every=args.progress_every,
            new_run_every=args.new_run_every,
            rng=random.Random(args.seed),
        )
    finally:
        await fake.close()
    return 0


async def churn(
    fake: FakeACPServer,
    ids: list[str],
    *,
    step_every: float,
    new_run_every: float,
    rng: random.Random,
) -> None:
    """Keep ``ids`` lively, forever: every ``step_every`` seconds each unfinished run moves a
    status forward, and every ``new_run_every`` seconds one of them gets a new queued run.

    Driven by the clock here rather than by the fake's ``progress_every`` (which counts
    from a server's last request), so a run seen late still shows each of its steps.
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    next_step = start + step_every if step_every else math.inf
    next_run = start + new_run_every if new_run_every else math.inf
    while True:
        due = min(next_step, next_run)
        if due == math.inf:
            await asyncio.Event().wait()
        await asyncio.sleep(max(0.0, due - loop.time()))
        if loop.time() >= next_step:
            for server_id in ids:
                fake.advance(server_id)
            next_step += step_every
        if loop.time() >= next_run:
            fake.add_run(rng.choice(ids))
            next_run += new_run_every
