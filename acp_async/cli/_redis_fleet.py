"""``acp-async fleet add|remove|worker|events|status``: a fleet watched through Redis.

Needs the ``redis`` extra. ``--redis`` falls back to ``ACP_REDIS_URL``, ``--fleet`` to
``default``. ``worker`` and ``events`` run until SIGTERM or Ctrl-C and then exit 0 (the
worker hands its claims back first); a refused API token ends the worker with exit 1.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from .. import ACPClient, AuthenticationError, to_json
from . import _metrics
from ._parser import FAILED, OK, Command, UsageError, add_command, count, seconds
from ._report import clean, warn
from ._servers import server_ids

if TYPE_CHECKING:
    from ..fleet import FleetEvent, FleetStatus, RedisFleet
    from ._parser import Subcommands

__all__ = ("register",)

REDIS_URL_ENV = "ACP_REDIS_URL"


def register(commands: Subcommands) -> None:
    """``fleet add|remove|worker|events|status``."""
    fleet = commands.add_parser(
        "fleet",
        help="watch a fleet with many workers through Redis (extra 'redis')",
        description="A fleet of ACP servers watched by any number of workers through Redis.",
    )
    sub = fleet.add_subparsers(dest="fleet_command", required=True, metavar="COMMAND")
    for name, run, text in (("add", _add, "add servers"), ("remove", _remove, "remove servers")):
        parser = add_command(sub, name, Command(run, check=_check_ids), help=text)
        _common(parser)
        parser.add_argument("server_ids", nargs="*", metavar="SERVER_ID")
        parser.add_argument("--servers-file", metavar="FILE", help="more ids ('-': stdin)")

    worker = add_command(
        sub,
        "worker",
        Command(_worker, check=_check_redis, client=True, on_signal=OK),
        help="poll the fleet's due servers until stopped",
    )
    _common(worker)
    worker.add_argument("--concurrency", type=count, default=16, metavar="N", help="polls (16)")
    worker.add_argument("--interval", type=seconds, default=30.0, metavar="S", help="busy (30)")
    worker.add_argument("--limit", type=count, default=50, metavar="N", help="runs a poll (50)")
    worker.add_argument("--lease", type=seconds, default=60.0, metavar="S", help="claim (60)")
    _metrics.add_options(worker)

    events = add_command(
        sub,
        "events",
        Command(_events, check=_check_redis, global_options=True, on_signal=OK),
        help="print the fleet's events (and acknowledge them)",
    )
    _common(events)
    events.add_argument("--group", default="cli", help="consumer group (cli)")
    events.add_argument("--consumer", default=socket.gethostname(), help="consumer (hostname)")

    status = add_command(
        sub,
        "status",
        Command(_status, check=_check_redis, global_options=True),
        help="servers, workers, backlog",
    )
    _common(status)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--redis", metavar="URL", help=f"Redis URL (default: ${REDIS_URL_ENV})")
    parser.add_argument("--fleet", default="default", metavar="NAME", help="fleet name (default)")


def _check_redis(args: argparse.Namespace) -> None:
    try:
        import redis  # noqa: F401, PLC0415 - the optional extra: is it installed?
    except ImportError:
        raise UsageError("fleet needs the 'redis' extra: pip install 'acp-async[redis]'") from None
    if not (args.redis or os.environ.get(REDIS_URL_ENV)):
        raise UsageError(f"no Redis: give --redis URL or set {REDIS_URL_ENV}")


def _check_ids(args: argparse.Namespace) -> None:
    _check_redis(args)
    args.ids = server_ids(args.server_ids, args.servers_file, None)[0]


def _open(args: argparse.Namespace, **options: Any) -> RedisFleet:
    from ..fleet import RedisFleet  # noqa: PLC0415 - the optional extra

    url = args.redis or os.environ[REDIS_URL_ENV]
    try:
        return RedisFleet(url, name=args.fleet, **options)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None


async def _add(args: argparse.Namespace) -> int:
    fleet = _open(args)

    async def add() -> None:
        new = await fleet.add(args.ids)
        total = len(await fleet.server_ids())
        print(f"added {new} new of {len(args.ids)} servers; the fleet {fleet.name!r} has {total}")

    return await _one_shot(fleet, add)


async def _remove(args: argparse.Namespace) -> int:
    fleet = _open(args)

    async def remove() -> None:
        gone = await fleet.remove(args.ids)
        print(f"removed {gone} of {len(args.ids)} servers from the fleet {fleet.name!r}")

    return await _one_shot(fleet, remove)


async def _status(args: argparse.Namespace) -> int:
    fleet = _open(args)

    async def status() -> None:
        now = await fleet.status()
        print(json.dumps(status_json(now)) if args.json else status_table(now))

    return await _one_shot(fleet, status)


async def _one_shot(fleet: RedisFleet, job: Callable[[], Awaitable[None]]) -> int:
    """Redis unreachable is one line and exit 1."""
    from redis.exceptions import RedisError  # noqa: PLC0415 - the optional extra

    try:
        async with fleet:
            await job()
    except (RedisError, OSError) as exc:
        warn(f"Redis: {type(exc).__name__}: {exc}")
        return FAILED
    return OK


async def _worker(args: argparse.Namespace, client: ACPClient) -> int:
    """Poll the fleet's due servers until stopped; with ``--metrics-port``, serve ``/metrics``
    (the client's requests, the watch engine's polls and events, the fleet's commits)."""
    fleet = _open(
        args,
        interval=args.interval,
        limit=args.limit,
        lease=args.lease,
        metrics=_metrics.observer(args),
    )

    async def work() -> int:
        async with fleet:
            try:
                await fleet.work(client, concurrency=args.concurrency)
            except AuthenticationError as exc:
                warn(f"the API refused the token ({exc.status}); stopping: {exc.message}")
                return FAILED
        return OK  # pragma: no cover - work() returns only by raising

    return await _metrics.serve_while(args, work)


async def _events(args: argparse.Namespace) -> int:
    fleet = _open(args)
    async with fleet:
        stream = fleet.events(args.group, args.consumer)
        async with contextlib.aclosing(stream):
            async for event in stream:
                line = json.dumps(event_json(event)) if args.json else event_line(event)
                print(line, flush=True)
                await fleet.ack(args.group, event)
    return OK  # pragma: no cover - the stream has no end


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
