"""``demo``: the SDK's main job against an in-process FakeACPServer, over real HTTP.

A fan-out over a few hundred flaky servers with a progress bar and a summary, then a
short live watch in which new runs go from queued to completed. It ends by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import time
from collections import Counter
from typing import TYPE_CHECKING

from .. import ACPClient, ServerRuns, WatchState, to_json
from ..testing import FakeACPServer
from ._fake import churn
from ._parser import Command, UsageError, add_command, count, needs_extra, seconds
from ._report import error_line
from ._runs import collect

if TYPE_CHECKING:
    from ._parser import Subcommands

# The demo's fake: slow and flaky enough that the progress bar and the retries show.
DEMO_LATENCY = 0.1
DEMO_FAULT_RATE = 0.03
DEMO_CONCURRENCY = 16
DEMO_STEP_EVERY = 1.5  # seconds per status step: queued -> running -> completed
DEMO_NEW_RUN_EVERY = 1.0
DEMO_WATCHED = 4
DEMO_WATCH_INTERVAL = 0.5
DEMO_SERVERS = 300
DEMO_SECONDS = 10.0
# How long `acp-async demo` takes, start to end, as measured (README says the same).
DEMO_TAKES = 13


def register(commands: Subcommands) -> None:
    """``demo`` (its two options are for tests and are not shown)."""
    demo = add_command(
        commands,
        "demo",
        Command(_demo, check=_need_rich),
        help=f"the SDK's main job against an embedded fake server, in about {DEMO_TAKES} s",
        description="Start a fake ACP server in-process, fan out over it, then watch it live; "
        f"it ends by itself in about {DEMO_TAKES} s.",
    )
    demo.add_argument("--servers", type=count, default=DEMO_SERVERS, help=argparse.SUPPRESS)
    demo.add_argument("--seconds", type=seconds, default=DEMO_SECONDS, help=argparse.SUPPRESS)


def _need_rich(args: argparse.Namespace) -> None:
    try:
        import rich  # noqa: F401, PLC0415 - the optional extra: is it installed?
    except ImportError:
        raise UsageError(needs_extra("the demo", "cli")) from None


async def _demo(args: argparse.Namespace) -> int:
    return await demo(servers=args.servers, seconds=args.seconds)


async def demo(*, servers: int, seconds: float) -> int:
    """The main job over real HTTP: a fan-out with progress and a summary, then a live watch."""
    from ._human import stdout_console  # noqa: PLC0415 - rich is optional

    console = stdout_console()
    started = time.monotonic()
    fake = FakeACPServer(
        servers=servers,
        runs_per_server=5,
        fault_rate=DEMO_FAULT_RATE,
        latency=DEMO_LATENCY,
    )
    # trust_env=False: the embedded server is on loopback, whatever HTTPS_PROXY says.
    async with fake, ACPClient(fake.token, base_url=fake.base_url, trust_env=False) as client:
        console.print(
            f"[bold]acp-async demo[/]: an embedded FakeACPServer at {fake.base_url}, "
            f"{servers} servers with 5 runs each;\n{DEMO_LATENCY * 1000:.0f} ms per response, "
            f"and {DEMO_FAULT_RATE:.0%} of responses fail on purpose (5xx, 429, cut connections)."
        )
        outcomes = await _fan_out(client, fake)
        await _live_watch(client, fake, outcomes, seconds)
    console.print(f"\n[bold]done[/] in {time.monotonic() - started:.1f}s.")
    console.print(
        "Next: [bold]acp-async fake-server[/] in one terminal, "
        "[bold]acp-async runs poll[/] / [bold]runs watch[/] in another."
    )
    return 0


async def _fan_out(client: ACPClient, fake: FakeACPServer) -> dict[str, ServerRuns]:
    from ._human import progress, status_summary, statuses_of, stdout_console  # noqa: PLC0415

    console = stdout_console()
    ids = fake.server_ids
    console.print(
        f"\n[bold]1. fan-out[/]  client.runs.list_many({len(ids)} servers, "
        f"concurrency={DEMO_CONCURRENCY})"
    )
    started = time.monotonic()
    stream = client.runs.list_many(ids, concurrency=DEMO_CONCURRENCY)
    outcomes: dict[str, ServerRuns] = {}
    with progress(len(ids), "reading servers") as advance:
        await collect(stream, outcomes, advance)
    elapsed = time.monotonic() - started
    counts: Counter[str] = sum((statuses_of(o.result) for o in outcomes.values()), Counter())
    failed = sum(1 for o in outcomes.values() if o.error is not None)
    faults = sum(1 for r in fake.requests if r.fault is not None)
    console.print(
        f"{len(ids)} servers in {elapsed:.1f}s ({len(ids) / elapsed:.0f} servers/s): "
        f"{counts.total()} runs, {failed} servers failed; "
        f"{faults} injected faults were retried away.\n"
    )
    console.print(status_summary(counts))
    return outcomes


async def _live_watch(
    client: ACPClient, fake: FakeACPServer, outcomes: dict[str, ServerRuns], seconds: float
) -> None:
    from ._human import event_line, stdout_console  # noqa: PLC0415 - rich is optional

    console = stdout_console()
    ids = fake.server_ids
    watched = ids[:: max(1, len(ids) // DEMO_WATCHED)][:DEMO_WATCHED]
    # Start from what the fan-out saw, so the watch shows changes, not every known run again:
    # a saved state is what `WatchState.to_dict()` writes, the runs of each server as JSON.
    saved = {}
    for sid in watched:
        result = outcomes[sid].result
        if result is not None:
            saved[sid] = [to_json(run) for run in result.data]
    state = WatchState.from_dict(saved)
    console.print(
        f"\n[bold]2. live watch[/]  client.runs.watch({len(watched)} servers, "
        f"interval={DEMO_WATCH_INTERVAL}, state=...) for {seconds:g}s, while new runs arrive"
    )
    kinds: Counter[str] = Counter()
    width = max(len(sid) for sid in watched)
    stream = client.runs.watch(watched, interval=DEMO_WATCH_INTERVAL, state=state)
    lively = churn(
        fake,
        watched,
        step_every=DEMO_STEP_EVERY,
        new_run_every=DEMO_NEW_RUN_EVERY,
        rng=random.Random(1),
    )
    newcomers = asyncio.create_task(lively)
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds), contextlib.aclosing(stream):
                async for event in stream:
                    kinds[event.kind] += 1
                    if event.error is not None:
                        error_line(event.server_id, event.error, "; still watching")
                    else:
                        console.print(event_line(event, width), no_wrap=True, overflow="ellipsis")
    finally:
        newcomers.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await newcomers
    console.print(
        f"{kinds['created']} created, {kinds['updated']} updated, {kinds['error']} errors "
        f"in {seconds:g}s"
    )
