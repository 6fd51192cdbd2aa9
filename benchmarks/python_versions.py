"""The fan-out's (c) / (b) on each Python: ``python -m benchmarks.python_versions``.

(b) aiohttp + ``json.loads`` and (c) acp_async ``list_many``, the scenarios of the main
report, run by each interpreter's own virtualenv (``make bench-pythons`` makes
``.venv-3.11`` and ``.venv-3.13``, the test matrix's) in one time window: a number of
turns, each turn one child process per interpreter in a rotating order, each child
timing (b) and (c) twice, in alternating order, against a load server of its own. The
machine is shared and noisy, so every figure is a median of per-repetition ratios, each
ratio taken inside one child, where (b) and (c) ran seconds apart.

It writes its own section of ``benchmarks/RESULTS.md`` (between markers).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from . import http_bench
from .stats import fmt, fmt_spread, replace_section

START = "<!-- python-versions: written by python -m benchmarks.python_versions -->"
END = "<!-- /python-versions -->"
ROOT = Path(__file__).resolve().parent.parent
FULL = {"requests": 2000, "servers": 1000, "concurrency": 50, "reps": 2, "turns": 10}
SMOKE = {"requests": 24, "servers": 12, "concurrency": 4, "reps": 2, "turns": 1}
PYTHONS = [".venv-3.11/bin/python", ".venv-3.13/bin/python"]


def child(sizes: dict[str, int]) -> dict[str, Any]:
    """One child's measurement, in this interpreter: (b) and (c) ``reps`` times."""
    measured = http_bench.measure(
        requests=sizes["requests"],
        servers=sizes["servers"],
        concurrency=sizes["concurrency"],
        reps=sizes["reps"],
        keys=["b", "c"],
    )
    return {
        "python": platform.python_version(),
        "aiohttp": importlib.metadata.version("aiohttp"),
        "orjson": importlib.metadata.version("orjson"),
        "rates": measured["rates"],
        "uvloop": measured["uvloop"],
        "pinned": measured["pinned"],
    }


def _run_child(python: str, sizes: dict[str, int]) -> dict[str, Any]:
    args = [f"--{key}={value}" for key, value in sizes.items() if key != "turns"]
    done = subprocess.run(
        [python, "-m", "benchmarks.python_versions", "--child", *args],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(pythons: list[str], sizes: dict[str, int]) -> dict[str, Any]:
    """Each interpreter's children, turn by turn (the order rotates each turn)."""
    started = time.perf_counter()
    children: dict[str, list[dict[str, Any]]] = {python: [] for python in pythons}
    for turn in range(sizes["turns"]):
        order = pythons[turn % len(pythons) :] + pythons[: turn % len(pythons)]
        for python in order:
            print(f"turn {turn + 1}/{sizes['turns']}: {python}", file=sys.stderr)
            children[python].append(_run_child(python, sizes))
    return {"children": children, "sizes": sizes, "seconds": time.perf_counter() - started}


def _ratios(child: dict[str, Any]) -> list[float]:
    rates = child["rates"]
    return [c / b for b, c in zip(rates["b"], rates["c"], strict=True)]


def markdown(results: dict[str, Any]) -> str:
    sizes, children = results["sizes"], results["children"]
    rows = []
    for runs in children.values():
        first = runs[0]
        b = [rate for run in runs for rate in run["rates"]["b"]]
        c = [rate for run in runs for rate in run["rates"]["c"]]
        ratios = [ratio for run in runs for ratio in _ratios(run)]
        rows.append(
            f"| {first['python']} | {first['aiohttp']} | {fmt_spread(b)} | {fmt_spread(c)} "
            f"| **{fmt(statistics.median(ratios))}** ({fmt(min(ratios))} - {fmt(max(ratios))}) |"
        )
    pythons = list(children)
    cross = []
    if len(pythons) == 2:
        base, other = (children[p] for p in pythons)
        per_turn = [
            statistics.median(o["rates"]["c"]) / statistics.median(b["rates"]["c"])
            for b, o in zip(base, other, strict=True)
        ]
        cross = [
            "",
            f"(c) on {other[0]['python']} / (c) on {base[0]['python']}, per turn (each "
            f"child's median): {fmt_spread(per_turn)}.",
        ]
    first = next(iter(children.values()))[0]
    lines = [
        START,
        f"## The fan-out on each Python: (c) / (b), {sizes['turns']} turns "
        f"x {sizes['reps']} repetitions",
        "",
        f"(b) aiohttp + `json.loads` and (c) acp_async `list_many`, as above "
        f"({sizes['requests']:,} GETs across {sizes['servers']:,} server ids, concurrency "
        f"{sizes['concurrency']}), measured by each interpreter's own virtualenv in one "
        f"window of {results['seconds']:.0f} s: {sizes['turns']} turns, each one child "
        f"process per interpreter (the order rotating), each child timing (b) and (c) "
        f"{sizes['reps']} times in alternating order against a load server of its own "
        f"(on the same interpreter{', uvloop' if first['uvloop'] else ''}"
        f"{', pinned to its own core' if first['pinned'] else ''}); orjson "
        f"{first['orjson']}. The machine is shared and noisy: requests per second are "
        "median (min - max) of repetitions, and (c) / (b) is the median (min - max) of "
        "per-repetition ratios, each taken inside one child.",
        "",
        "| Python | aiohttp | (b) requests/s | (c) requests/s | (c) / (b) |",
        "|---|---|---|---|---|",
        *rows,
        *cross,
        END,
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.python_versions")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks, not numbers")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument(
        "--python", action="append", help=f"an interpreter (default: {' and '.join(PYTHONS)})"
    )
    for key, value in FULL.items():
        parser.add_argument(f"--{key}", type=int, help=f"default {value}")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).with_name("RESULTS.md"), help="Markdown file"
    )
    args = parser.parse_args()
    sizes = dict(SMOKE if args.smoke else FULL)
    sizes.update({key: getattr(args, key) for key in FULL if getattr(args, key) is not None})
    if args.child:
        print(json.dumps(child(sizes)))
        return
    section = markdown(measure(args.python or PYTHONS, sizes))
    if not args.smoke:
        replace_section(args.out, section, START, END)
    print(section)


if __name__ == "__main__":
    main()
