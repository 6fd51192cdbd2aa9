"""Arguments, configuration, exit codes and signals: everything between the shell and a command.

Exit codes: 0 ok, 1 an API or network error (or stdout closed early, ``| head``), 2 a
usage error, 130 interrupted. Ctrl-C or SIGTERM is how ``runs watch`` and ``fake-server``
are meant to stop, so they exit 0 then.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn

from .._client import ACPClient
from .._config import API_KEY_ENV, BASE_URL_ENV, DEFAULT_BASE_URL, _from_env
from .._version import __version__
from . import _fake, _redis_fleet, _runs
from ._fleet import UsageError, checked, parse_shard, server_ids
from ._report import PROG, warn

OK, FAILED, USAGE, INTERRUPTED = 0, 1, 2, 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the return value is the process exit code."""
    try:
        args = build_parser().parse_args(argv)
        handler: Callable[[argparse.Namespace], int] = args.handler
        return handler(args)
    except UsageError as exc:
        warn(str(exc))
        return USAGE
    except KeyboardInterrupt:  # before or after the event loop ran: no traceback either way
        return INTERRUPTED
    except BrokenPipeError:  # `| head` stopped reading: end quietly, as rich does for tables
        _silence_stdout()
        return FAILED


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


# -- arguments -------------------------------------------------------------------------


class _RefuseApiKey(argparse.Action):
    """``--api-key`` would keep the token in shell history and ``ps``: say where it goes."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> NoReturn:
        parser.error(
            "--api-key is not accepted on the command line (it would land in shell history); "
            f"set {API_KEY_ENV[0]} (or {API_KEY_ENV[1]}) in the environment"
        )


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
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


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _rate(text: str) -> float:
    value = _non_negative(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, got {text!r}")
    return value


def _port(text: str) -> int:
    if not text.isdecimal() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number (0: any free one), got {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Read the agent runs of Computer Agents (ACP) servers from a terminal.",
        epilog=(
            f"The API key comes from {API_KEY_ENV[0]} or {API_KEY_ENV[1]} (never from an option);"
            f" the base URL from --base-url, {BASE_URL_ENV[0]} or {BASE_URL_ENV[1]}. "
            "Exit codes: 0 ok, 1 API or network error, 2 usage error."
        ),
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    client = argparse.ArgumentParser(add_help=False)
    client.add_argument(
        "--base-url",
        metavar="URL",
        help=f"API base URL (default: ${BASE_URL_ENV[0]}, ${BASE_URL_ENV[1]}, {DEFAULT_BASE_URL})",
    )
    client.add_argument(
        "--json", action="store_true", help="one JSON object per line, in the API's field names"
    )
    client.add_argument(
        "-v", "--verbose", action="count", default=0, help="log retries (-v), every request (-vv)"
    )
    client.add_argument("--api-key", nargs="?", action=_RefuseApiKey, help=argparse.SUPPRESS)

    fleet = argparse.ArgumentParser(add_help=False)
    fleet.add_argument("server_ids", nargs="*", metavar="SERVER_ID")
    fleet.add_argument(
        "--servers-file", metavar="FILE", help="more server ids, one per line ('-': stdin)"
    )
    fleet.add_argument(
        "--shard",
        type=parse_shard,
        metavar="I/N",
        help="take only worker I's share of N (0 <= I < N); N copies split the fleet",
    )
    fleet.add_argument(
        "--concurrency", type=_count, default=16, metavar="N", help="requests in flight (16)"
    )

    runs = commands.add_parser("runs", help="read agent runs", description="Read agent runs.")
    runs_commands = runs.add_subparsers(dest="runs_command", required=True, metavar="COMMAND")

    list_ = runs_commands.add_parser(
        "list", parents=[client], help="one server's newest runs, as a table"
    )
    list_.add_argument("server_id", metavar="SERVER_ID")
    list_.add_argument("--limit", type=_count, metavar="N", help="how many runs (server: 20)")
    list_.set_defaults(handler=_list)

    poll = runs_commands.add_parser(
        "poll", parents=[client, fleet], help="read many servers at once, then a summary"
    )
    poll.add_argument("--limit", type=_count, metavar="N", help="runs per server (server: 20)")
    poll.set_defaults(handler=_poll)

    watch = runs_commands.add_parser(
        "watch", parents=[client, fleet], help="print runs as they are created or change"
    )
    watch.add_argument(
        "--interval", type=_seconds, default=5.0, metavar="S", help="seconds between polls (5)"
    )
    watch.add_argument("--limit", type=_count, default=50, metavar="N", help="runs per poll (50)")
    watch.set_defaults(handler=_watch)

    fake = commands.add_parser(
        "fake-server",
        help="serve a fake ACP API with seeded runs, for trying things out",
        description="Serve FakeACPServer until Ctrl-C; it prints the base URL and token to use.",
    )
    fake.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    fake.add_argument("--port", type=_port, default=8080, help="port (8080; 0: any free one)")
    fake.add_argument("--servers", type=_count, default=20, metavar="N", help="servers (20)")
    fake.add_argument("--runs", type=_count, default=5, metavar="N", help="runs per server (5)")
    fake.add_argument(
        "--fault-rate", type=_rate, default=0.0, metavar="R", help="share of requests that fail"
    )
    fake.add_argument(
        "--latency", type=_non_negative, default=0.0, metavar="S", help="seconds per response"
    )
    fake.add_argument(
        "--progress-every",
        type=_seconds,
        default=5.0,
        metavar="S",
        help="runs move a status forward every S seconds (5)",
    )
    fake.add_argument(
        "--new-run-every",
        type=_non_negative,
        default=2.0,
        metavar="S",
        help="queue a new run on some server every S seconds (2; 0: never)",
    )
    fake.add_argument("--seed", type=int, default=0, help="seed for the generated runs (0)")
    fake.add_argument("--token", default="test-token", help="the token it accepts (test-token)")
    fake.set_defaults(handler=_fake_server)

    demo = commands.add_parser(
        "demo",
        help="the SDK's main job against an embedded fake server, in about 15 seconds",
        description="Start a fake ACP server in-process, fan out over it, then watch it live.",
    )
    demo.add_argument("--servers", type=_count, default=300, help=argparse.SUPPRESS)
    demo.add_argument("--seconds", type=_seconds, default=10.0, help=argparse.SUPPRESS)
    demo.set_defaults(handler=_demo)
    _redis_fleet.add_commands(commands)
    return parser


# -- commands ----------------------------------------------------------------------------


def _list(args: argparse.Namespace) -> int:
    checked(args.server_id, "the command line")
    client = _client(args)
    return _run(
        lambda: _with(client, _runs.list_runs, args.server_id, limit=args.limit, as_json=args.json)
    )


def _poll(args: argparse.Namespace) -> int:
    client = _client(args)
    ids = _fleet(args)
    if not ids:
        return OK
    return _run(
        lambda: _with(
            client,
            _runs.poll,
            ids,
            limit=args.limit,
            concurrency=args.concurrency,
            as_json=args.json,
        )
    )


def _watch(args: argparse.Namespace) -> int:
    client = _client(args)
    ids = _fleet(args)
    if not ids:
        return OK
    return _run(
        lambda: _with(
            client,
            _runs.watch,
            ids,
            interval=args.interval,
            limit=args.limit,
            concurrency=args.concurrency,
            as_json=args.json,
        ),
        on_signal=OK,
    )


def _fake_server(args: argparse.Namespace) -> int:
    return _run(lambda: _fake.serve(args), on_signal=OK)


def _demo(args: argparse.Namespace) -> int:
    _need_rich("the demo")
    from ._demo import demo  # noqa: PLC0415 - imports rich, which only some commands need

    return _run(lambda: demo(servers=args.servers, seconds=args.seconds))


# -- plumbing -----------------------------------------------------------------------------


def _need_rich(what: str, otherwise: str = "") -> None:
    try:
        import rich  # noqa: F401, PLC0415 - the optional extra: is it installed?
    except ImportError:
        raise UsageError(
            f"{what} needs the 'cli' extra: pip install 'acp-async[cli]'{otherwise}"
        ) from None


def _client(args: argparse.Namespace) -> ACPClient:
    """The client from the environment and --base-url; anything missing is a usage error."""
    if not args.json:
        _need_rich("the table output", " (or use --json)")
    if _from_env(API_KEY_ENV) is None:
        raise UsageError(
            f"no API key: set {API_KEY_ENV[0]} (or {API_KEY_ENV[1]}) in the environment"
        )
    if args.verbose:
        handler = _StderrNow()
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        log = logging.getLogger("acp_async")  # ours only: asyncio's debug chatter stays out
        log.setLevel(logging.INFO if args.verbose == 1 else logging.DEBUG)
        log.addHandler(handler)
    try:
        return ACPClient(base_url=args.base_url, max_connections=max(100, _concurrency(args)))
    except ValueError as exc:
        raise UsageError(str(exc)) from None


class _StderrNow(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to ``sys.stderr`` as it is at each record, not as it was at start-up.

    While the progress bar is drawn, rich swaps ``sys.stderr`` for a proxy that prints
    above the bar; a handler holding the original stream would scribble over it.
    """

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _concurrency(args: argparse.Namespace) -> int:
    return int(getattr(args, "concurrency", 1))


def _fleet(args: argparse.Namespace) -> list[str]:
    ids, given = server_ids(args.server_ids, args.servers_file, args.shard)
    if not ids:
        index, count = args.shard
        warn(f"shard {index}/{count} owns none of the {given} servers given; nothing to do")
    return ids


async def _with(
    client: ACPClient, command: Callable[..., Awaitable[int]], *args: Any, **kwargs: Any
) -> int:
    async with client:
        return await command(client, *args, **kwargs)


def _run(make: Callable[[], Awaitable[int]], *, on_signal: int = INTERRUPTED) -> int:
    """Run a command's coroutine; SIGINT or SIGTERM cancels it, cleanups run, exit ``on_signal``."""

    async def guarded() -> int:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        stopped: list[int] = []

        def stop(signum: int) -> None:
            stopped.append(signum)
            task.cancel()

        installed = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # Windows, threads
                loop.add_signal_handler(signum, stop, signum)
                installed.append(signum)
        try:
            return await make()
        except asyncio.CancelledError:
            if not stopped:
                raise
            return on_signal
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)

    try:
        return asyncio.run(guarded())
    except KeyboardInterrupt:
        return on_signal
