"""``python -m benchmarks.fleet``: the fleet-on-Redis figures, written to ``FLEET.md``.

Needs ``redis-server`` on PATH (Debian's package). ``--smoke`` runs each scenario at a
tiny size (the test suite does this); its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import fleet_scenarios as fs
from .report import keep_sections, machine
from .stats import fmt, verdict

FULL = {
    "tp_servers": 300, "tp_seconds": 4.0, "tp_reps": 5,
    "mem_servers": 200,
    "cpu_loops": 300, "cpu_reps": 7,
    "rec_servers": 40, "rec_lease": 2.0, "rec_interval": 0.5, "rec_reps": 3, "rec_slots": 32,
    "scale_servers": 20_000, "scale_workers": 4, "scale_seconds": 20.0,
}  # fmt: skip
SMOKE = {
    "tp_servers": 10, "tp_seconds": 0.3, "tp_reps": 1,
    "mem_servers": 3,
    "cpu_loops": 3, "cpu_reps": 1,
    "rec_servers": 4, "rec_lease": 0.5, "rec_interval": 0.1, "rec_reps": 1, "rec_slots": 4,
    "scale_servers": 50, "scale_workers": 2, "scale_seconds": 2.0,
}  # fmt: skip


def run(s: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    results: dict[str, Any] = {"sizes": s}
    with fs.redis_server() as redis:
        print("fleet: throughput ...", file=sys.stderr)
        results["throughput"] = fs.throughput(
            s["tp_servers"], s["tp_seconds"], s["tp_reps"], redis.url
        )
        print("fleet: state bytes ...", file=sys.stderr)
        results["state"] = fs.state_bytes(s["mem_servers"], redis.url)
        print("fleet: unchanged poll CPU ...", file=sys.stderr)
        results["cpu"] = fs.unchanged_cpu(s["cpu_loops"], s["cpu_reps"])
        print("fleet: recovery ...", file=sys.stderr)
        results["recovery"] = fs.recovery(
            redis.url,
            s["rec_servers"],
            s["rec_lease"],
            s["rec_interval"],
            s["rec_reps"],
            concurrency=s["rec_slots"],
        )
        print("fleet: scale ...", file=sys.stderr)
        assert redis.process is not None
        results["scale"] = fs.scale(
            redis.url,
            [(redis.url, redis.process.pid)],
            s["scale_servers"],
            s["scale_workers"],
            s["scale_seconds"],
        )
    results["estimate"] = fs.estimate(results["scale"])
    results["seconds"] = time.perf_counter() - started
    return results


def markdown(r: dict[str, Any]) -> str:
    tp, st, cpu, rec, sc, est = (
        r["throughput"],
        r["state"],
        r["cpu"],
        r["recovery"],
        r["scale"],
        r["estimate"],
    )
    bound = rec["lease"] + rec["interval"]
    rows = [
        ("Redis worker vs in-process watch, polls/s (same fake fleet, alternating)",
         f"{fmt(tp['redis_polls_per_s'])} vs {fmt(tp['inprocess_polls_per_s'])}: "
         f"ratio {tp['ratio']:.2f} (overhead {100 * (1 - tp['ratio']):.0f}%)",
         "overhead <= 15%", verdict(tp["ratio"] >= 0.85)),
        ("Redis round trips per poll (commits and claims batched, one script a trip)",
         f"{tp['round_trips_per_poll']:.3f} ({tp['redis_commands_per_poll']:.2f} commands)",
         "<= 2", verdict(tp["round_trips_per_poll"] <= 2)),
        ("State bytes per server in Redis, limit=50, 5 KB outputs (stream aside)",
         f"{fmt(st['redis_5kb'])}", "<= 1 KB", verdict(st["redis_5kb"] <= 1024)),
        ("In-process watch bytes per server, 50 runs of 100 B / 5 KB / 50 KB outputs",
         f"{fmt(st['inprocess_100b'])} / {fmt(st['inprocess_5kb'])} / {fmt(st['inprocess_50kb'])}",
         "<= 2 KB, flat", verdict(max(st[k] for k in st if k.startswith("inprocess")) <= 2048)),
        ("CPU of an unchanged 50-run poll (5 KB outputs) vs structuring that page",
         f"{fmt(cpu['unchanged_us'])} us vs {fmt(cpu['structure_us'])} us: {cpu['ratio']:.2f}x "
         f"({cpu['ratio_with_decode']:.2f}x of decoding and structuring it, "
         f"{fmt(cpu['decode_structure_us'])} us)",
         "<= 0.3x", verdict(cpu["ratio"] <= 0.3)),
        (f"Recovery after SIGKILL of one of two workers (lease {rec['lease']:g} s, "
         f"interval {rec['interval']:g} s, {rec['concurrency']} polls at once: the survivor "
         "keeps up with the fleet)",
         f"max {rec['max']:.2f} s ({', '.join(f'{x:.2f}' for x in rec['seconds'])})",
         f"<= {bound:g} s", verdict(rec["max"] <= bound)),
    ]  # fmt: skip
    lines = [
        "# Fleet on Redis: figures",
        "",
        f"Measured by `python -m benchmarks.fleet` in {r['seconds']:.0f} s on:",
        "",
        machine(),
        "",
        "| figure | measured | target | |",
        "|---|---|---|---|",
        *(f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows),
        "",
        "## What each figure includes",
        "",
        "- Polls/s: one process runs the fake ACP server and the watcher (in-process watch"
        " or one Redis worker, 16 polls at once), 300 busy servers with 5 runs each, pages"
        " unchanged; the two alternate, each for the same window, and the ratio is the"
        " median of the per-pair ratios. That process is CPU-bound: the gap is the Redis"
        " path's CPU per poll (redis-py encoding a script's arguments and reading its"
        " reply, a round trip per 16 polls) and any moment a slot waits for a claim."
        " Round trips are counted at the store; commands are redis-server's own count"
        " (`INFO stats`), the commands the scripts run included.",
        "- State bytes: `MEMORY USAGE ... SAMPLES 0` of every per-fleet key but the stream"
        " (`due`, `claims`, `state`, `failing`, `workers`, `seq`), summed and divided by the"
        " servers; each server's `state` value is its packed state (13 bytes a run and a"
        " 13-byte header: 663 bytes for 50 runs) behind its commit's `token:` prefix.",
        "- Unchanged poll CPU: the engine's whole work, as either store does it, for a"
        " 50-run page (5 KB outputs) whose bytes equal the last page's: the server's state"
        " unpacked from its bytes (the header only: the runs stay packed), `poll` given"
        " the body (xxh3 of its raw bytes, found equal: no JSON decoding, no structuring,"
        " no per-run fingerprints), the next delay, and the state packed again (the runs'"
        " bytes copied); against `structure(page, AgentRunList)` of the same page already"
        " decoded, and against decoding and structuring it (what a poll without the"
        " watch's memory costs).",
        "",
        f"## Scale: {sc['servers']:,} servers, {sc['workers']} worker processes, interval 1 s",
        "",
        "Everything on this 2-core machine at once: the fake ACP server (one Python process),"
        " the workers and redis-server.",
        "",
        "| | |",
        "|---|---|",
        f"| polls/s | {fmt(sc['polls_per_s'])} |",
        f"| Redis commands/s | {fmt(sc['redis_commands_per_s'])} "
        f"({sc['redis_commands_per_poll']:.2f} per poll) |",
        f"| redis-server CPU | {100 * sc['redis_cpu']:.0f}% of a core "
        f"({fmt(sc['redis_cpu_us_per_poll'])} us per poll) |",
        f"| workers' CPU | {100 * sc['workers_cpu']:.0f}% of a core "
        f"({fmt(sc['worker_cpu_ms_per_poll'])} ms per poll) |",
        f"| fake server's CPU | {100 * sc['fake_server_cpu']:.0f}% of a core |",
        f"| state in Redis per server | {fmt(sc['state_bytes_per_server'])} bytes |",
        f"| servers overdue at the end | {sc['overdue']:,} |",
        "",
        "## Estimate: 1,000,000 servers polled every 60 s",
        "",
        f"From the per-poll costs measured above: {fmt(est['polls_per_s'])} polls/s needs about "
        f"{est['worker_cores']:.0f} worker cores (CPU per poll, HTTP and TLS to a real host "
        f"aside), {fmt(est['redis_commands_per_s'])} Redis commands/s and "
        f"{est['redis_cores']:.2f} cores of redis-server, "
        f"and {est['state_gb']:.2f} GB of state in Redis (plus the stream: `max_events` "
        "entries of about a run's JSON each).",
        "",
    ]
    return "\n".join(lines)


def bench_main(
    prog: str,
    run: Callable[[dict[str, Any]], dict[str, Any]],
    markdown: Callable[[dict[str, Any]], str],
    sizes: tuple[dict[str, Any], dict[str, Any]],
    save: Callable[[Path, str], None],
) -> None:
    """The command line of a fleet bench (this one and ``benchmarks.fleet_cluster``):
    ``run`` at the full or the ``--smoke`` sizes, print the Markdown and, unless a smoke
    run, ``save`` it into ``--out`` (FLEET.md)."""
    full, smoke = sizes
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks, not numbers")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).with_name("FLEET.md"), help="Markdown file"
    )
    args = parser.parse_args()
    text = markdown(run(dict(smoke if args.smoke else full)))
    if not args.smoke:
        save(args.out, text)
    print(text)


def _rewrite(out: Path, text: str) -> None:
    """The file becomes these figures, followed by the sections other scripts wrote into
    it (the cluster's)."""
    old = out.read_text() if out.exists() else ""
    out.write_text(keep_sections(old, text))


def main() -> None:
    bench_main("python -m benchmarks.fleet", run, markdown, (FULL, SMOKE), _rewrite)


if __name__ == "__main__":
    main()
