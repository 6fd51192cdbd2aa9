"""The parser's parts: usage errors, argument types, the options commands share, ``Command``.

Each command module registers its own subcommands through ``register(commands)``; the list
of those functions is in ``_app.COMMANDS``, the one place a new command plugs in.

Argument types reuse the SDK's own checks (``acp_async._validate``), so the command line
refuses exactly what the client would refuse, with the same reason, before any request.
``_validate`` is package-internal; the CLI ships in the same distribution and version,
and no public name checks a lone value (making one public would grow the pinned surface
for the CLI's sake alone).
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, NoReturn

import attrs

from .. import _validate

if TYPE_CHECKING:
    Subcommands = argparse._SubParsersAction[argparse.ArgumentParser]

PROG = "acp-async"
OK, FAILED, USAGE, INTERRUPTED = 0, 1, 2, 130
EXIT_CODES = (
    "Exit codes: 0 ok (also a watch or fake-server stopped by Ctrl-C or SIGTERM), "
    "1 API or network error, 2 usage error, 130 interrupted by Ctrl-C or SIGTERM."
)
# Documentation only: the client itself resolves the environment (see ACPClient).
ENVIRONMENT = (
    "The API key comes from ACP_API_KEY, COMPUTER_AGENTS_API_KEY or TESTBASE_API_KEY (never "
    "from an option), or, inside an ACP resource, the runtime token from "
    "COMPUTER_AGENTS_RUNTIME_TOKEN or TESTBASE_RUNTIME_TOKEN; the base URL from --base-url, "
    "ACP_BASE_URL, COMPUTER_AGENTS_BASE_URL or COMPUTER_AGENTS_API_URL (with a runtime "
    "token also COMPUTER_AGENTS_PLATFORM_API_URL, TESTBASE_PLATFORM_API_URL and the runtime "
    "JSON in COMPUTER_AGENTS_RUNTIME_JSON_B64). HTTPS_PROXY, HTTP_PROXY and NO_PROXY are "
    "honoured."
)
# How to install an extra, for the messages that need one: acp-async is not on PyPI yet.
INSTALL_HINT = (
    "from a clone of the acp-async repository: pip install '.[{extra}]' "
    "(or pip install 'acp-async[{extra}]' once it is published)"
)


def needs_extra(what: str, extra: str) -> str:
    """The usage error's text for ``what`` needing ``extra``, with how to install it."""
    return f"{what} needs the '{extra}' extra: {INSTALL_HINT.format(extra=extra)}"


class UsageError(Exception):
    """A mistake on the command line or in its input: exit 2, one line, no traceback."""


# The options any command may take before or after its name (`acp-async --json runs list`),
# and their defaults; a command names the ones it takes in `Command.options`.
GLOBAL_DEFAULTS: dict[str, Any] = {"base_url": None, "json": False, "verbose": 0, "quiet": False}
CLIENT_OPTIONS = frozenset(GLOBAL_DEFAULTS)  # a command that talks to the API takes them all
LOG_OPTIONS = frozenset({"verbose", "quiet"})  # every command takes these


@attrs.frozen
class Command:
    """What a subcommand runs, set as the parser's ``command`` default.

    ``check(args)`` runs first, before any client or event loop: usage errors (bad ids,
    a missing extra) come before anything else. Then ``run(args)``, or ``run(args,
    client)`` when ``client`` is true: the client is made from the environment and the
    global options, and closed after ``run``. A signal (Ctrl-C, SIGTERM) cancels ``run``
    and the process exits ``on_signal``. ``options`` are the global options it takes
    (``base_url``, ``json``; ``-v`` and ``-q`` every command takes): any other one given is
    a usage error naming it.
    """

    run: Callable[..., Awaitable[int]]
    check: Callable[[argparse.Namespace], None] | None = None
    client: bool = False
    on_signal: int = INTERRUPTED
    options: frozenset[str] = frozenset()


def add_command(
    commands: Subcommands, name: str, command: Command, **kwargs: Any
) -> argparse.ArgumentParser:
    """A subcommand that runs ``command``. Every subcommand parses the global options (so
    one given after the name is never argparse's generic error); its ``--help`` shows only
    those it takes."""
    parser = commands.add_parser(name, **kwargs)
    add_global_options(parser, shown=command.options)
    parser.set_defaults(command=command, command_prog=parser.prog)
    return parser


def add_group(commands: Subcommands, name: str, **kwargs: Any) -> Subcommands:
    """A group of subcommands (``runs``, ``fleet``); the global options are parsed between
    its name and the subcommand's too (``acp-async fleet --json status``)."""
    group = commands.add_parser(name, **kwargs)
    add_global_options(group, shown=frozenset())
    return group.add_subparsers(dest=f"{name}_command", required=True, metavar="COMMAND")


# -- argument types: the SDK's checks, with the command line's wording --------------------


def count(text: str) -> int:
    """An integer >= 1 (``--limit``, ``--concurrency``, ``--servers``)."""
    try:
        return _validate.int_at_least("the value", int(text), 1)
    except ValueError:  # not an integer, or < 1
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None


def seconds(text: str) -> float:
    """A finite number of seconds > 0 (``--interval``)."""
    try:
        return _validate.positive_seconds("the value", float(text))
    except ValueError:  # not a number, or not finite and > 0
        raise argparse.ArgumentTypeError(
            f"expected a number of seconds > 0, got {text!r}"
        ) from None


# -- options shared by the commands that talk to an API ---------------------------------------


class _RefuseApiKey(argparse.Action):
    """``--api-key`` would keep the token in shell history and ``ps``: say where it goes."""

    def __call__(self, parser: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> NoReturn:
        parser.error(
            "--api-key is not accepted on the command line (it would land in shell history); "
            "set ACP_API_KEY (or COMPUTER_AGENTS_API_KEY) in the environment"
        )


def add_global_options(
    parser: argparse.ArgumentParser, shown: frozenset[str] = CLIENT_OPTIONS
) -> None:
    """``--base-url``, ``--json``, ``-v`` and ``-q``; help only for those in ``shown`` (``-v``
    and ``-q``, which every command takes, always).

    Each copy defaults to SUPPRESS, so one given after the subcommand does not overwrite
    the same option given before it; ``fill_global_defaults`` fills in what neither gave.
    """

    def helped(name: str, text: str) -> str:
        return text if name in shown | LOG_OPTIONS else argparse.SUPPRESS

    parser.add_argument(
        "--base-url",
        metavar="URL",
        default=argparse.SUPPRESS,
        help=helped(
            "base_url",
            "the API's base URL (default: $ACP_BASE_URL, $COMPUTER_AGENTS_BASE_URL, "
            "$COMPUTER_AGENTS_API_URL, else https://api.computer-agents.com)",
        ),
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help=helped("json", "print one JSON object per line, with the API's camelCase keys"),
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=argparse.SUPPRESS,
        help=helped(
            "verbose", "log more on stderr: retries and tracebacks (-v), every request (-vv)"
        ),
    )
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        default=argparse.SUPPRESS,
        help=helped("quiet", "log only warnings and errors on stderr"),
    )
    parser.add_argument("--api-key", nargs="?", action=_RefuseApiKey, help=argparse.SUPPRESS)


def fill_global_defaults(args: argparse.Namespace, takes: frozenset[str]) -> None:
    """Defaults for the global options; refuse one a command has no use for."""
    takes = takes | LOG_OPTIONS
    given = [name for name in GLOBAL_DEFAULTS if hasattr(args, name) and name not in takes]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise UsageError(f"{args.command_prog.removeprefix(PROG + ' ')} does not take {flags}")
    for name, default in GLOBAL_DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, default)
