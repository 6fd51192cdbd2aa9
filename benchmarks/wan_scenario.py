"""The WAN scenario: every answer 50 ms late, as from a server across the internet.

2,000 GETs with ``list_many(concurrency=100)`` against the official SDK sequentially and
in a pool of 50 threads (one client per thread). Sequential calls take a round trip
each, so that case is timed over fewer GETs and compared by requests per second.
Latency bound the ideal rates: concurrency / delay (2,000/s at 100, 1,000/s for 50
threads, 20/s one at a time).
"""

from __future__ import annotations

import asyncio
import importlib.util
from typing import Any

from .http_bench import _ids
from .http_scenarios import Official, OfficialThreads, Ours
from .server import LoadServer, Stopwatch


def measure(
    *,
    requests: int,
    servers: int,
    concurrency: int,
    threads: int,
    sequential: int,
    reps: int,
    delay: float,
) -> dict[str, Any]:
    """Per case: requests per second, one value per repetition (cases alternate)."""
    cases: dict[str, tuple[Any, int]] = {"c": (lambda url: Ours(url, concurrency), requests)}
    if importlib.util.find_spec("computer_agents") is not None:
        cases["e_pool"] = (lambda url: OfficialThreads(url, threads), requests)
        cases["e_seq"] = (lambda url: Official(url, 1), sequential)
    rates: dict[str, list[float]] = {key: [] for key in cases}
    with LoadServer(delay=delay) as server, asyncio.Runner() as runner:
        for rep in range(reps):
            keys = list(cases)
            for key in keys[rep % len(keys) :] + keys[: rep % len(keys)]:
                make, count = cases[key]
                scenario = make(server.base_url)
                ids = _ids(count, servers)
                warm = _ids(min(count, concurrency), servers)
                if scenario.is_async:
                    runner.run(scenario.open())
                    runner.run(scenario.run(warm))
                    with Stopwatch(server) as watch:
                        done = runner.run(scenario.run(ids))
                    runner.run(scenario.close())
                else:
                    scenario.open()
                    scenario.run(warm[: max(1, scenario.threads)])
                    with Stopwatch(server) as watch:
                        done = scenario.run(ids)
                    scenario.close()
                assert done == count, (key, done)
                rates[key].append(count / watch.seconds)
    return {
        "rates": rates,
        "delay": delay,
        "requests": requests,
        "sequential": sequential,
        "concurrency": concurrency,
        "threads": threads,
    }
