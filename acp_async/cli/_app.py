"""Between the shell and a command: the parser, logging, the client, exit codes and signals.

Exit codes: 0 ok, 1 an API or network error (or stdout closed early, ``| head``), 2 a
usage error, 130 interrupted. An ``ACPError`` no command handled is one line on stderr
(the traceback too with ``-v``). Ctrl-C or SIGTERM is how ``runs watch`` and ``fake-server``
are meant to stop, so they exit 0 then.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import traceback
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from .. import ACPClient, ACPError, InsecureTransportWarning, MissingCredentialsError, __version__
from . import _demo, _fake, _logs, _metrics, _redis_fleet, _runs
from ._parser import (
    ENVIRONMENT,
    EXIT_CODES,
    FAILED,
    INTERRUPTED,
    PROG,
    USAGE,
    Command,
    UsageError,
    add_global_options,
    fill_global_defaults,
)
from ._report import clean, describe, hide, redact, warn, warning

if TYPE_CHECKING:
    from ._parser import Subcommands

# Every subcommand, registered by its module: a new command adds its `register` here.
COMMANDS: tuple[Callable[[Subcommands], None], ...] = (
    _runs.register,
    _fake.register,
    _demo.register,
    _redis_fleet.register,
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; the return value is the process exit code."""
    try:
        args = parse(argv)
        command: Command = args.command
        if args.verbose and args.quiet:
            raise UsageError("give -v or -q, not both")
        if command.check is not None:
            command.check(args)
        _logs.configure(args.verbose, args.quiet)
        client = _client(args) if command.client else None
        return run(command, args, client)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Read the agent runs of Computer Agents (ACP) servers from a terminal.",
        epilog=f"{ENVIRONMENT} {EXIT_CODES}",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    add_global_options(parser)
    commands = parser.add_subparsers(dest="command_name", required=True, metavar="COMMAND")
    for register in COMMANDS:
        register(commands)
    return parser


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    """The arguments, with the global options (before or after the command) filled in."""
    args = build_parser().parse_args(argv)
    command: Command = args.command
    fill_global_defaults(args, command.options)
    return args


# A shell user's advice (the library's own message speaks Python).
NO_API_KEY = (
    "no API key: export ACP_API_KEY=<your key> (COMPUTER_AGENTS_API_KEY works too); inside "
    "an ACP resource the platform sets COMPUTER_AGENTS_RUNTIME_TOKEN instead. To try "
    "things without an account, run `acp-async fake-server` and export what it prints"
)


def _client(args: argparse.Namespace) -> ACPClient:
    """The client, configured by the environment and ``--base-url`` as ``ACPClient`` resolves
    them; a bad or missing setting is a usage error, a plain-http warning one line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", InsecureTransportWarning)
        try:
            client = ACPClient(
                base_url=args.base_url,
                max_connections=max(100, getattr(args, "concurrency", 1)),
                metrics=_metrics.observer(args),  # None unless --metrics-port
            )
        except MissingCredentialsError:
            raise UsageError(NO_API_KEY) from None
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    for message in caught:
        if issubclass(message.category, InsecureTransportWarning):
            warning(str(message.message))
        else:  # not ours to judge: on to the usual filters
            warnings.warn_explicit(
                message.message, message.category, message.filename, message.lineno
            )
    hide(client.config.api_key, client.config.runtime_token)
    return client


def run(command: Command, args: argparse.Namespace, client: ACPClient | None) -> int:
    """Run the command in an event loop; SIGINT or SIGTERM cancels it, cleanups run, and the
    process exits ``command.on_signal``."""

    async def go() -> int:
        if client is None:
            return await command.run(args)
        async with client:
            return await command.run(args, client)

    try:
        return _guarded(go, on_signal=command.on_signal)
    except ACPError as exc:  # any the command left: one line and exit 1 (-v: the traceback)
        if args.verbose:
            for line in "".join(traceback.format_exception(exc)).splitlines():
                print(redact(clean(line)), file=sys.stderr)
        warn(describe(exc))
        return FAILED


def _guarded(make: Callable[[], Awaitable[int]], *, on_signal: int) -> int:
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
        return _event_loop(guarded())
    except KeyboardInterrupt:
        return on_signal


def _event_loop(main: Coroutine[Any, Any, int]) -> int:
    """``asyncio.run``, on uvloop's loop when it is installed (the ``speed`` extra)."""
    try:
        import uvloop  # noqa: PLC0415 - optional, and only the CLI picks the loop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
