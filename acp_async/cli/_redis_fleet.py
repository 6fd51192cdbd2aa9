"""``acp-async fleet add|remove|worker|events|status``: a fleet watched through Redis.

Needs the ``redis`` extra. ``--redis`` falls back to ``ACP_REDIS_URL``, ``--fleet`` to
``default``. ``worker`` and ``events`` run until SIGTERM or Ctrl-C and then exit 0 (the
worker hands its claims back first); a refused API token ends the worker with exit 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .._client import ACPClient
from .._converter import to_json
from ..errors import AuthenticationError
from ._fleet import UsageError, server_ids
from ._report import clean, warn

if TYPE_CHECKING:
    from ..fleet import FleetEvent, FleetStatus, RedisFleet

__all__ = ("add_commands",)

REDIS_URL_ENV = "ACP_REDIS_URL"
OK, FAILED = 0, 1


def _count(text: str) -> int:
    value = int(text) if text.isdecimal() else 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def add_commands(commands: Any) -> None:
    """Add ``fleet`` and its commands to the CLI's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--redis", metavar="URL", help=f"Redis URL (default: ${REDIS_URL_ENV})")
    common.add_argument("--fleet", default="default", metavar="NAME", help="fleet name (default)")
    common.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v, -vv)")
    ids = argparse.ArgumentParser(add_help=False)
    ids.add_argument("server_ids", nargs="*", metavar="SERVER_ID")
    ids.add_argument("--servers-file", metavar="FILE", help="more ids, one per line ('-': stdin)")

    fleet = commands.add_parser(
        "fleet",
        help="watch a fleet with many workers through Redis (extra 'redis')",
        description="A fleet of ACP servers watched by any number of workers through Redis.",
    )
    sub = fleet.add_subparsers(dest="fleet_command", required=True, metavar="COMMAND")
    add = sub.add_parser("add", parents=[common, ids], help="add servers to the fleet")
    add.set_defaults(handler=_add)
    remove = sub.add_parser("remove", parents=[common, ids], help="remove servers")
    remove.set_defaults(handler=_remove)

    worker = sub.add_parser(
        "worker", parents=[common], help="poll the fleet's due servers until stopped"
    )
    worker.add_argument("--base-url", metavar="URL", help="API base URL (default: environment)")
    worker.add_argument("--concurrency", type=_count, default=16, metavar="N", help="polls (16)")
    worker.add_argument("--interval", type=_seconds, default=30.0, metavar="S", help="busy (30)")
    worker.add_argument("--limit", type=_count, default=50, metavar="N", help="runs a poll (50)")
    worker.add_argument("--lease", type=_seconds, default=60.0, metavar="S", help="claim (60)")
    worker.set_defaults(handler=_worker)

    events = sub.add_parser("events", parents=[common], help="print the fleet's events")
    events.add_argument("--group", default="cli", help="consumer group (cli)")
    events.add_argument("--consumer", default=socket.gethostname(), help="consumer (hostname)")
    events.add_argument("--json", action="store_true", help="one JSON object per line")
    events.set_defaults(handler=_events)

    status = sub.add_parser("status", parents=[common], help="servers, workers, backlog")
    status.add_argument("--json", action="store_true", help="one JSON object")
    status.set_defaults(handler=_status)


def _open(args: argparse.Namespace, **options: Any) -> RedisFleet:
    try:
        from ..fleet import RedisFleet  # noqa: PLC0415 - the optional extra
    except ImportError:
        raise UsageError("fleet needs the 'redis' extra: pip install 'acp-async[redis]'") from None
    url = args.redis or os.environ.get(REDIS_URL_ENV)
    if not url:
        raise UsageError(f"no Redis: give --redis URL or set {REDIS_URL_ENV}")
    _logging(args.verbose)
    try:
        return RedisFleet(url, name=args.fleet, **options)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


def _logging(verbose: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log = logging.getLogger("acp_async")
    log.setLevel(
        logging.WARNING if not verbose else logging.INFO if verbose == 1 else logging.DEBUG
    )
    log.addHandler(handler)


def _ids(args: argparse.Namespace) -> list[str]:
    return server_ids(args.server_ids, args.servers_file, None)[0]


def _add(args: argparse.Namespace) -> int:
    ids = _ids(args)
    fleet = _open(args)

    async def add() -> int:
        async with fleet:
            new = await fleet.add(ids)
            total = len(await fleet.server_ids())
        print(f"added {new} new of {len(ids)} servers; the fleet {fleet.name!r} has {total}")
        return OK

    return _redis_command(add)


def _remove(args: argparse.Namespace) -> int:
    ids = _ids(args)
    fleet = _open(args)

    async def remove() -> int:
        async with fleet:
            gone = await fleet.remove(ids)
        print(f"removed {gone} of {len(ids)} servers from the fleet {fleet.name!r}")
        return OK

    return _redis_command(remove)


def _worker(args: argparse.Namespace) -> int:
    fleet = _open(args, interval=args.interval, limit=args.limit, lease=args.lease)
    try:
        client = ACPClient(base_url=args.base_url, max_connections=max(100, args.concurrency))
    except ValueError as exc:
        raise UsageError(str(exc)) from None

    async def work() -> int:
        async with client, fleet:
            try:
                await fleet.work(client, concurrency=args.concurrency)
            except AuthenticationError as exc:
                warn(f"the API refused the token ({exc.status}); stopping: {exc.message}")
                return FAILED
        return OK  # pragma: no cover - work() returns only by raising

    return _until_signal(work)


def _events(args: argparse.Namespace) -> int:
    fleet = _open(args)

    async def read() -> int:
        async with fleet:
            stream = fleet.events(args.group, args.consumer)
            async with contextlib.aclosing(stream):
                async for event in stream:
                    line = json.dumps(event_json(event)) if args.json else event_line(event)
                    print(line, flush=True)
                    await fleet.ack(args.group, event)
        return OK  # pragma: no cover - the stream has no end

    return _until_signal(read)


def _status(args: argparse.Namespace) -> int:
    fleet = _open(args)

    async def status() -> int:
        async with fleet:
            now = await fleet.status()
        print(json.dumps(status_json(now)) if args.json else status_table(now))
        return OK

    return _redis_command(status)


def event_json(event: FleetEvent) -> dict[str, Any]:
    return {
        "id": event.id,
        "key": event.key,
        "kind": event.kind,
        "serverId": event.server_id,
        "run": to_json(event.run),
        "previousStatus": None if event.previous_status is None else str(event.previous_status),
    }


def event_line(event: FleetEvent) -> str:
    run = event.run
    status = str(run.status or "-")
    if event.previous_status is not None and str(event.previous_status) != status:
        status = f"{event.previous_status} -> {status}"
    parts = (event.kind, event.server_id, run.id or "-", status, run.title or "")
    return clean("  ".join(parts))


def status_json(status: FleetStatus) -> dict[str, Any]:
    return {
        "servers": status.servers,
        "workers": status.workers,
        "overdue": status.overdue,
        "oldestOverdue": round(status.oldest_overdue, 3),
        "failing": status.failing,
        "streamLength": status.stream_length,
        "pending": status.pending,
    }


def status_table(status: FleetStatus) -> str:
    rows = [
        ("servers", str(status.servers)),
        ("workers", str(status.workers)),
        ("overdue", f"{status.overdue} (oldest {status.oldest_overdue:.1f}s)"),
        ("failing", str(status.failing)),
        ("stream length", str(status.stream_length)),
    ]
    rows += [(f"pending [{group}]", str(count)) for group, count in sorted(status.pending.items())]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def _redis_command(make: Callable[[], Awaitable[int]]) -> int:
    """A one-shot command: Redis unreachable is one line and exit 1."""
    from redis.exceptions import RedisError  # noqa: PLC0415 - the optional extra

    async def guarded() -> int:
        try:
            return await make()
        except (RedisError, OSError) as exc:
            warn(f"Redis: {type(exc).__name__}: {exc}")
            return FAILED

    return asyncio.run(guarded())


def _until_signal(make: Callable[[], Awaitable[int]]) -> int:
    """Run until SIGTERM or SIGINT cancels it (cleanups run), then exit 0."""

    async def guarded() -> int:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        stopped: list[int] = []

        def stop(signum: int) -> None:
            stopped.append(signum)
            task.cancel()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop, signum)
        try:
            return await make()
        except asyncio.CancelledError:
            if not stopped:
                raise
            return OK
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    try:
        return asyncio.run(guarded())
    except KeyboardInterrupt:
        return OK
