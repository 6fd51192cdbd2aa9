"""``python -m benchmarks``: run every scenario and write ``benchmarks/RESULTS.md``.

``--smoke`` runs each scenario at a tiny size (the test suite does this, so the harness
never rots); its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import (
    cli_scenario,
    converter_scenarios,
    http_bench,
    report,
    tls,
    wan_scenario,
    watch_scenario,
)
from .stats import write_section

FULL = {
    "requests": 2000,
    "servers": 1000,
    "concurrency": 50,
    "reps": 7,
    "pages": 5000,  # 100,000 runs
    "rounds": 5,
    "memory_pages": 500,  # 10,000 runs
    "fleets": [100, 1000, 10000],
    "polls": 4,
    "wan_requests": 2000,
    "wan_concurrency": 100,
    "wan_threads": 50,
    "wan_sequential": 60,  # 50 ms each: 2,000 would take 100 s
    "wan_reps": 3,
    "wan_delay": 0.05,
    "cli_servers": 2000,
    "cli_reps": 8,
}
SMOKE = {
    "requests": 24,
    "servers": 12,
    "concurrency": 4,
    "reps": 1,
    "pages": 4,
    "rounds": 2,
    "memory_pages": 2,
    "fleets": [5, 10],
    "polls": 2,
    "wan_requests": 20,
    "wan_concurrency": 10,
    "wan_threads": 4,
    "wan_sequential": 2,
    "wan_reps": 1,
    "wan_delay": 0.01,
    "cli_servers": 10,
    "cli_reps": 1,
}


def run(sizes: dict[str, object], out: Path | None) -> dict[str, object]:
    started = time.perf_counter()
    results: dict[str, object] = {"sizes": sizes}
    s = sizes
    print("HTTP scenarios ...", file=sys.stderr)
    results["http"] = http_bench.measure(
        requests=s["requests"],  # type: ignore[arg-type]
        servers=s["servers"],  # type: ignore[arg-type]
        concurrency=s["concurrency"],  # type: ignore[arg-type]
        reps=s["reps"],  # type: ignore[arg-type]
    )
    if tls.available():
        print("HTTP scenarios over TLS ...", file=sys.stderr)
        results["https"] = http_bench.measure(
            requests=s["requests"],  # type: ignore[arg-type]
            servers=s["servers"],  # type: ignore[arg-type]
            concurrency=s["concurrency"],  # type: ignore[arg-type]
            reps=s["reps"],  # type: ignore[arg-type]
            keys=["a", "b", "c"],
            tls=True,
        )
    print("WAN scenario ...", file=sys.stderr)
    results["wan"] = wan_scenario.measure(
        requests=s["wan_requests"],  # type: ignore[arg-type]
        servers=s["servers"],  # type: ignore[arg-type]
        concurrency=s["wan_concurrency"],  # type: ignore[arg-type]
        threads=s["wan_threads"],  # type: ignore[arg-type]
        sequential=s["wan_sequential"],  # type: ignore[arg-type]
        reps=s["wan_reps"],  # type: ignore[arg-type]
        delay=s["wan_delay"],  # type: ignore[arg-type]
    )
    if cli_scenario.available():
        print("CLI with and without uvloop ...", file=sys.stderr)
        results["cli"] = cli_scenario.measure(
            servers=s["cli_servers"],  # type: ignore[arg-type]
            concurrency=s["concurrency"],  # type: ignore[arg-type]
            reps=s["cli_reps"],  # type: ignore[arg-type]
        )
    print("converter scenarios ...", file=sys.stderr)
    results["converter"] = converter_scenarios.throughput(s["pages"], s["rounds"])  # type: ignore[arg-type]
    results["memory"] = converter_scenarios.memory(s["memory_pages"])  # type: ignore[arg-type]
    print("watch scenario ...", file=sys.stderr)
    results["watch"] = watch_scenario.measure(s["fleets"], s["polls"])  # type: ignore[arg-type]
    results["seconds"] = time.perf_counter() - started
    text = report.markdown(results)
    if out is not None:
        # Sections other scripts wrote (metrics cost, Python versions) stay.
        out.write_text(report.keep_sections(out.read_text() if out.exists() else "", text))
    print(text)
    return results


def http_only(sizes: dict[str, object], out: Path | None) -> None:
    """Only the HTTP and TLS scenarios (a), (b), (c), as a section of ``out`` named after
    this interpreter: how the targets hold on another Python, beside the main report."""
    s = sizes
    results: dict[str, object] = {}
    for name, tls_on in (("http", False), ("https", True)):
        if tls_on and not tls.available():
            continue
        print(f"HTTP scenarios{' over TLS' if tls_on else ''} ...", file=sys.stderr)
        results[name] = http_bench.measure(
            requests=s["requests"],  # type: ignore[arg-type]
            servers=s["servers"],  # type: ignore[arg-type]
            concurrency=s["concurrency"],  # type: ignore[arg-type]
            reps=s["reps"],  # type: ignore[arg-type]
            keys=["a", "b", "c"],
            tls=tls_on,
        )
    version = ".".join(map(str, sys.version_info[:2]))
    text = report.http_section(results, sizes, version)
    if out is not None:
        name = f"http-python{version.replace('.', '')}"  # a name the main report keeps
        write_section(out, text, name, "python -m benchmarks --http-only")
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks, not numbers")
    parser.add_argument("--reps", type=int, help="HTTP repetitions (default 7)")
    parser.add_argument(
        "--http-only",
        action="store_true",
        help="(a), (b), (c) over HTTP and TLS only, as this Python's own section of --out",
    )
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).with_name("RESULTS.md"), help="Markdown file"
    )
    args = parser.parse_args()
    sizes = dict(SMOKE if args.smoke else FULL)
    if args.reps:
        sizes["reps"] = args.reps
    if args.http_only:
        http_only(sizes, None if args.smoke else args.out)
        return
    run(sizes, None if args.smoke else args.out)


if __name__ == "__main__":
    main()
