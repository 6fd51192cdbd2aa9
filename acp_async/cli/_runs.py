"""``runs list``, ``runs poll`` and ``runs watch``: thin loops over ``client.runs``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Callable, Iterator
from typing import TYPE_CHECKING

from .. import ACPClient, ACPError, RunEvent, ServerRuns, to_json
from . import _metrics
from ._parser import (
    CLIENT_OPTIONS,
    OK,
    Command,
    UsageError,
    add_command,
    add_group,
    count,
    needs_extra,
    seconds,
)
from ._report import (
    clean,
    describe,
    emit,
    error_json,
    error_line,
    event_json,
    event_text,
    note,
    page_json,
    warn,
)
from ._servers import checked, parse_shard, server_ids

if TYPE_CHECKING:
    from ._parser import Subcommands


def register(commands: Subcommands) -> None:
    """``runs list|poll|watch``."""
    runs_commands = add_group(
        commands,
        "runs",
        help="read agent runs",
        description="Read the agent runs of one server (list), of many once (poll), or "
        "as they change (watch).",
    )

    list_ = add_command(
        runs_commands,
        "list",
        Command(list_command, check=_check_list, client=True, options=CLIENT_OPTIONS),
        help="one server's newest runs, as a table",
        description="Print one server's newest runs (one request), newest first: a table, "
        "or with --json one run per line. Exit 1 when the request fails.",
    )
    list_.add_argument(
        "server_id",
        metavar="SERVER_ID",
        nargs="?",
        help="the server to read (default: the configured default server id, "
        "$COMPUTER_AGENTS_SERVER_ID, set for you inside a platform resource)",
    )
    list_.add_argument(
        "--limit",
        type=count,
        metavar="N",
        help="how many runs to read (default: the server's, 20 on the platform)",
    )

    poll = add_command(
        runs_commands,
        "poll",
        Command(poll_command, check=_check_poll, client=True, options=CLIENT_OPTIONS),
        help="read many servers at once, then a summary",
        description="Read many servers at once (one request each, --concurrency at a time), "
        "then print a table of runs by status per server and a summary line; with --json, "
        "one page per server per line as each answers. Interrupted, it prints what it has "
        "and how many servers answered. Exit 1 when any server failed.",
    )
    _add_fleet_options(poll)
    poll.add_argument(
        "--limit",
        type=count,
        metavar="N",
        help="runs read per server (default: the server's, 20 on the platform)",
    )

    watch = add_command(
        runs_commands,
        "watch",
        Command(
            watch_command, check=_check_watch, client=True, on_signal=OK, options=CLIENT_OPTIONS
        ),
        help="print runs as they are created or change",
        description="Poll the servers and print a line per run created or updated (the "
        "first poll lists every run as created) until Ctrl-C or SIGTERM (exit 0). A "
        "failing server is reported and kept watched; a refused API key exits 1.",
    )
    _add_fleet_options(watch)
    watch.add_argument(
        "--interval",
        type=seconds,
        default=5.0,
        metavar="S",
        help="seconds between polls of a server (default: 5)",
    )
    watch.add_argument(
        "--limit", type=count, default=50, metavar="N", help="runs read per poll (default: 50)"
    )
    _metrics.add_options(watch)


def _add_fleet_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("server_ids", nargs="*", metavar="SERVER_ID", help="servers to read")
    parser.add_argument(
        "--servers-file",
        metavar="FILE",
        help="more server ids, one per line; '#' starts a comment ('-': stdin)",
    )
    parser.add_argument(
        "--shard",
        type=parse_shard,
        metavar="I/N",
        help="take only share I of N (0 <= I < N), so N copies split the servers between "
        "them (default: all)",
    )
    parser.add_argument(
        "--concurrency",
        type=count,
        default=16,
        metavar="N",
        help="requests in flight at most (default: 16)",
    )


def _check_list(args: argparse.Namespace) -> None:
    if args.server_id is not None:
        checked(args.server_id, "on the command line")
    need_tables(args)


def _check_poll(args: argparse.Namespace) -> None:
    need_tables(args)
    args.ids = fleet(args)


def _check_watch(args: argparse.Namespace) -> None:
    args.ids = fleet(args)


def fleet(args: argparse.Namespace) -> list[str]:
    """The server ids this command reads; an empty shard says so on stderr."""
    ids, given = server_ids(args.server_ids, args.servers_file, args.shard)
    if not ids:
        index, shards = args.shard
        warn(f"shard {index}/{shards} owns none of the {given} servers given; nothing to do")
    return ids


def need_tables(args: argparse.Namespace) -> None:
    """Table output needs rich; ``--json`` does not (nor does ``runs watch``)."""
    if args.json:
        return
    try:
        import rich  # noqa: F401, PLC0415 - the optional extra: is it installed?
    except ImportError:
        raise UsageError(needs_extra("the table output", "cli") + "; or use --json") from None


# -- runs list ---------------------------------------------------------------------------------


async def list_command(args: argparse.Namespace, client: ACPClient) -> int:
    """One page of one server's runs, newest first."""
    server_id = args.server_id or client.config.server_id
    if server_id is None:
        raise UsageError(
            "no SERVER_ID: give one, or set COMPUTER_AGENTS_SERVER_ID to a default server id "
            "(it is set for you inside a platform resource)"
        )
    try:
        page = await client.runs.list(server_id, limit=args.limit)
    except ACPError as exc:
        error_line(server_id, exc)
        return 1
    if args.json:
        for run in page.data:
            emit(to_json(run))
        return 0
    from ._human import runs_table, stdout_console  # noqa: PLC0415 - rich is optional

    console = stdout_console()
    console.print(runs_table(page.data, width=console.width))
    return 0


# -- runs poll ---------------------------------------------------------------------------------


async def poll_command(args: argparse.Namespace, client: ACPClient) -> int:
    """Every server once, at most ``--concurrency`` at a time; 1 when any server failed.

    Stopped by a signal, it prints the outcomes it has and how many servers answered.
    """
    ids: list[str] = args.ids
    if not ids:
        return OK
    started = time.monotonic()
    outcomes: dict[str, ServerRuns] = {}
    stream = client.runs.list_many(ids, limit=args.limit, concurrency=args.concurrency)
    each = (lambda outcome: emit(_server_json(outcome))) if args.json else None
    try:
        with _progress(len(ids), "polling servers") as advance:
            await collect(stream, outcomes, advance, each)
    except asyncio.CancelledError:
        _poll_report(args, ids, outcomes, started, interrupted=True)
        raise
    return _poll_report(args, ids, outcomes, started, interrupted=False)


def _poll_report(
    args: argparse.Namespace,
    ids: list[str],
    outcomes: dict[str, ServerRuns],
    started: float,
    *,
    interrupted: bool,
) -> int:
    """The table (unless ``--json``, which printed as it went) and a line on stderr."""
    failed = sum(1 for o in outcomes.values() if o.error is not None)
    if not args.json and (outcomes or not interrupted):
        from ._human import poll_table, stdout_console  # noqa: PLC0415 - rich is optional

        stdout_console().print(poll_table([outcomes[sid] for sid in ids if sid in outcomes]))
    elapsed = time.monotonic() - started
    if interrupted:
        note(
            f"interrupted after {elapsed:.1f}s: {len(outcomes)} of {len(ids)} servers answered, "
            f"{failed} failed"
        )
    elif not args.json:
        note(f"polled {len(ids)} servers in {elapsed:.1f}s, {failed} failed")
    return 1 if failed else 0


async def collect(
    stream: AsyncGenerator[ServerRuns, None],
    outcomes: dict[str, ServerRuns],
    advance: Callable[[bool], None],
    each: Callable[[ServerRuns], None] | None = None,
) -> None:
    """A fan-out's outcomes into ``outcomes`` by server, advancing the bar and reporting
    each failure; what arrived stays there if the fan-out is cancelled."""
    async with contextlib.aclosing(stream):
        async for outcome in stream:
            outcomes[outcome.server_id] = outcome
            advance(outcome.error is not None)
            if outcome.error is not None:
                error_line(outcome.server_id, outcome.error)
            if each is not None:
                each(outcome)


def _server_json(outcome: ServerRuns) -> dict[str, object]:
    if outcome.result is not None:
        return page_json(outcome.server_id, outcome.result)
    assert outcome.error is not None
    return {"serverId": outcome.server_id, "error": error_json(outcome.error)}


@contextlib.contextmanager
def _progress(total: int, label: str) -> Iterator[Callable[[bool], None]]:
    """The rich bar on a terminal's stderr; nothing without rich (``--json`` needs no extra)."""
    try:
        from ._human import progress  # noqa: PLC0415 - rich is optional
    except ImportError:
        yield lambda failed: None
        return
    with progress(total, label) as advance:
        yield advance


# -- runs watch --------------------------------------------------------------------------------


async def watch_command(args: argparse.Namespace, client: ACPClient) -> int:
    """Print each created or updated run as it is seen, until stopped (Ctrl-C, SIGTERM);
    with ``--metrics-port``, serve ``/metrics`` meanwhile."""
    ids: list[str] = args.ids
    if not ids:
        return OK
    return await _metrics.serve_while(args, lambda: _watch(args, client, ids))


async def _watch(args: argparse.Namespace, client: ACPClient, ids: list[str]) -> int:
    show = None if args.json else _event_printer(ids)
    stream = client.runs.watch(
        ids, interval=args.interval, limit=args.limit, concurrency=args.concurrency
    )
    try:
        async with contextlib.aclosing(stream):
            async for event in stream:
                # A failing server is logged by the watch when it starts failing and when
                # it recovers (acp_async.watch, on stderr), not at each failed poll.
                if show is None:
                    emit(event_json(event))
                elif event.run is not None:
                    show(event)
    except ACPError as exc:  # LOOP_ENDING says no later poll can fix it
        warn(f"watch stopped: {describe(exc)}")
        return 1
    return 0  # pragma: no cover - a watch with servers only ends by a signal or an error


def _event_printer(server_ids: list[str]) -> Callable[[RunEvent], None]:
    """Coloured lines with rich; the same columns as plain text without it."""
    width = max(len(clean(sid)) for sid in server_ids)
    try:
        from ._human import event_line, stdout_console  # noqa: PLC0415 - rich is optional
    except ImportError:

        def plain(event: RunEvent) -> None:
            print(event_text(event, width), flush=True)

        return plain

    console = stdout_console()

    def show(event: RunEvent) -> None:
        console.print(event_line(event, width, console.width), no_wrap=True, overflow="ellipsis")

    return show
