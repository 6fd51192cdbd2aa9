"""The ``acp-async`` command line (for now: the embedded demo)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections import Counter
from collections.abc import Sequence

from .. import ACPClient
from ..testing import FakeACPServer


async def _demo(servers: int, watch_seconds: float) -> int:
    async with FakeACPServer(servers=servers, runs_per_server=5, progress_every=0.5) as fake:
        print(f"fake ACP server at {fake.base_url} with {servers} servers")
        async with ACPClient(fake.token, base_url=fake.base_url) as client:
            statuses: Counter[str] = Counter()
            errors = 0
            async for outcome in client.runs.list_many(fake.server_ids, concurrency=32):
                if outcome.result is None:
                    errors += 1
                    continue
                statuses.update(str(run.status) for run in outcome.result.data)
            print(f"fan-out over {servers} servers: {sum(statuses.values())} runs, {errors} errors")
            for status, count in statuses.most_common():
                print(f"  {status:<10} {count}")
            watched = fake.server_ids[:5]
            print(f"watching {len(watched)} servers for {watch_seconds:g}s:")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(watch_seconds):
                    async for event in client.runs.watch(watched, interval=0.5):
                        run = event.run
                        if run is not None:
                            print(f"  {event.kind:<8} {event.server_id} {run.id} {run.status}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="acp-async")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the main job against an embedded fake server")
    demo.add_argument("--servers", type=int, default=200)
    demo.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    return asyncio.run(_demo(args.servers, args.seconds))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
