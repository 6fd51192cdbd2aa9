"""What counting costs: client CPU per request with ``PrometheusMetrics`` on vs off.

``python -m benchmarks.metrics_cost`` (run by ``make bench`` after the main scenarios)
measures side by side in one process, against the load server in its own process:

- end to end: three warm clients, ``metrics=None``, a ``PrometheusMetrics``, and one
  whose request hooks run ten times (the cost magnified above the noise), run batches of
  ``list_many`` GETs in turns (the order rotates); this process's CPU time
  (``time.process_time``: the load server is not in it) per request, and the median of
  per-round ratios with a bootstrap interval;
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
from acp_async._observe import Observer, RequestOutcome
from acp_async.metrics import PrometheusMetrics

from .server import LoadServer
from .stats import fmt, fmt_spread, replace_section, verdict

GOAL = 0.03  # at most 3% of a request's CPU
START = "<!-- metrics-cost: written by python -m benchmarks.metrics_cost -->"
END = "<!-- /metrics-cost -->"
TOKEN = "bench-token"
MODES = ("off", "on", "x10")
AMPLIFY = 10
# 40 rounds of 500-request batches: short batches side by side, so a busy neighbour on a
# shared machine slows every mode of a round instead of one.
FULL = {"requests": 500, "servers": 500, "concurrency": 50, "rounds": 40, "calls": 200_000}
SMOKE = {"requests": 24, "servers": 12, "concurrency": 4, "rounds": 3, "calls": 1000}


def _ids(requests: int, servers: int) -> list[str]:
    return [f"srv_{i % servers:05d}" for i in range(requests)]


async def _fan_out(client: ACPClient, ids: Sequence[str], concurrency: int) -> int:
    done = 0
    async for outcome in client.runs.list_many(ids, limit=20, concurrency=concurrency):
        if outcome.error is not None:
            raise outcome.error
        done += 1
    return done


class _Amplified(Observer):
    """Every request hook of ``metrics`` called ``AMPLIFY`` times: ten times the cost of
    counting, so the end-to-end difference stands out of a noisy machine's spread."""

    def __init__(self, metrics: PrometheusMetrics) -> None:
        self._metrics = metrics

    def request_started(self) -> None:
        for _ in range(AMPLIFY):
            self._metrics.request_started()

    def request_finished(self, outcome: RequestOutcome, seconds: float) -> None:
        for _ in range(AMPLIFY):
            self._metrics.request_finished(outcome, seconds)


async def _rounds(
    base_url: str, ids: Sequence[str], warm: Sequence[str], concurrency: int, rounds: int
) -> dict[str, list[float]]:
    """CPU seconds per request, per batch: three warm clients (off, on, on x10) take turns,
    batch after batch, so the machine's drift hits all alike (the order rotates)."""
    cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
    # Fresh registries: the cost of counting, not of whatever else is registered.
    observers: dict[str, Observer | None] = {
        "off": None,
        "on": PrometheusMetrics(CollectorRegistry()),
        "x10": _Amplified(PrometheusMetrics(CollectorRegistry())),
    }
    clients = {
        mode: ACPClient(TOKEN, base_url=base_url, max_connections=100, metrics=observer)
        for mode, observer in observers.items()
    }
    async with clients["off"], clients["on"], clients["x10"]:
        for client in clients.values():
            await _fan_out(client, warm, concurrency)
        for round_ in range(rounds):
            shift = round_ % len(MODES)
            for mode in MODES[shift:] + MODES[:shift]:
                started = time.process_time()
                done = await _fan_out(clients[mode], ids, concurrency)
                cpu[mode].append((time.process_time() - started) / done)
    return cpu


def end_to_end(*, requests: int, servers: int, concurrency: int, rounds: int) -> dict[str, Any]:
    """Per mode: CPU seconds per request, one value per batch."""
    ids = _ids(requests, servers)
    warm = _ids(concurrency, servers)
    with LoadServer() as server, asyncio.Runner() as runner:
        cpu = runner.run(_rounds(server.base_url, ids, warm, concurrency, rounds))
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
        rounds=sizes["rounds"],
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
    off, on, x10 = cpu["off"], cpu["on"], cpu["x10"]
    # The modes of a round ran next to each other: ratios within a round, then the median.
    direct = [b / a - 1 for a, b in zip(off, on, strict=True)]
    amplified = [(c / a - 1) / AMPLIFY for a, c in zip(off, x10, strict=True)]
    rows = []
    for label, values in (
        ("on / off - 1", direct),
        (f"(on x{AMPLIFY} / off - 1) / {AMPLIFY}", amplified),
    ):
        low, high = median_interval(values)
        rows.append(
            f"| end to end: {label} | {_pct(statistics.median(values))} "
            f"[{_pct(low)} - {_pct(high)}] ({_pct(min(values))} - {_pct(max(values))}) "
            f"| {_end_to_end_verdict(low, high)} |"
        )
    hook_cost = hook["on"]["request"] - hook["off"]["request"]
    hook_share = hook_cost / statistics.median(off)
    lines = [
        START,
        "## Metrics: CPU per request with `PrometheusMetrics` on vs off",
        "",
        f"{sizes['rounds']} rounds of batches of {sizes['requests']:,} GETs (`list_many`, "
        f"concurrency {sizes['concurrency']}): three warm clients take turns in a rotating "
        f"order, one without metrics, one with a `PrometheusMetrics`, and one whose observer "
        f"calls every request hook of a `PrometheusMetrics` {AMPLIFY} times (the cost of "
        "counting, magnified to stand out of the noise). This process's CPU time per request "
        f"(the load server runs in its own{' pinned' if results['pinned'] else ''} process), "
        "median (min - max) of batches.",
        "",
        "| metrics | client CPU per request |",
        "|---|---|",
        f"| off (`metrics=None`) | {fmt_spread([v * 1e6 for v in off])} us |",
        f"| on (`PrometheusMetrics`) | {fmt_spread([v * 1e6 for v in on])} us |",
        f"| on, every request hook x{AMPLIFY} | {fmt_spread([v * 1e6 for v in x10])} us |",
        "",
        "Cost of counting as a share of a request's CPU: the median of per-round ratios "
        "[95% bootstrap interval] (min - max).",
        "",
        "| measure | share | goal <= 3% |",
        "|---|---|---|",
        *rows,
        f"| the hooks alone: {fmt(hook_cost * 1e6)} us per request over the median off "
        f"request | {_pct(hook_share)} | {verdict(hook_share <= GOAL)} |",
        "",
        f"Hooks per call, best of 5 x {sizes['calls']:,}: a request (`request_started` + "
        f"`request_finished`) {fmt(hook['off']['request'] * 1e9)} ns with the no-op "
        f"`Observer`, {fmt(hook['on']['request'] * 1e9)} ns with `PrometheusMetrics`; a watch "
        f"poll (`watch_polled` + one `watch_event`) {fmt(hook['off']['poll'] * 1e9)} ns vs "
        f"{fmt(hook['on']['poll'] * 1e9)} ns. Batches of one mode differ by up to "
        f"{_pct(max(off) / min(off) - 1)} (off) on this shared machine.",
        END,
    ]
    return "\n".join(lines) + "\n"


def _pct(value: float) -> str:
    return f"{value * 100:+.2f}%"


def write_section(path: Path, section: str) -> None:
    """Replace our section of ``path`` (between the markers), or append it."""
    replace_section(path, section, START, END)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.metrics_cost")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks, not numbers")
    parser.add_argument("--rounds", type=int, help=f"rounds of batches ({FULL['rounds']})")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).with_name("RESULTS.md"), help="Markdown file"
    )
    args = parser.parse_args()
    sizes = dict(SMOKE if args.smoke else FULL)
    if args.rounds:
        sizes["rounds"] = args.rounds
    print("metrics cost ...", file=sys.stderr)
    section = markdown(measure(sizes))
    if not args.smoke:
        write_section(args.out, section)
    print(section)


if __name__ == "__main__":
    main()
