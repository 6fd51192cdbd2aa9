"""A background worker that watches a fleet of ACP servers and logs what changes.

    ACP_API_KEY=... python examples/fleet_worker.py servers.txt [--state state.json]

Run N copies to split a fleet without coordination: give each copy
``WORKER_INDEX`` (0 to N-1) and ``WORKER_COUNT`` (N); ``acp_async.shard`` hands
every server to exactly one of them. SIGTERM or SIGINT stops the worker cleanly:
the watch is cancelled, its state saved (so a restart does not report every
run again), the client closed, and the process exits 0 without a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path

from acp_async import ACPClient, ACPError, RunEvent, WatchState, shard

log = logging.getLogger("fleet_worker")


def load_state(path: Path | None) -> WatchState:
    if path is None or not path.exists():
        return WatchState()
    return WatchState.from_dict(json.loads(path.read_text()))


def save_state(path: Path | None, state: WatchState) -> None:
    if path is not None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state.to_dict()))
        tmp.replace(path)  # atomic: a crash mid-write never leaves half a file


def describe(event: RunEvent) -> str:
    if event.kind == "error":
        return f"{event.server_id}: poll failed: {event.error}"
    run = event.run
    assert run is not None
    was = f" (was {event.previous.status})" if event.previous else ""
    return f"{event.server_id}: run {run.id} {event.kind}: {run.status}{was} {run.title or ''}"


async def watch(
    client: ACPClient, server_ids: list[str], state: WatchState, interval: float
) -> None:
    async for event in client.runs.watch(server_ids, interval=interval, state=state):
        log.info("%s", describe(event))


async def main(server_ids: list[str], state_path: Path | None, interval: float) -> int:
    index = int(os.environ.get("WORKER_INDEX", "0"))
    count = int(os.environ.get("WORKER_COUNT", "1"))
    mine = list(shard(server_ids, index, count))
    log.info("worker %d of %d watching %d of %d servers", index, count, len(mine), len(server_ids))
    state = load_state(state_path)
    async with ACPClient() as client:
        worker = asyncio.create_task(watch(client, mine, state, interval))
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, worker.cancel)
        await asyncio.wait([worker])
        save_state(state_path, state)
        if worker.cancelled():
            log.info("stopped; state saved")
            return 0
        try:
            worker.result()
        except ACPError as exc:  # e.g. AuthenticationError: no poll can succeed
            log.error("watch ended: %s", exc)
            return 1
    return 0


def cli() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("servers_file", type=Path, help="one server id per line")
    parser.add_argument("--state", type=Path, help="where to keep the watch state (JSON)")
    parser.add_argument("--interval", type=float, default=5.0)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr
    )
    lines = args.servers_file.read_text().splitlines()
    server_ids = [line.strip() for line in lines if line.strip()]
    return asyncio.run(main(server_ids, args.state, args.interval))


if __name__ == "__main__":
    sys.exit(cli())
