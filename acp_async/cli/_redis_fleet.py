"""``acp-async fleet add|remove|worker|events|status|list``: a fleet watched through Redis.

Needs the ``redis`` extra. Redis is ``--redis URL`` or sentinels, each option also an
``ACP_REDIS_*`` variable (``_redis_options``; ``ACP_REDIS_URL`` or ``ACP_REDIS_PASSWORD``
keeps a password out of the process list, and every password given is blanked in what
the command prints); ``--fleet`` falls back to ``default``. ``worker`` and ``events`` run
until SIGTERM or Ctrl-C and then exit 0 (the worker hands its claims back first); a
refused API token ends the worker with exit 1, and so does a Redis error no retry can fix
(``FleetRedisError``: a refused password, an ACL denial, a fleet key of the wrong type),
as its last stderr line. Redis away is waited out by ``worker`` and ``events``; the
one-shot commands exit 1 with one line.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .. import ACPClient, AuthenticationError, to_json
from . import _metrics, _redis_options
from ._parser import (
    FAILED,
    OK,
    Command,
    UsageError,
    add_command,
    add_group,
    count,
    needs_extra,
    seconds,
)
from ._report import clean, describe, emit, hide, warn
from ._servers import server_ids

if TYPE_CHECKING:
    from ..fleet import FleetEvent, FleetStatus, RedisFleet
    from ._parser import Subcommands

__all__ = ("register",)


def register(commands: Subcommands) -> None:
    """``fleet add|remove|worker|events|status|list``."""
    sub = add_group(
        commands,
        "fleet",
        help="watch a fleet with many workers through Redis (extra 'redis')",
        description="A fleet of ACP servers watched by any number of workers, on any hosts, "
        "through Redis: add servers, start workers, read the events they append.",
    )
    for name, run, text, description in (
        (
            "add",
            _add,
            "add servers to the fleet",
            "Add servers to the fleet (idempotent): the workers poll them from then on. "
            "Prints how many were new and how many the fleet has.",
        ),
        (
            "remove",
            _remove,
            "remove servers from the fleet",
            "Remove servers from the fleet: no worker polls them any more. Prints how many "
            "were removed.",
        ),
    ):
        parser = add_command(
            sub, name, Command(run, check=_check_ids), help=text, description=description
        )
        _common(parser)
        parser.add_argument("server_ids", nargs="*", metavar="SERVER_ID")
        parser.add_argument(
            "--servers-file",
            metavar="FILE",
            help="more server ids, one per line; '#' starts a comment ('-': stdin)",
        )

    worker = add_command(
        sub,
        "worker",
        Command(
            _worker,
            check=_check_redis,
            client=True,
            on_signal=OK,
            options=frozenset({"base_url", "verbose"}),
        ),
        help="poll the fleet's due servers until stopped",
        description="Claim the fleet's due servers, poll them and append their changes to "
        "the fleet's stream, until Ctrl-C or SIGTERM (then it hands its claims back and "
        "exits 0). Run as many as you like, on any hosts. A refused API token exits 1. "
        "It logs to stderr (time, level, message): a start line, servers that start "
        "failing (WARNING) or recover (INFO), warnings about Redis and a stop line with its "
        "counts; -q shows only warnings, -v adds retries and tracebacks. docs/operations.md "
        "says what each line means. Give the Redis URL in $ACP_REDIS_URL rather than "
        "--redis when it holds a password, or the password alone in $ACP_REDIS_PASSWORD "
        "(the sentinels' in $ACP_REDIS_SENTINEL_PASSWORD): argv is visible to every user "
        "of the host.",
    )
    _common(worker)
    worker.add_argument(
        "--concurrency",
        type=count,
        default=16,
        metavar="N",
        help="polls in flight at most (default: 16)",
    )
    worker.add_argument(
        "--interval",
        type=seconds,
        default=30.0,
        metavar="S",
        help="seconds between polls of a busy server, one with a run not yet finished "
        "(default: 30); idle and failing servers are polled less often",
    )
    worker.add_argument(
        "--limit", type=count, default=50, metavar="N", help="runs read per poll (default: 50)"
    )
    worker.add_argument(
        "--lease",
        type=seconds,
        default=60.0,
        metavar="S",
        help="seconds a worker holds a claimed server; a dead worker's servers are polled "
        "again after it (default: 60)",
    )
    _metrics.add_options(worker)

    events = add_command(
        sub,
        "events",
        Command(
            _events,
            check=_check_redis,
            on_signal=OK,
            options=frozenset({"json", "verbose"}),
        ),
        help="print the fleet's events (and acknowledge them)",
        description="Print the fleet's events (a run created or updated) as they are "
        "appended, each acknowledged once printed, until Ctrl-C or SIGTERM (exit 0). "
        "Events are read through a consumer group: a group sees every event once (at least "
        "once), shared among its consumers; unacknowledged ones are delivered again.",
    )
    _common(events)
    events.add_argument(
        "--group", default="cli", help="the consumer group to read through (default: cli)"
    )
    events.add_argument(
        "--consumer",
        default=socket.gethostname(),
        help="this consumer's name in the group (default: the host name)",
    )

    status = add_command(
        sub,
        "status",
        Command(_status, check=_check_redis, options=frozenset({"json", "verbose"})),
        help="servers, workers, backlog",
        description="The fleet at a glance: servers, live workers, overdue and failing "
        "servers, the stream's length and each consumer group's unacknowledged events.",
    )
    _common(status)
    status.add_argument(
        "--interval",
        type=seconds,
        default=30.0,
        metavar="S",
        help="the workers' --interval in seconds, to judge what is overdue (default: 30)",
    )

    listing = add_command(
        sub,
        "list",
        Command(_list, check=_check_redis, options=frozenset({"json"})),
        help="the fleet's servers (--failing: the failing ones and why)",
        description="Print the fleet's server ids, one a line. --failing: only the failing "
        "servers (whose last poll failed), each with a tab and its last error (empty where "
        "not known: failing since before an upgrade). --json: one object a line, "
        '{"serverId": ..., "error": ...}, the error null for a healthy server.',
    )
    _common(listing)
    listing.add_argument(
        "--failing", action="store_true", help="only the failing servers, with their last error"
    )


def _common(parser: argparse.ArgumentParser) -> None:
    _redis_options.add_options(parser)
    parser.add_argument(
        "--fleet", default="default", metavar="NAME", help="the fleet's name (default: default)"
    )


def _check_redis(args: argparse.Namespace) -> None:
    try:
        import redis  # noqa: F401, PLC0415 - the optional extra: is it installed?
    except ImportError:
        raise UsageError(needs_extra("fleet", "redis")) from None
    args.redis_target = _redis_options.resolve(args)
    hide(*args.redis_target.secrets())  # Redis may quote a password in an error


def _check_ids(args: argparse.Namespace) -> None:
    _check_redis(args)
    args.ids = server_ids(args.server_ids, args.servers_file, None)[0]


@contextlib.asynccontextmanager
async def _open(args: argparse.Namespace, **options: Any) -> AsyncIterator[RedisFleet]:
    """The fleet, open, on a client of the command's own (closed at the end)."""
    from ..fleet import RedisFleet, _connection  # noqa: PLC0415 - the optional extra

    target: _redis_options.RedisTarget = args.redis_target
    client = target.client(_connection.socket_timeout(options.get("lease", 60.0)))
    try:
        try:
            fleet = RedisFleet(client, name=args.fleet, **options)
        except (TypeError, ValueError) as exc:
            raise UsageError(str(exc)) from None
        async with fleet:
            yield fleet
    finally:
        await _connection.close(client)


async def _add(args: argparse.Namespace) -> int:
    async def add(fleet: RedisFleet) -> None:
        new = await fleet.add(args.ids)
        total = len(await fleet.server_ids())
        print(f"added {new} new of {len(args.ids)} servers; the fleet {fleet.name!r} has {total}")

    return await _one_shot(_open(args), add)


async def _remove(args: argparse.Namespace) -> int:
    async def remove(fleet: RedisFleet) -> None:
        gone = await fleet.remove(args.ids)
        print(f"removed {gone} of {len(args.ids)} servers from the fleet {fleet.name!r}")

    return await _one_shot(_open(args), remove)


async def _status(args: argparse.Namespace) -> int:
    async def status(fleet: RedisFleet) -> None:
        now = await fleet.status()
        if args.json:
            emit(status_json(now))
        else:
            print(status_table(now))
        if now.servers == 0:
            warn(empty_fleet(fleet.name))

    return await _one_shot(_open(args, interval=args.interval), status)


def empty_fleet(name: str) -> str:
    """What ``fleet status`` says of a fleet without servers (empty, or a wrong name)."""
    option = "" if name == "default" else f" --fleet {clean(name)}"
    return (
        f"the fleet {clean(name)!r} has no servers (is the name or the Redis URL wrong?); "
        f"add servers with: acp-async fleet add SERVER_ID...{option}"
    )


async def _list(args: argparse.Namespace) -> int:
    async def listing(fleet: RedisFleet) -> None:
        failing = await fleet.failing()
        rows: list[tuple[str, str | None]]
        if args.failing:
            rows = sorted(failing.items())
        else:
            ids = await fleet.server_ids()
            rows = [(sid, failing.get(sid)) for sid in sorted(ids)]
        for sid, error in rows:
            if args.json:
                emit({"serverId": sid, "error": error})
            elif args.failing:
                print(f"{clean(sid)}\t{clean(error)}")
            else:
                print(clean(sid))

    return await _one_shot(_open(args), listing)


async def _one_shot(
    opened: contextlib.AbstractAsyncContextManager[RedisFleet],
    job: Callable[[RedisFleet], Awaitable[None]],
) -> int:
    """Redis unreachable, or refusing (``FleetRedisError``), is one line and exit 1."""
    from ..fleet import FleetRedisError  # noqa: PLC0415 - the optional extra

    try:
        async with opened as fleet:
            await job(fleet)
    except FleetRedisError as exc:
        warn(str(exc))
        return FAILED
    return OK


async def _worker(args: argparse.Namespace, client: ACPClient) -> int:
    """Poll the fleet's due servers until stopped; with ``--metrics-port``, serve ``/metrics``
    (the client's requests, the watch engine's polls and events, the fleet's commits)."""
    opened = _open(
        args,
        interval=args.interval,
        limit=args.limit,
        lease=args.lease,
        metrics=_metrics.observer(args),
    )

    async def work() -> int:
        async with opened as fleet:
            try:
                await fleet.work(client, concurrency=args.concurrency)
            except AuthenticationError as exc:
                warn(f"worker stopped: {describe(exc)}")
                return FAILED
        return OK  # pragma: no cover - work() returns only by raising

    return await _metrics.serve_while(args, work)


async def _events(args: argparse.Namespace) -> int:
    """Print and acknowledge events until stopped. An ack that meets Redis away starts a
    new read: it waits the outage out like any read, then walks this consumer's
    unacknowledged events first, so they are printed again (at least once)."""
    from ..fleet import RedisUnavailableError  # noqa: PLC0415 - the optional extra

    async with _open(args) as fleet:
        while True:
            stream = fleet.events(args.group, args.consumer)
            async with contextlib.aclosing(stream):
                async for event in stream:
                    if args.json:
                        emit(event_json(event))
                    else:
                        print(event_line(event), flush=True)
                    try:
                        await fleet.ack(args.group, event)
                    except RedisUnavailableError:
                        break


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
    """``09:14:03  updated  srv-0007  run-...  queued -> running  title``: the columns of
    ``runs watch``, the time being when the event was appended (its stream entry id)."""
    run = event.run
    status = str(run.status or "-")
    if event.previous_status is not None and str(event.previous_status) != status:
        status = f"{event.previous_status} -> {status}"
    parts = (
        _appended_at(event.id),
        f"{event.kind:<7}",
        event.server_id,
        run.id or "-",
        status,
        run.title or "",
    )
    return clean("  ".join(parts)).rstrip()


def _appended_at(entry_id: str) -> str:
    """The local time (HH:MM:SS) a Redis stream entry id ``<milliseconds>-<n>`` names; now
    when the id is not one."""
    milliseconds, _, _ = entry_id.partition("-")
    try:
        moment = datetime.fromtimestamp(int(milliseconds) / 1000)
    except (ValueError, OverflowError, OSError):
        moment = datetime.now()
    return moment.strftime("%H:%M:%S")


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
    pending = sorted(status.pending.items())
    rows += [(f"pending [{clean(group)}]", str(count)) for group, count in pending]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
