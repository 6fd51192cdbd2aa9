"""What counting costs: client CPU per request with ``PrometheusMetrics`` on vs off.

``python -m benchmarks.metrics_cost`` (run by ``make bench`` after the main scenarios)
measures side by side in one process, against the load server in its own process:

- end to end: ``list_many`` over the same GETs with ``metrics=None`` and with a
  ``PrometheusMetrics``, alternating in a rotating order each repetition; this process's
  CPU time (``time.process_time``: the load server is not in it) per request;
- the hooks alone: what one request's hooks (``request_started`` + ``request_finished``)
  and one watch poll's (``watch_polled`` + one ``watch_event``) cost, no-op ``Observer``
  vs ``PrometheusMetrics``, over many calls.

The goal is at most 3% of a request's CPU. It writes its own section of
``benchmarks/RESULTS.md`` (between markers, so the main report can be regenerated).
"""

from __future__ import annotations

import argparse
import asyncio
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
FULL = {"requests": 2000, "servers": 1000, "concurrency": 50, "reps": 9, "calls": 200_000}
SMOKE = {"requests": 24, "servers": 12, "concurrency": 4, "reps": 2, "calls": 1000}


def _ids(requests: int, servers: int) -> list[str]:
    return [f"srv_{i % servers:05d}" for i in range(requests)]


async def _fan_out(client: ACPClient, ids: Sequence[str], concurrency: int) -> int:
    done = 0
    async for outcome in client.runs.list_many(ids, limit=20, concurrency=concurrency):
        if outcome.error is not None:
            raise outcome.error
        done += 1
    return done


async def _cpu_per_request(
    base_url: str, metrics: Observer | None, ids: Sequence[str], warm: Sequence[str], conc: int
) -> float:
    """Seconds of this process's CPU per request, a warm pool first (untimed)."""
    async with ACPClient(TOKEN, base_url=base_url, max_connections=100, metrics=metrics) as client:
        await _fan_out(client, warm, conc)
        started = time.process_time()
        done = await _fan_out(client, ids, conc)
        spent = time.process_time() - started
    assert done == len(ids), done
    return spent / len(ids)


def end_to_end(*, requests: int, servers: int, concurrency: int, reps: int) -> dict[str, Any]:
    """Per mode ("off", "on"): CPU seconds per request, one value per repetition."""
    ids = _ids(requests, servers)
    warm = _ids(concurrency, servers)
    cpu: dict[str, list[float]] = {"off": [], "on": []}
    with LoadServer() as server, asyncio.Runner() as runner:
        for rep in range(reps):
            for mode in ("off", "on") if rep % 2 == 0 else ("on", "off"):
                # A fresh registry each time: the cost of counting, not of a growing registry.
                metrics = PrometheusMetrics(CollectorRegistry()) if mode == "on" else None
                cpu[mode].append(
                    runner.run(_cpu_per_request(server.base_url, metrics, ids, warm, concurrency))
                )
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
        reps=sizes["reps"],
    )
    results["hooks"] = hooks(sizes["calls"])
    results["sizes"] = sizes
    return results


def markdown(results: dict[str, Any]) -> str:
    sizes, cpu, hook = results["sizes"], results["cpu"], results["hooks"]
    off, on = cpu["off"], cpu["on"]
    # Repetitions ran in pairs (off/on adjacent): the median of per-pair ratios.
    overhead = [b / a - 1 for a, b in zip(off, on, strict=True)]
    per_request_off = statistics.median(off)
    hook_cost = hook["on"]["request"] - hook["off"]["request"]
    hook_share = hook_cost / per_request_off
    us = [v * 1e6 for v in off], [v * 1e6 for v in on]
    lines = [
        START,
        "## Metrics: CPU per request with `PrometheusMetrics` on vs off",
        "",
        f"{sizes['requests']:,} GETs across {sizes['servers']:,} server ids, concurrency "
        f"{sizes['concurrency']}, {sizes['reps']} repetitions alternating off/on (order "
        "swapped every repetition); this process's CPU time (the load server runs in its own"
        f"{' pinned' if results['pinned'] else ''} process) per request, median (min - max).",
        "",
        "| metrics | client CPU per request |",
        "|---|---|",
        f"| off (`metrics=None`) | {fmt_spread(us[0])} us |",
        f"| on (`PrometheusMetrics`) | {fmt_spread(us[1])} us |",
        "",
        "| measure | value | goal <= 3% |",
        "|---|---|---|",
        f"| end to end: on / off - 1, median of per-repetition ratios (min - max) | "
        f"{_pct(statistics.median(overhead))} ({_pct(min(overhead))} - {_pct(max(overhead))})"
        f" | {verdict(statistics.median(overhead) <= GOAL)} |",
        f"| the hooks alone: {fmt(hook_cost * 1e6)} us per request, share of a request's CPU |"
        f" {_pct(hook_share)} | {verdict(hook_share <= GOAL)} |",
        "",
        f"Hooks per call, best of 5 x {sizes['calls']:,}: a request (`request_started` + "
        f"`request_finished`) {fmt(hook['off']['request'] * 1e9)} ns with the no-op "
        f"`Observer`, {fmt(hook['on']['request'] * 1e9)} ns with `PrometheusMetrics`; a watch "
        f"poll (`watch_polled` + one `watch_event`) {fmt(hook['off']['poll'] * 1e9)} ns vs "
        f"{fmt(hook['on']['poll'] * 1e9)} ns. Repetitions of one mode differ by up to "
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
    parser.add_argument("--reps", type=int, help=f"repetitions (default {FULL['reps']})")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).with_name("RESULTS.md"), help="Markdown file"
    )
    args = parser.parse_args()
    sizes = dict(SMOKE if args.smoke else FULL)
    if args.reps:
        sizes["reps"] = args.reps
    print("metrics cost ...", file=sys.stderr)
    section = markdown(measure(sizes))
    if not args.smoke:
        write_section(args.out, section)
    print(section)


if __name__ == "__main__":
    main()
