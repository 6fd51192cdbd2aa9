"""``fake-server``: the SDK's own FakeACPServer on a port, until stopped."""

from __future__ import annotations

import argparse
import asyncio
import errno
import ipaddress
import math
import random
from typing import TYPE_CHECKING

from ..testing import FakeACPServer
from ._parser import FAILED, OK, Command, add_command, count, seconds
from ._report import note, warn

if TYPE_CHECKING:
    from ._parser import Subcommands

DEFAULT_PORT = 8080


def register(commands: Subcommands) -> None:
    """``fake-server``."""
    fake = add_command(
        commands,
        "fake-server",
        Command(serve, on_signal=OK),
        help="serve a fake ACP API with seeded runs, for trying things out",
        description="Serve FakeACPServer (the SDK's test server: seeded servers and runs "
        "that move on by themselves, faults on demand) until Ctrl-C or SIGTERM (exit 0). "
        "It accepts the API key --token as 'Authorization: Bearer <token>' (default: "
        "test-token) and the runtime token --runtime-token as "
        "'X-Computer-Agents-Runtime-Token' (default: test-runtime-token), and prints the "
        "variables to export.",
    )
    fake.add_argument(
        "--host", default="127.0.0.1", help="the address to listen on (default: 127.0.0.1)"
    )
    fake.add_argument(
        "--port",
        type=_port,
        default=DEFAULT_PORT,
        help=f"the port to listen on (default: {DEFAULT_PORT}; 0: any free one)",
    )
    fake.add_argument(
        "--servers", type=count, default=20, metavar="N", help="how many servers (default: 20)"
    )
    fake.add_argument(
        "--runs", type=count, default=5, metavar="N", help="runs per server at start (default: 5)"
    )
    fake.add_argument(
        "--page-size",
        type=count,
        metavar="N",
        help="at most N runs a page, with a 'Link: <...>; rel=\"next\"' header to the next "
        "one, so runs.iter()/pages() follow it (default: one page, up to the request's limit)",
    )
    fake.add_argument(
        "--fault-rate",
        type=_rate,
        default=0.0,
        metavar="R",
        help="the share of requests that fail, from 0 to 1 (default: 0)",
    )
    fake.add_argument(
        "--latency",
        type=_non_negative,
        default=0.0,
        metavar="S",
        help="seconds added to each response (default: 0)",
    )
    fake.add_argument(
        "--progress-every",
        type=seconds,
        default=5.0,
        metavar="S",
        help="seconds between status steps of each unfinished run (default: 5)",
    )
    fake.add_argument(
        "--new-run-every",
        type=_non_negative,
        default=2.0,
        metavar="S",
        help="seconds between new queued runs on a random server (default: 2; 0: never)",
    )
    fake.add_argument(
        "--shape",
        choices=("both", "data", "runs"),
        default="both",
        help="where a page lists its runs: under data and runs (both, as the API documents), "
        "or only one of them (default: both)",
    )
    fake.add_argument(
        "--seed", type=int, default=0, help="the seed of the generated runs (default: 0)"
    )
    fake.add_argument(
        "--token",
        default="test-token",
        help="the API key it accepts, as Authorization: Bearer (default: test-token)",
    )
    fake.add_argument(
        "--runtime-token",
        default="test-runtime-token",
        help="the runtime token it accepts, as X-Computer-Agents-Runtime-Token or "
        "X-Testbase-Runtime-Token (default: test-runtime-token)",
    )


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


async def serve(args: argparse.Namespace) -> int:
    """Serve until a signal cancels us; the fake closes on the way out."""
    fake = FakeACPServer(
        token=args.token,
        runtime_token=args.runtime_token,
        servers=args.servers,
        page_size=args.page_size,
        runs_per_server=args.runs,
        seed=args.seed,
        shape=args.shape,
        fault_rate=args.fault_rate,
        latency=args.latency,
        host=args.host,
        port=args.port,
    )
    try:
        await fake.start()
    except OSError as exc:
        hint = "; --port 0 picks a free one" if exc.errno == errno.EADDRINUSE and args.port else ""
        warn(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}{hint}")
        return FAILED
    try:
        ids = fake.server_ids
        pages = f", {args.page_size} a page" if args.page_size else ""
        print(
            f"FakeACPServer: {len(ids)} servers ({ids[0]} .. {ids[-1]}), "
            f"{args.runs} runs each{pages}",
            f"  export ACP_BASE_URL={_local_url(fake.base_url, args.host)}",
            f"  export ACP_API_KEY={fake.token}",
            f"  (or, as code inside a platform resource does, export "
            f"COMPUTER_AGENTS_RUNTIME_TOKEN={fake.runtime_token} instead of ACP_API_KEY)",
            f"  then: seq -f 'srv-%04g' 1 {len(ids)} | acp-async runs poll --servers-file -",
            "Ctrl-C stops it.",
            sep="\n",
            flush=True,
        )
        if _all_interfaces(args.host):
            note(
                f"listening on every interface ({args.host}); from another machine use this "
                "one's address: plain http beyond loopback sends the token in clear text, "
                "and the client warns about it"
            )
        await churn(
            fake,
            ids,
            step_every=args.progress_every,
            new_run_every=args.new_run_every,
            rng=random.Random(args.seed),
        )
    finally:
        await fake.close()
    return 0


def _all_interfaces(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def _local_url(base_url: str, host: str) -> str:
    """The URL to use from this machine: loopback when listening on every interface.

    ``http://0.0.0.0:8080`` is not an address to connect to, and a client would take it
    for a remote host and warn about plain http.
    """
    if not _all_interfaces(host):
        return base_url
    loopback = "[::1]" if ":" in host else "127.0.0.1"
    bracketed = f"[{host.strip('[]')}]" if ":" in host else host
    return base_url.replace(f"//{bracketed}:", f"//{loopback}:", 1)


async def churn(
    fake: FakeACPServer,
    ids: list[str],
    *,
    step_every: float,
    new_run_every: float,
    rng: random.Random,
) -> None:
    """Keep ``ids`` lively, forever: every ``step_every`` seconds each unfinished run moves a
    status forward, and every ``new_run_every`` seconds one of them gets a new queued run.

    Driven by the clock here rather than by the fake's ``progress_every`` (which counts
    from a server's last request), so a run seen late still shows each of its steps.
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    next_step = start + step_every if step_every else math.inf
    next_run = start + new_run_every if new_run_every else math.inf
    while True:
        due = min(next_step, next_run)
        if due == math.inf:
            await asyncio.Event().wait()
        await asyncio.sleep(max(0.0, due - loop.time()))
        if loop.time() >= next_step:
            for server_id in ids:
                fake.advance(server_id)
            next_step += step_every
        if loop.time() >= next_run:
            fake.add_run(rng.choice(ids))
            next_run += new_run_every
