"""Copies of the package side by side: (c) ``list_many`` of each, and (b) aiohttp +
``json.loads``, taking turns in one process against one load server, over HTTP or TLS,
the page plain or gzip-encoded (``benchmarks.compare`` puts one earlier commit beside
the working tree, with an A/A control and call counts).

Separate runs on a shared 2-core machine differ by more than a change of a few percent
does; alternating in one run, and taking the median of per-repetition ratios, does not.
Another commit is measured as a renamed copy of the package::

    git archive COMMIT acp_async | tar -x -C /tmp/old && mv /tmp/old/acp_async /tmp/old/acp_old
    python -m benchmarks.ab --stack acp_old=/tmp/old --reps 21 [--tls]

prints, per stack, requests per second and its (c)/(b) ratio, and new/old.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
import time
from collections.abc import Sequence
from typing import Any

from .http_bench import _ids
from .http_scenarios import SCENARIOS, Ours
from .server import LoadServer
from .stats import fmt_spread


def _ours(package: str) -> type[Ours]:
    """The (c) scenario, with the client class of ``package``."""
    client_class = importlib.import_module(package).ACPClient

    class Theirs(Ours):
        async def open(self) -> None:
            if self._ssl is not None:
                import aiohttp  # noqa: PLC0415

                from .http_scenarios import _connector  # noqa: PLC0415

                self._session = aiohttp.ClientSession(connector=_connector(self._ssl))
            self._client = client_class(
                "bench-token", base_url=self._base, max_connections=100, session=self._session
            )
            await self._client.__aenter__()

    return Theirs


def measure(
    stacks: Sequence[str],
    *,
    requests: int,
    servers: int,
    concurrency: int,
    reps: int,
    tls: bool,
    gzipped: bool = False,
) -> dict[str, dict[str, list[float]]]:
    """Requests per second and client CPU microseconds per request, per repetition:
    ``"b"`` and one entry per package."""
    ids, warm = _ids(requests, servers), _ids(concurrency, servers)
    factories: dict[str, Any] = {"b": SCENARIOS["b"], **{s: _ours(s) for s in stacks}}
    keys = list(factories)
    rates: dict[str, list[float]] = {k: [] for k in keys}
    cpu: dict[str, list[float]] = {k: [] for k in keys}
    with LoadServer(tls=tls, gzipped=gzipped) as server, asyncio.Runner() as runner:
        scenarios = {
            k: f(server.base_url, concurrency, server.ssl_context) for k, f in factories.items()
        }
        for scenario in scenarios.values():
            runner.run(scenario.open())
            runner.run(scenario.run(warm))
        for rep in range(reps):
            order = keys[rep % len(keys) :] + keys[: rep % len(keys)]
            for key in order:
                started, cpu_started = time.perf_counter(), time.process_time()
                done = runner.run(scenarios[key].run(ids))
                rates[key].append(done / (time.perf_counter() - started))
                cpu[key].append((time.process_time() - cpu_started) / done * 1e6)
        for scenario in scenarios.values():
            runner.run(scenario.close())
    return {"rates": rates, "cpu": cpu}


def report(results: dict[str, dict[str, list[float]]], stacks: Sequence[str]) -> list[str]:
    """Throughput and client CPU per request; every ratio is ours over theirs (> 1: ours
    is faster, or cheaper), the median of per-repetition ratios (min - max)."""
    rates, cpu = results["rates"], results["cpu"]

    def ratios(a: list[float], b: list[float]) -> list[float]:
        return [x / y for x, y in zip(a, b, strict=True)]

    lines = [
        "| stack | requests/s | (c)/(b) | CPU us per request | (c)/(b) by CPU |",
        "|---|---|---|---|---|",
        f"| b. aiohttp + json.loads | {fmt_spread(rates['b'])} | | {fmt_spread(cpu['b'])} | |",
    ]
    for stack in stacks:
        lines.append(
            f"| c. {stack} | {fmt_spread(rates[stack])} "
            f"| {fmt_spread(ratios(rates[stack], rates['b']))} | {fmt_spread(cpu[stack])} "
            f"| {fmt_spread(ratios(cpu['b'], cpu[stack]))} |"
        )
    if len(stacks) >= 2:
        old, new = stacks[0], stacks[-1]
        lines += [
            "",
            f"{new} / {old}: throughput {fmt_spread(ratios(rates[new], rates[old]))}, "
            f"CPU per request (old / new) {fmt_spread(ratios(cpu[old], cpu[new]))}",
        ]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ab")
    parser.add_argument("--stack", action="append", default=[], help="NAME=DIR: a copy to import")
    parser.add_argument("--reps", type=int, default=21)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--gzip", action="store_true", help="the page gzip-encoded")
    parser.add_argument(
        "--no-current", action="store_true", help="only the --stack copies, not this checkout"
    )
    args = parser.parse_args()
    stacks = []
    for spec in args.stack:
        name, _, path = spec.partition("=")
        if path:
            sys.path.insert(0, path)
        stacks.append(name)
    if not args.no_current:
        stacks.append("acp_async")
    results = measure(
        stacks,
        requests=args.requests,
        servers=1000,
        concurrency=50,
        reps=args.reps,
        tls=args.tls,
        gzipped=args.gzip,
    )
    print(
        f"{'TLS' if args.tls else 'plain HTTP'}{', gzip' if args.gzip else ''}, "
        f"{args.reps} repetitions, "
        f"Python {sys.version.split()[0]}"
    )
    print("\n".join(report(results, stacks)))


if __name__ == "__main__":
    main()
