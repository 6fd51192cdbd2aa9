"""``--metrics-port``: serve ``/metrics`` from inside the command's own event loop.

Long-running commands (``runs watch``, ``fleet worker``) call ``add_options`` on their
parser, hand ``observer(args)`` to the client (and the fleet): None without the flag, else
a ``PrometheusMetrics`` on prometheus_client's global registry, so every call shares the
same series; and run their coroutine in ``serve_while``. One aiohttp site in the same
loop: no thread, and nothing left listening once the command ends.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING

from aiohttp import web

from ._parser import UsageError, needs_extra
from ._report import note, warn

if TYPE_CHECKING:  # the extra is imported only when --metrics-port is given
    from prometheus_client import CollectorRegistry

    from ..metrics import PrometheusMetrics

__all__ = ("add_options", "observer", "port_number", "serve_while", "serving")

DEFAULT_HOST = "127.0.0.1"


def port_number(text: str) -> int:
    if not text.isdecimal() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port number (0: any free one), got {text!r}")
    return int(text)


def add_options(parser: argparse.ArgumentParser) -> None:
    """``--metrics-port P`` and ``--metrics-host H``."""
    parser.add_argument(
        "--metrics-port",
        type=port_number,
        metavar="P",
        help="serve Prometheus metrics at http://HOST:P/metrics (default: none; 0: any free port)",
    )
    parser.add_argument(
        "--metrics-host",
        default=DEFAULT_HOST,
        metavar="HOST",
        help=f"the address --metrics-port listens on (default: {DEFAULT_HOST})",
    )


def observer(args: argparse.Namespace) -> PrometheusMetrics | None:
    """The metrics to count into when ``--metrics-port`` is given (the global registry);
    None for a command without the option too."""
    if getattr(args, "metrics_port", None) is None:
        return None
    try:
        from ..metrics import PrometheusMetrics  # noqa: PLC0415 - the optional extra
    except ImportError:
        raise UsageError(needs_extra("--metrics-port", "metrics")) from None
    return PrometheusMetrics()


@asynccontextmanager
async def serving(registry: CollectorRegistry, host: str, port: int) -> AsyncIterator[str]:
    """Serve ``registry`` at ``/metrics`` while the block runs; yields the URL it listens on.

    An address that cannot be bound raises ``OSError`` before the block starts.
    """
    from prometheus_client.aiohttp import make_aiohttp_handler  # noqa: PLC0415 - the extra

    app = web.Application()
    app.router.add_get("/metrics", make_aiohttp_handler(registry))
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_host, bound_port = runner.addresses[0][:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        yield f"http://{shown}:{bound_port}/metrics"
    finally:
        await runner.cleanup()


async def serve_while(args: argparse.Namespace, command: Callable[[], Awaitable[int]]) -> int:
    """Run ``command()``, serving ``/metrics`` meanwhile when ``--metrics-port`` was given.

    An address that cannot be bound ends the command with exit code 1 before it starts,
    as ``fake-server`` does.
    """
    metrics = observer(args)
    if metrics is None:
        return await command()
    host, port = args.metrics_host, args.metrics_port
    async with AsyncExitStack() as stack:
        try:
            url = await stack.enter_async_context(serving(metrics.registry, host, port))
        except OSError as exc:  # only the bind: the command's own errors are not ours
            warn(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}")
            return 1
        note(f"serving metrics at {url}")
        return await command()
