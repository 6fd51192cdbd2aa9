"""Run the HTTP scenarios side by side: A B C ... per repetition, rotating the order."""

from __future__ import annotations

import asyncio
import importlib.util
import time
from typing import Any

from .http_scenarios import OPTIONAL, SCENARIOS
from .server import LoadServer, Stopwatch


def available() -> list[str]:
    return [
        key
        for key in SCENARIOS
        if all(importlib.util.find_spec(mod) is not None for mod in OPTIONAL.get(key, ()))
    ]


def _ids(requests: int, servers: int) -> list[str]:
    return [f"srv_{i % servers:05d}" for i in range(requests)]


def measure(
    *,
    requests: int,
    servers: int,
    concurrency: int,
    reps: int,
    keys: list[str] | None = None,
    tls: bool = False,
) -> dict[str, Any]:
    """Per scenario: requests per second, this process's CPU microseconds per request and
    the server's CPU share, one value per rep.

    With ``tls`` the load server serves https with a certificate made for this run.
    """
    keys = keys or available()
    ids = _ids(requests, servers)
    warm = _ids(concurrency, servers)
    rates: dict[str, list[float]] = {k: [] for k in keys}
    server_cpu: dict[str, list[float]] = {k: [] for k in keys}
    client_cpu: dict[str, list[float]] = {k: [] for k in keys}
    with LoadServer(tls=tls) as server, asyncio.Runner() as runner:
        for rep in range(reps):
            order = keys[rep % len(keys) :] + keys[: rep % len(keys)]
            for key in order:
                scenario = SCENARIOS[key](server.base_url, concurrency, server.ssl_context)
                if scenario.is_async:
                    runner.run(scenario.open())
                    runner.run(scenario.run(warm))  # a warm pool for everyone
                    cpu = time.process_time()
                    with Stopwatch(server) as watch:
                        done = runner.run(scenario.run(ids))
                    cpu = time.process_time() - cpu
                    runner.run(scenario.close())
                else:
                    scenario.open()
                    scenario.run(warm)
                    cpu = time.process_time()
                    with Stopwatch(server) as watch:
                        done = scenario.run(ids)
                    cpu = time.process_time() - cpu
                    scenario.close()
                assert done == len(ids), (key, done)
                rates[key].append(len(ids) / watch.seconds)
                client_cpu[key].append(cpu / len(ids) * 1e6)
                if watch.server_cpu_share is not None:
                    server_cpu[key].append(watch.server_cpu_share)
        pinned, uvloop = server.pinned, server.uvloop
    return {
        "rates": rates,
        "client_cpu": client_cpu,
        "server_cpu": server_cpu,
        "pinned": pinned,
        "uvloop": uvloop,
    }
