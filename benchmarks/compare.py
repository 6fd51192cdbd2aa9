"""The fan-out of an earlier commit and of the working tree, side by side in one run.

    python -m benchmarks.compare [--base REV] [--reps N] [--requests N] [--tls] [--gzip]

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
import ssl
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import aiohttp

import acp_async

from .http_scenarios import Ours, RawJson, _connector
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


class FanOut(Ours):
    """(c) ``list_many`` with the given version's ``ACPClient``; with ``trust_env``,
    through a borrowed session made with aiohttp's ``trust_env=True``."""

    def __init__(
        self,
        package: ModuleType,
        base_url: str,
        concurrency: int,
        ssl_context: ssl.SSLContext | None = None,
        *,
        trust_env: bool = False,
    ) -> None:
        super().__init__(base_url, concurrency, ssl_context)
        self.client_class = package.ACPClient
        self._trust_env = trust_env

    def _borrowed_session(self) -> aiohttp.ClientSession | None:
        if not self._trust_env:
            return super()._borrowed_session()
        return aiohttp.ClientSession(connector=_connector(self._ssl), trust_env=True)


def measure(
    base: ModuleType,
    *,
    base_name: str,
    requests: int,
    concurrency: int,
    reps: int,
    tls: bool = False,
    gzipped: bool = False,
) -> dict[str, dict[str, list[float]]]:
    """Per scenario: requests per second and client CPU microseconds per request, per rep."""
    ids = [f"srv_{i % 1000:05d}" for i in range(requests)]
    warm = ids[:concurrency]
    results: dict[str, dict[str, list[float]]] = {}
    with LoadServer(tls=tls, gzipped=gzipped) as server, asyncio.Runner() as runner:
        url, context = server.base_url, server.ssl_context
        makers: dict[str, Callable[[], RawJson | FanOut]] = {
            "b. aiohttp + json.loads": lambda: RawJson(url, concurrency, context),
            f"c. list_many at {base_name}": lambda: FanOut(base, url, concurrency, context),
            f"c. list_many at {base_name} (A/A control)": lambda: FanOut(
                base, url, concurrency, context
            ),
            "c. list_many now": lambda: FanOut(acp_async, url, concurrency, context),
            "c. now, borrowed session with aiohttp trust_env=True": lambda: FanOut(
                acp_async, url, concurrency, context, trust_env=True
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
    parser.add_argument("--tls", action="store_true", help="over https (a local certificate)")
    parser.add_argument("--gzip", action="store_true", help="the page gzip-encoded")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="acp-base-") as tmp:
        base = load_revision(args.base, Path(tmp))
        results = measure(
            base,
            base_name=args.base,
            requests=args.requests,
            concurrency=args.concurrency,
            reps=args.reps,
            tls=args.tls,
            gzipped=args.gzip,
        )
    print(
        f"{'TLS' if args.tls else 'plain HTTP'}{', gzip' if args.gzip else ''}, "
        f"{args.reps} repetitions, Python {sys.version.split()[0]}"
    )
    print(table(results, base_name=args.base))


if __name__ == "__main__":
    main()
