"""The fan-out of an earlier commit and of the working tree, side by side in one run.

    python -m benchmarks.compare [--base REV] [--reps N] [--requests N]

The package at ``REV`` (default ``main``) is exported from git and imported under another
name, so both versions run in this one process against the same load server, in
alternating order each repetition: on a noisy machine only an A/B/A/B run shows a few
percent. Scenarios: (b) raw aiohttp + ``json.loads``, (c) ``list_many`` at ``REV`` (twice:
the second copy, an A/A control, shows what noise alone does), (c) ``list_many`` now, and
(c) now through a borrowed session made with aiohttp's ``trust_env=True`` (what the client
never does: a netrc and proxy lookup in a thread per request). Each row gives requests per
second and this process's CPU time per request (threads included), both noisy on a shared
machine; and, counted once per scenario under cProfile after the timed runs, the Python
function calls per request in the event loop's thread: deterministic, so a change of a
few calls shows where the timings cannot.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import importlib.util
import io
import pstats
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp

import acp_async

from .http_scenarios import TOKEN, RawJson
from .server import LoadServer, Stopwatch
from .stats import fmt, fmt_spread

ROOT = Path(__file__).resolve().parent.parent


def load_revision(revision: str, into: Path) -> ModuleType:
    """``acp_async`` as it was at ``revision``, imported as ``acp_async_base``."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision, "acp_async"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    package = into / "acp_async"
    spec = importlib.util.spec_from_file_location(
        "acp_async_base", package / "__init__.py", submodule_search_locations=[str(package)]
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["acp_async_base"] = module
    spec.loader.exec_module(module)
    return module


class FanOut:
    """(c) ``list_many`` with the given version's ``ACPClient``."""

    is_async = True

    def __init__(
        self, name: str, package: ModuleType, base_url: str, concurrency: int, trust_env: bool
    ) -> None:
        self.name = name
        self._package = package
        self._base = base_url
        self._concurrency = concurrency
        self._trust_env = trust_env
        self._client: Any = None
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        if self._trust_env:
            connector = aiohttp.TCPConnector(limit=100)
            self._session = aiohttp.ClientSession(connector=connector, trust_env=True)
        self._client = self._package.ACPClient(
            TOKEN, base_url=self._base, max_connections=100, session=self._session
        )
        await self._client.__aenter__()

    async def run(self, ids: Sequence[str]) -> int:
        done = 0
        async for outcome in self._client.runs.list_many(
            ids, limit=20, concurrency=self._concurrency
        ):
            if outcome.error is not None:
                raise outcome.error
            done += 1
        return done

    async def close(self) -> None:
        await self._client.close()
        if self._session is not None:
            await self._session.close()


def measure(
    base: ModuleType, *, base_name: str, requests: int, concurrency: int, reps: int
) -> dict[str, dict[str, list[float]]]:
    """Per scenario: requests per second and client CPU microseconds per request, per rep."""
    ids = [f"srv_{i % 1000:05d}" for i in range(requests)]
    warm = ids[:concurrency]
    results: dict[str, dict[str, list[float]]] = {}
    with LoadServer() as server, asyncio.Runner() as runner:
        makers = {
            "b. aiohttp + json.loads": lambda: RawJson(server.base_url, concurrency),
            f"c. list_many at {base_name}": lambda: FanOut(
                "base", base, server.base_url, concurrency, False
            ),
            f"c. list_many at {base_name} (A/A control)": lambda: FanOut(
                "base", base, server.base_url, concurrency, False
            ),
            "c. list_many now": lambda: FanOut(
                "now", acp_async, server.base_url, concurrency, False
            ),
            "c. now, borrowed session with aiohttp trust_env=True": lambda: FanOut(
                "env", acp_async, server.base_url, concurrency, True
            ),
        }
        keys = list(makers)
        for key in keys:
            results[key] = {"rate": [], "cpu_us": []}
        for rep in range(reps):
            order = keys[rep % len(keys) :] + keys[: rep % len(keys)]
            for key in order:
                scenario = makers[key]()
                runner.run(scenario.open())
                runner.run(scenario.run(warm))
                cpu = time.process_time()
                with Stopwatch(server) as watch:
                    done = runner.run(scenario.run(ids))
                cpu = time.process_time() - cpu
                runner.run(scenario.close())
                assert done == len(ids), (key, done)
                results[key]["rate"].append(len(ids) / watch.seconds)
                results[key]["cpu_us"].append(cpu / len(ids) * 1e6)
            print(f"rep {rep + 1}/{reps} done", file=sys.stderr)
        for key in keys:
            scenario = makers[key]()
            runner.run(scenario.open())
            runner.run(scenario.run(warm))
            profile = cProfile.Profile()
            profile.enable()
            runner.run(scenario.run(ids))
            profile.disable()
            runner.run(scenario.close())
            calls = pstats.Stats(profile).total_calls  # type: ignore[attr-defined]
            results[key]["calls"] = [calls / len(ids)]
    return results


def table(results: dict[str, dict[str, list[float]]], *, base_name: str) -> str:
    lines = [
        "| scenario | requests/s, median (min - max) | client CPU per request, us "
        "| Python calls per request |",
        "|---|---|---|---|",
    ]
    for key, values in results.items():
        lines.append(
            f"| {key} | {fmt_spread(values['rate'])} | {fmt_spread(values['cpu_us'])} "
            f"| {values['calls'][0]:.1f} |"
        )
    base = results[f"c. list_many at {base_name}"]
    lines.append("")
    for label, other in (
        ("now", results["c. list_many now"]),
        ("A/A control", results[f"c. list_many at {base_name} (A/A control)"]),
    ):
        for metric, unit in (("rate", "requests/s"), ("cpu_us", "CPU per request")):
            ratios = [n / b for n, b in zip(other[metric], base[metric], strict=True)]
            lines.append(
                f"- {label} / {base_name}, {unit}, per repetition: median "
                f"{fmt(statistics.median(ratios))} (min {fmt(min(ratios))}, "
                f"max {fmt(max(ratios))})"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compare")
    parser.add_argument("--base", default="main", help="the git revision to compare with (main)")
    parser.add_argument("--reps", type=int, default=8, help="repetitions (8)")
    parser.add_argument("--requests", type=int, default=2000, help="requests per run (2000)")
    parser.add_argument("--concurrency", type=int, default=50, help="in flight (50)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="acp-base-") as tmp:
        base = load_revision(args.base, Path(tmp))
        results = measure(
            base,
            base_name=args.base,
            requests=args.requests,
            concurrency=args.concurrency,
            reps=args.reps,
        )
    print(table(results, base_name=args.base))


if __name__ == "__main__":
    main()
