"""Turn the measurements into the Markdown table of ``RESULTS.md``."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import statistics
from pathlib import Path
from typing import Any

from .stats import fmt, fmt_spread, verdict

_PACKAGES = (
    "acp-async", "aiohttp", "attrs", "cattrs", "orjson", "uvloop", "httpx", "pydantic",
    "msgspec", "computer-agents",
)  # fmt: skip


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine() -> str:
    versions = []
    for name in _PACKAGES:
        try:
            versions.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    return (
        f"{_cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}\n\n" + ", ".join(versions)
    )


# A section another script writes into RESULTS.md: `<!-- name: written by ... -->` up to
# `<!-- /name -->`. Each script rewrites only its own; the main report keeps them all.
_SECTION = re.compile(r"<!-- ([\w-]+): written by [^>]*-->\n.*?<!-- /\1 -->\n?", re.S)


def keep_sections(old: str, new: str) -> str:
    """``new`` followed by the sections other scripts wrote into ``old``."""
    kept = [match.group(0).rstrip("\n") + "\n" for match in _SECTION.finditer(old)]
    return "\n".join([new.rstrip("\n") + "\n", *kept])


def _ratios(num: list[float], den: list[float]) -> list[float]:
    return [a / b for a, b in zip(num, den, strict=False)]


def _med(values: list[float]) -> float:
    return statistics.median(values)


def markdown(results: dict[str, Any]) -> str:
    http, sizes = results["http"], results["sizes"]
    names = {
        "a": "a. aiohttp `read()` (transport limit)",
        "b": "b. aiohttp + `json.loads` (dicts)",
        "c": "c. **acp_async `list_many`** (typed runs)",
        "d": "d. httpx.AsyncClient + pydantic v2",
        "e_seq": "e. computer-agents (official), sequential",
        "e_pool": f"e. computer-agents (official), {sizes['concurrency']} threads",
    }
    lines = [
        "# acp-async benchmarks",
        "",
        f"Machine: {machine()}",
        "",
        f"Written by `make bench` in {results['seconds']:.0f} s. Load server: "
        f"{'uvloop' if http['uvloop'] else 'asyncio'}, own process, "
        f"{'pinned to its own core' if http['pinned'] else 'not pinned'}.",
        "",
        f"## Reading runs over HTTP: {sizes['requests']:,} GETs across {sizes['servers']:,} "
        f"server ids, concurrency {sizes['concurrency']}, {sizes['reps']} repetitions",
        "",
        "Each page holds 20 runs in `data` and the same 20 in `runs` (34 KB). "
        "Requests per second, median (min - max); ours / theirs is the median of "
        "per-repetition ratios (> 1: we are faster). Client CPU per request is this "
        "process's CPU time (the load server has its own process and core) over the "
        "requests, in microseconds; by CPU, ours / theirs is theirs / ours of it (> 1: we "
        "spend less). On a machine shared with other work, a repetition's wall time moves "
        "with the neighbours' load; its CPU time much less.",
        "",
        "| scenario | requests/s | acp_async / this | client CPU per request "
        "| acp_async / this, by CPU | server CPU share |",
        "|---|---|---|---|---|---|",
    ]
    lines += _http_rows(http, names)
    if "https" in results:
        lines += [
            "",
            f"## The same over TLS: https with a certificate made at start-up "
            f"({sizes['reps']} repetitions)",
            "",
            "Every client trusts the load server through the same `ssl.SSLContext` (the "
            "certificate is its only authority); (c) borrows an `aiohttp.ClientSession` whose "
            "connector has it.",
            "",
            "| scenario | requests/s | acp_async / this | client CPU per request "
            "| acp_async / this, by CPU | server CPU share |",
            "|---|---|---|---|---|---|",
            *_http_rows(results["https"], names),
        ]
    if "wan" in results:
        lines += _wan(results["wan"])
    if "cli" in results:
        lines += _cli(results["cli"])
    conv, mem = results["converter"], results["memory"]
    ours = "acp_async (generated)"
    lines += [
        "",
        f"## Converter: {sizes['pages'] * 20:,} runs in pages of 20 ({sizes['rounds']} rounds)",
        "",
        "Runs per second, median (min - max) of rounds. Bytes per run: what the structured "
        "runs keep alive (object, strings, datetimes, the `metadata` dict), measured with "
        "tracemalloc over "
        f"{sizes['memory_pages'] * 20:,} runs decoded from bytes.",
        "",
        "| library | decode + structure from bytes | acp_async / this "
        "| structure from decoded dicts | acp_async / this | bytes per run |",
        "|---|---|---|---|---|---|",
        f"| decoded dict only | | | | | {fmt(mem['decoded dict'])} |",
    ]
    for name in conv["bytes"]:
        by, di = conv["bytes"][name], conv["dict"][name]
        lines.append(
            f"| {name} | {fmt_spread(by)} | {fmt_spread(_ratios(conv['bytes'][ours], by))} "
            f"| {fmt_spread(di)} | {fmt_spread(_ratios(conv['dict'][ours], di))} "
            f"| {fmt(mem[name])} |"
        )
    watch = results["watch"]
    lines += [
        "",
        "## Watch: cost per server as the fleet grows (5 runs per server, one changing "
        "per poll; CPU: median of 3 alternating repetitions)",
        "",
        "| servers | CPU per server and poll | bytes held per server |",
        "|---|---|---|",
    ]
    for size, row in watch.items():
        lines.append(
            f"| {size:,} | {row['cpu_us_per_server_poll']:.1f} us "
            f"| {fmt(row['bytes_per_server'])} |"
        )
    lines += ["", "## Targets", "", "| target | measured | |", "|---|---|---|"]
    lines += _targets(results)
    lines += ["", _NOTES]
    return "\n".join(lines)


def http_section(results: dict[str, Any], sizes: dict[str, Any], version: str) -> str:
    """(a), (b), (c) over HTTP and TLS on one more interpreter, with the (c)/(b) targets."""
    names = {
        "a": "a. aiohttp `read()` (transport limit)",
        "b": "b. aiohttp + `json.loads` (dicts)",
        "c": "c. **acp_async `list_many`** (typed runs)",
    }
    lines = [
        f"## Python {version}: (a), (b), (c) over HTTP and TLS ({sizes['requests']:,} GETs, "
        f"concurrency {sizes['concurrency']}, {sizes['reps']} repetitions)",
        "",
        f"The same scenarios as above, run by `python -m benchmarks --http-only` on Python "
        f"{platform.python_version()}.",
    ]
    targets = []
    for key, label in (("http", "HTTP"), ("https", "TLS")):
        if key not in results:
            continue
        part = results[key]
        lines += [
            "",
            f"| over {label} | requests/s | acp_async / this | client CPU per request "
            "| acp_async / this, by CPU | server CPU share |",
            "|---|---|---|---|---|---|",
            *_http_rows(part, names),
        ]
        value = _med(_ratios(part["rates"]["c"], part["rates"]["b"]))
        targets.append(f"| (c) / (b) >= 1.0 over {label} | {value:.3g} | {verdict(value >= 1.0)} |")
        value = _med(_ratios(part["client_cpu"]["b"], part["client_cpu"]["c"]))
        targets.append(f"| (c) / (b) by client CPU over {label} (reported) | {value:.3g} | |")
    return "\n".join([*lines, "", "| target | measured | |", "|---|---|---|", *targets])


def _http_rows(http: dict[str, Any], names: dict[str, str]) -> list[str]:
    rates: dict[str, list[float]] = http["rates"]
    client: dict[str, list[float]] = http.get("client_cpu", {})
    cpu: dict[str, list[float]] = http["server_cpu"]
    rows = []
    for key, values in rates.items():
        ratio = fmt_spread(_ratios(rates["c"], values)) if "c" in rates else "-"
        if client.get(key) and client.get("c"):
            used = f"{fmt_spread(client[key])} us"
            by_cpu = fmt_spread(_ratios(client[key], client["c"]))
        else:
            used = by_cpu = "n/a"
        share = f"{_med(cpu[key]):.0%}" if cpu.get(key) else "n/a"
        rows.append(
            f"| {names[key]} | {fmt_spread(values)} | {ratio} | {used} | {by_cpu} | {share} |"
        )
    return rows


def _wan(wan: dict[str, Any]) -> list[str]:
    rates = wan["rates"]
    delay_ms = wan["delay"] * 1000
    labels = {
        "c": f"acp_async `list_many(concurrency={wan['concurrency']})`, {wan['requests']:,} GETs",
        "e_pool": f"computer-agents, {wan['threads']} threads, {wan['requests']:,} GETs",
        "e_seq": f"computer-agents, sequential, {wan['sequential']:,} GETs",
    }
    ideal = {
        "c": wan["concurrency"] / wan["delay"],
        "e_pool": wan["threads"] / wan["delay"],
        "e_seq": 1 / wan["delay"],
    }
    lines = [
        "",
        f"## WAN: every answer {delay_ms:.0f} ms late ({len(rates['c'])} repetitions)",
        "",
        "Requests per second, median (min - max); the latency bound is concurrency / delay. "
        "Sequential calls are timed over fewer GETs (each takes a round trip).",
        "",
        "| client | requests/s | latency bound | acp_async / this |",
        "|---|---|---|---|",
    ]
    for key, values in rates.items():
        lines.append(
            f"| {labels[key]} | {fmt_spread(values)} | {fmt(ideal[key])} "
            f"| {fmt_spread(_ratios(rates['c'], values))} |"
        )
    return lines


def _cli(cli: dict[str, Any]) -> list[str]:
    seconds, cpu = cli["seconds"], cli["cpu"]
    return [
        "",
        f"## CLI: `acp-async runs poll` over {cli['servers']:,} servers, concurrency "
        f"{cli['concurrency']} ({len(seconds['uvloop'])} alternating repetitions)",
        "",
        "The whole command as a subprocess (start-up and the summary table included): wall "
        "time, and its own CPU time (user + system), which moves less with the machine's "
        "load. asyncio's loop is what runs when uvloop is not installed.",
        "",
        "| event loop | seconds | asyncio / uvloop | CPU seconds | asyncio / uvloop |",
        "|---|---|---|---|---|",
        f"| uvloop (the `speed` extra) | {fmt_spread(seconds['uvloop'])} "
        f"| {fmt_spread(_ratios(seconds['asyncio'], seconds['uvloop']))} "
        f"| {fmt_spread(cpu['uvloop'])} | {fmt_spread(_ratios(cpu['asyncio'], cpu['uvloop']))} |",
        f"| asyncio | {fmt_spread(seconds['asyncio'])} | 1 | {fmt_spread(cpu['asyncio'])} | 1 |",
    ]


_NOTES = """## How each scenario reads a page

- Every HTTP scenario gets a warm pool first (one untimed batch), then times the same
  GETs; the scenarios alternate within each repetition, in a rotating order.
- (a), (b): one `aiohttp.ClientSession`, 50 workers pulling ids from one iterator.
- (c): `ACPClient(...).runs.list_many(ids, limit=20, concurrency=50)`, orjson installed
  (the `speed` extra): typed, validated runs with `data` and `runs` merged by id.
- TLS: the load server serves https with a self-signed ECDSA P-256 certificate made by
  the `openssl` CLI at start-up (benchmarks only); (a), (b) and (c) use connectors
  with the same `ssl.SSLContext`. The official SDK takes no SSL context, so it is
  measured over plain HTTP only.
- WAN: the load server holds each answer 50 ms (`call_later`), so the figures are
  bound by latency, not CPU: they show what concurrency buys.
- CLI: `python -c "...; from acp_async.cli import main; main()" runs poll --servers-file -`
  as a subprocess; "asyncio" hides uvloop with `sys.modules["uvloop"] = None`.
- (d): `httpx.AsyncClient` + `Page.model_validate_json(response.content)`, pydantic v2
  models with camelCase aliases, `strict=True`, open enums as `Enum | str`; like an SDK
  generated from the spec, it validates both `data` and `runs`.
- (e): the official SDK as documented: `ComputerAgentsClient(api_key=..., base_url=...)`
  (it appends `/v1`) and `client.resources.list_runtime_agent_runs(server_id, limit=20)`,
  its method for this endpoint, returning dicts. In the thread pool each worker thread
  has its own client: one client shared by 50 threads fails here with httpcore's
  "Bad file descriptor".
- Converter: ours is `_converter.structure(_json.loads(body), AgentRunList)`, the path
  `list` takes (straight-line functions generated from the model fields); the
  hand-written constructor (benchmarks only) makes the same checks;
  msgspec keeps `status` and `mode` as `str` (it cannot express "enum member, else the
  str"); pydantic structures dicts in lax mode (strict mode refuses ISO strings there).
- Memory per run counts everything the structured run keeps alive: the object, its
  strings, datetimes and its `metadata` dict (ours keeps the decoded dict itself, no
  copy), against the decoded run dict with the same contents.
- Watch: the real `Watcher` over a stand-in for `client.runs` that structures a fresh
  page per poll, so the numbers are the watch's own cost (schedules, fan-out, diffing,
  state); HTTP is measured above.
"""


def _targets(results: dict[str, Any]) -> list[str]:
    rates = results["http"]["rates"]
    rows = []

    def row(label: str, value: float, ok: bool) -> None:
        rows.append(f"| {label} | {value:.3g} | {verdict(ok)} |")

    if "c" in rates and "b" in rates:
        value = _med(_ratios(rates["c"], rates["b"]))
        row("(c) / (b) >= 1.0 over HTTP", value, value >= 1.0)
    https = results.get("https", {}).get("rates", {})
    if "c" in https and "b" in https:
        value = _med(_ratios(https["c"], https["b"]))
        row("(c) / (b) >= 1.0 over TLS", value, value >= 1.0)
    for label, part in (("HTTP", results["http"]), ("TLS", results.get("https", {}))):
        client = part.get("client_cpu", {})
        if client.get("c") and client.get("b"):
            value = _med(_ratios(client["b"], client["c"]))
            rows.append(f"| (c) / (b) by client CPU over {label} (reported) | {value:.3g} | |")
    if "d" in rates:
        value = _med(_ratios(rates["c"], rates["d"]))
        row("(c) / (d) >= 5", value, value >= 5)
    if "e_seq" in rates:
        value = _med(_ratios(rates["c"], rates["e_seq"]))
        row("(c) / (e, sequential) >= 2", value, value >= 2)
    conv, mem = results["converter"]["bytes"], results["memory"]
    ours = "acp_async (generated)"
    if "pydantic v2" in conv:
        value = _med(_ratios(conv[ours], conv["pydantic v2"]))
        row("bytes -> runs: acp_async / pydantic `validate_json` >= 1.0", value, value >= 1.0)
    if "msgspec" in conv:
        value = _med(_ratios(conv["msgspec"], conv[ours]))
        row("bytes -> runs: msgspec / acp_async <= 2.5", value, value <= 2.5)
        value = mem[ours] / mem["msgspec"]
        row("memory per run: acp_async / msgspec <= 1.10", value, value <= 1.10)
    value = mem[ours] / mem["decoded dict"]
    row("memory per run: acp_async / decoded dict <= 0.75", value, value <= 0.75)
    wan = results.get("wan", {}).get("rates", {})
    for key, label in (("e_seq", "sequential"), ("e_pool", "threads")):
        if key in wan:
            value = _med(_ratios(wan["c"], wan[key]))
            rows.append(f"| WAN: (c) / official SDK, {label} (reported) | {value:.3g} | |")
    if "cli" in results:
        seconds, cpu = results["cli"]["seconds"], results["cli"]["cpu"]
        value = _med(_ratios(seconds["asyncio"], seconds["uvloop"]))
        rows.append(f"| CLI `runs poll`: asyncio / uvloop time (reported) | {value:.3g} | |")
        value = _med(_ratios(cpu["asyncio"], cpu["uvloop"]))
        rows.append(f"| CLI `runs poll`: asyncio / uvloop CPU (reported) | {value:.3g} | |")
    watch = results["watch"]
    for key, label in (("cpu_us_per_server_poll", "CPU"), ("bytes_per_server", "memory")):
        values = [row_[key] for row_ in watch.values()]
        value = max(values) / min(values)
        row(f"watch: {label} per server, largest / smallest fleet <= 1.2", value, value <= 1.2)
    return rows
