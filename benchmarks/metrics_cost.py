"""What counting costs: client CPU per request with ``PrometheusMetrics`` on vs off.

``python -m benchmarks.metrics_cost`` (run by ``make bench`` after the main scenarios)
measures side by side in one process, against the load server in its own process:

- end to end: two warm clients, ``metrics=None`` and a ``PrometheusMetrics``, run
  batches of ``list_many`` GETs in turns (the order swaps every pair); this process's CPU
  time (``time.process_time``: the load server is not in it) per request, and the median
  of per-pair ratios with a bootstrap interval;
- the hooks alone: what one request's hooks (``request_started`` + ``request_finished``)
  and one watch poll's (``watch_polled`` + one ``watch_event``) cost, no-op ``Observer``
  vs ``PrometheusMetrics``, over many calls.

The goal is at most 3% of a request's CPU. It writes its own section of
``benchmarks/RESULTS.md`` (between markers, so the main report can be regenerated).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import time
import timeit
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from acp_async import ACPClient
from acp_async._observe import Observer
from acp_async.metrics import PrometheusMetrics

from .server import LoadServer
from .stats import fmt, fmt_spread, verdict

GOAL = 0.03  # at most 3% of a request's CPU
START = "<!-- metrics-cost: written by python -m benchmarks.metrics_cost -->"
END = "<!-- /metrics-cost -->"
TOKEN = "bench-token"
# 40 pairs of 500-request batches: short batches side by side, so a busy neighbour on a
# shared machine slows both halves of a pair instead of one mode.
FULL = {"requests": 500, "servers": 500, "concurrency": 50, "pairs": 40, "calls": 200_000}
SMOKE = {"requests": 24, "servers": 12, "concurrency": 4, "pairs": 2, "calls": 1000}


def _ids(requests: int, servers: int) -> list[str]:
    return [f"srv_{i % servers:05d}" for i in range(requests)]


async def _fan_out(client: ACPClient, ids: Sequence[str], concurrency: int) -> int:
    done = 0
    async for outcome in client.runs.list_many(ids, limit=20, concurrency=concurrency):
        if outcome.error is not None:
            raise outcome.error
        done += 1
    return done


async def _pairs(
    base_url: str, ids: Sequence[str], warm: Sequence[str], concurrency: int, pairs: int
) -> dict[str, list[float]]:
    """CPU seconds per request, per batch: two warm clients (off, on) take turns, batch
    after batch, so the machine's drift hits both alike (the order swaps every pair)."""
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    clients = {
        "off": ACPClient(TOKEN, base_url=base_url, max_connections=100),
        # A fresh registry: the cost of counting, not of whatever else is registered.
        "on": ACPClient(
            TOKEN,
            base_url=base_url,
            max_connections=100,
            metrics=PrometheusMetrics(CollectorRegistry()),
        ),
    }
    async with clients["off"], clients["on"]:
        for client in clients.values():
            await _fan_out(client, warm, concurrency)
        for pair in range(pairs):
            for mode in ("off", "on") if pair % 2 == 0 else ("on", "off"):
                started = time.process_time()
                done = await _fan_out(clients[mode], ids, concurrency)
                cpu[mode].append((time.process_time() - started) / done)
    return cpu


def end_to_end(*, requests: int, servers: int, concurrency: int, pairs: int) -> dict[str, Any]:
    """Per mode ("off", "on"): CPU seconds per request, one value per batch."""
    ids = _ids(requests, servers)
    warm = _ids(concurrency, servers)
    with LoadServer() as server, asyncio.Runner() as runner:
        cpu = runner.run(_pairs(server.base_url, ids, warm, concurrency, pairs))
        pinned = server.pinned
    return {"cpu": cpu, "pinned": pinned}


def hooks(calls: int) -> dict[str, dict[str, float]]:
    """Seconds per request's hooks and per watch poll's hooks, for each observer."""
    observers: dict[str, Observer] = {
        "off": Observer(),
        "on": PrometheusMetrics(CollectorRegistry()),
    }
    result: dict[str, dict[str, float]] = {}
    for mode, observer in observers.items():

        def request(observer: Observer = observer) -> None:
            observer.request_started()
            observer.request_finished("2xx", 0.012)

        def poll(observer: Observer = observer) -> None:
            observer.watch_polled(ok=True, late=0.03)
            observer.watch_event("updated")

        result[mode] = {
            "request": min(timeit.repeat(request, number=calls, repeat=5)) / calls,
            "poll": min(timeit.repeat(poll, number=calls, repeat=5)) / calls,
        }
    return result


def measure(sizes: dict[str, int]) -> dict[str, Any]:
    results = end_to_end(
        requests=sizes["requests"],
        servers=sizes["servers"],
        concurrency=sizes["concurrency"],
        pairs=sizes["pairs"],
    )
    results["hooks"] = hooks(sizes["calls"])
    results["sizes"] = sizes
    return results


def median_interval(values: Sequence[float], rounds: int = 2000) -> tuple[float, float]:
    """A 95% bootstrap interval for the median of ``values`` (seeded: same input, same
    interval), so a report says when the machine's noise hides the difference."""
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(rounds))
    return medians[int(rounds * 0.025)], medians[int(rounds * 0.975) - 1]


def _end_to_end_verdict(low: float, high: float) -> str:
    if high <= GOAL:
        return "met"
    if low > GOAL:
        return "**not met**"
    return "not resolved: the interval spans the goal"


def markdown(results: dict[str, Any]) -> str:
    sizes, cpu, hook = results["sizes"], results["cpu"], results["hooks"]
    off, on = cpu["off"], cpu["on"]
    # Batches ran in pairs (off/on adjacent): the median of per-pair ratios.
    overhead = [b / a - 1 for a, b in zip(off, on, strict=True)]
    per_request_off = statistics.median(off)
    low, high = median_interval(overhead)
    hook_cost = hook["on"]["request"] - hook["off"]["request"]
    hook_share = hook_cost / per_request_off
    us = [v * 1e6 for v in off], [v * 1e6 for v in on]
    lines = [
        START,
        "## Metrics: CPU per request with `PrometheusMetrics` on vs off",
        "",
        f"{sizes['pairs']} pairs of batches of {sizes['requests']:,} GETs (`list_many`, "
        f"concurrency {sizes['concurrency']}): two warm clients, one without metrics and one "
        "with a `PrometheusMetrics`, take turns (the order swaps every pair). This process's "
        "CPU time per request (the load server runs in its own"
        f"{' pinned' if results['pinned'] else ''} process), median (min - max) of batches.",
        "",
        "| metrics | client CPU per request |",
        "|---|---|",
        f"| off (`metrics=None`) | {fmt_spread(us[0])} us |",
        f"| on (`PrometheusMetrics`) | {fmt_spread(us[1])} us |",
        "",
        "| measure | value | goal <= 3% |",
        "|---|---|---|",
        f"| end to end: on / off - 1, median of per-pair ratios [95% interval] (min - max) | "
        f"{_pct(statistics.median(overhead))} [{_pct(low)} - {_pct(high)}] "
        f"({_pct(min(overhead))} - {_pct(max(overhead))}) | {_end_to_end_verdict(low, high)} |",
        f"| the hooks alone: {fmt(hook_cost * 1e6)} us per request, share of a request's CPU |"
        f" {_pct(hook_share)} | {verdict(hook_share <= GOAL)} |",
        "",
        f"Hooks per call, best of 5 x {sizes['calls']:,}: a request (`request_started` + "
        f"`request_finished`) {fmt(hook['off']['request'] * 1e9)} ns with the no-op "
        f"`Observer`, {fmt(hook['on']['request'] * 1e9)} ns with `PrometheusMetrics`; a watch "
        f"poll (`watch_polled` + one `watch_event`) {fmt(hook['off']['poll'] * 1e9)} ns vs "
        f"{fmt(hook['on']['poll'] * 1e9)} ns. Batches of one mode differ by up to "
        f"{_pct(max(off) / min(off) - 1)} (off) here, a shared machine: the end-to-end ratio "
        "shows the order of magnitude, the hooks alone the cost itself.",
        END,
    ]
    return "\n".join(lines) + "\n"


def _pct(value: float) -> str:
    return f"{value * 100:+.2f}%"


def write_section(path: Path, section: str) -> None:
    """Replace our section of ``path`` (between the markers), or append it."""
    text = path.read_text() if path.exists() else ""
    if START in text and END in text:
        head, rest = text.split(START, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        text = head + section + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section if text else section
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.metrics_cost")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks, not numbers")
    parser.add_argument("--pairs", type=int, help=f"off/on batch pairs ({FULL['pairs']})")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).with_name("RESULTS.md"), help="Markdown file"
    )
    args = parser.parse_args()
    sizes = dict(SMOKE if args.smoke else FULL)
    if args.pairs:
        sizes["pairs"] = args.pairs
    print("metrics cost ...", file=sys.stderr)
    section = markdown(measure(sizes))
    if not args.smoke:
        write_section(args.out, section)
    print(section)


if __name__ == "__main__":
    main()
