"""The send path, layer by layer: client CPU per request, from a bare ``session.get`` +
``read()`` up to ``list_many``, side by side in one run.

Each rung adds one layer of what ``client.runs.list`` does to the rung before it, using
the client's own pieces where they exist (its URL builder, its headers and socket
timeouts, its ``_Hop``, ``read_capped``, ``read_reply``, ``Transport.get``), so a layer's
cost is the difference between two rungs measured in the same repetition. Every rung
sends the same GETs over its own warm pool to the same load server (its own process,
pinned to its own core), from the same 50 workers, except the last, which is
``list_many`` itself. The rungs take turns in a rotating order within each repetition,
and a layer's figure is the median of its per-repetition differences: on a shared
machine separate runs differ by more than a layer costs.

Run as ``python -m benchmarks.send_path [--reps N] [--requests N] [--tls]``; with
``--package NAME --path DIR`` another copy of ``acp_async`` (say main's, renamed
``acp_old``) is measured beside this one, rung for rung, in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import ssl
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import aiohttp

from .http_bench import _ids
from .http_scenarios import PATH, TOKEN, _connector, _workers
from .server import LoadServer
from .stats import fmt_spread, write_section

LIMIT = 20
One = Callable[[str], Awaitable[Any]]


def _identity(value: Any) -> Any:
    return value


def _bytes(body: bytes) -> bytes:
    return body


class Stack:
    """One copy of the package, its modules and a client whose pieces the rungs borrow."""

    def __init__(self, package: str) -> None:
        self.name = package
        self.pkg: ModuleType = importlib.import_module(package)
        self.transport_mod = importlib.import_module(f"{package}._transport")
        self.response_mod = importlib.import_module(f"{package}._response")

    def client(self, base_url: str, session: aiohttp.ClientSession | None) -> Any:
        return self.pkg.ACPClient(TOKEN, base_url=base_url, max_connections=100, session=session)


def _request_kwargs(transport: Any) -> dict[str, Any]:
    """The keyword arguments the transport passes ``session.get``, and the socket timeouts
    among them (older copies kept those in a field of their own)."""
    kwargs = getattr(transport, "_request_options", None)
    if kwargs is not None:
        return dict(kwargs)
    return {
        "headers": transport.config.headers,
        "allow_redirects": False,
        "raise_for_status": False,
        "auto_decompress": False,
        "timeout": transport._socket_timeout,
    }


class Rungs:
    """The ladder for one stack: ``rung(index)`` is an ``async (server_id) -> Any``."""

    LABELS = (
        "bare `session.get(str)` + `read()`",
        "+ URL built from the id (checked, percent-encoded, yarl)",
        "+ request headers and options per call",
        "+ aiohttp socket timeouts",
        "+ attempt deadline (`asyncio.timeout`)",
        "+ retry loop and 429 cool-down check",
        "+ observer hooks (no observer attached)",
        "+ capped body read",
        "+ status mapping and `Link` parsing",
        "= `Transport.get` itself (no JSON)",
        "+ JSON decoding and structuring (`runs.list`)",
        "+ `list_many` fan-out instead of 50 workers",
    )

    def __init__(self, stack: Stack, base_url: str, context: ssl.SSLContext | None) -> None:
        self.stack = stack
        self._base = base_url
        self._context = context
        self.sessions: list[aiohttp.ClientSession] = []
        self.clients: list[Any] = []

    async def open(self) -> None:
        # Every rung has its own pool; each client borrows a session made the same way.
        self._bare = self._session(headers={"Authorization": f"Bearer {TOKEN}"})
        self.client = self._client()
        self.transport = self.client._transport
        self.transport.session()

    def _session(self, **kwargs: Any) -> aiohttp.ClientSession:
        session = aiohttp.ClientSession(connector=_connector(self._context), **kwargs)
        self.sessions.append(session)
        return session

    def _client(self) -> Any:
        session = self._session() if self._context is not None else None
        client = self.stack.client(self._base, session)
        self.clients.append(client)
        return client

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        for session in self.sessions:
            await session.close()

    def rung(self, index: int) -> One:
        stack, transport, runs = self.stack, self.transport, self.client.runs
        response_mod, transport_mod = stack.response_mod, stack.transport_mod
        bare = self._bare
        base = self._base
        session = transport.session()
        timed = _request_kwargs(transport)
        kwargs = {k: v for k, v in timed.items() if k != "timeout"}
        observed = getattr(transport, "_observed", True)
        timeout = transport.config.timeout
        limit = transport.config.max_response_bytes
        origin = transport.config.base_url
        secret = TOKEN.encode()
        observer = transport.observer
        url_of = runs._url

        async def r0(sid: str) -> Any:
            async with bare.get(base + PATH.format(sid)) as response:
                return await response.read()

        async def r1(sid: str) -> Any:
            async with bare.get(url_of(sid, LIMIT)) as response:
                return await response.read()

        async def r2(sid: str) -> Any:
            async with session.get(url_of(sid, LIMIT), **kwargs) as response:
                return await response.read()

        async def r3(sid: str) -> Any:
            async with session.get(url_of(sid, LIMIT), **timed) as response:
                return await response.read()

        async def r4(sid: str) -> Any:
            async with asyncio.timeout(timeout):
                async with session.get(url_of(sid, LIMIT), **timed) as response:
                    return await response.read()

        def with_retries(attempt: Callable[[Any, float], Awaitable[Any]]) -> One:
            policy = transport.retry
            left = transport._cool_down_left
            cool_down = transport._cool_down
            gated = hasattr(type(cool_down), "started")  # newer copies skip the clock

            async def send(sid: str) -> Any:
                url = url_of(sid, LIMIT)
                loop = asyncio.get_running_loop()
                deadline = loop.time() + policy.budget(timeout)
                while True:
                    try:
                        while (not gated or cool_down.started) and (
                            wait := left(deadline - loop.time())
                        ) > 0:
                            await asyncio.sleep(wait)
                        return await attempt(url, deadline - loop.time())
                    except aiohttp.ClientError:
                        raise

            return send

        async def a5(url: Any, left: float) -> Any:
            async with asyncio.timeout(max(0.001, min(timeout, left))):
                async with session.get(url, **timed) as response:
                    return await response.read()

        def hooked(read: Callable[[Any], Awaitable[Any]]) -> Callable[[Any, float], Any]:
            async def attempt(url: Any, left: float) -> Any:
                hop = transport_mod._Hop(observer) if observed else None
                try:
                    async with asyncio.timeout(max(0.001, min(timeout, left))):
                        if hop is not None:
                            hop.start()
                        async with session.get(url, **timed) as response:
                            if hop is not None:
                                hop.outcome = transport_mod._status_outcome(response.status)
                            value = await read(response)
                            if hop is not None:
                                hop.end()
                            return value
                finally:
                    if hop is not None:
                        hop.end()

            return attempt

        async def read_all(response: Any) -> Any:
            return await response.read()

        async def read_cap(response: Any) -> Any:
            return await response_mod.read_capped(response, limit)

        # Older copies took the parse and peek functions in one object.
        reading_class = getattr(response_mod, "Reading", None)
        how = (_identity, _bytes) if reading_class is None else (reading_class(_identity, _bytes),)

        async def read_full(response: Any) -> Any:
            if response_mod.redirect_target(response, origin) is not None:
                raise AssertionError("no redirects here")
            return await response_mod.read_reply(
                response, *how, origin=origin, limit=limit, secret=secret
            )

        async def r9(sid: str) -> Any:
            return await transport.get(url_of(sid, LIMIT), _identity, peek=_bytes)

        async def r10(sid: str) -> Any:
            return await runs.list(sid, limit=LIMIT)

        rungs: list[One] = [
            r0,
            r1,
            r2,
            r3,
            r4,
            with_retries(a5),
            with_retries(hooked(read_all)),
            with_retries(hooked(read_cap)),
            with_retries(hooked(read_full)),
            r9,
            r10,
        ]
        return rungs[index]

    async def run(self, index: int, ids: Sequence[str], concurrency: int) -> int:
        if index == len(self.LABELS) - 1:
            done = 0
            async for outcome in self.client.runs.list_many(
                ids, limit=LIMIT, concurrency=concurrency
            ):
                if outcome.error is not None:
                    raise outcome.error
                done += 1
            return done
        return await _workers(ids, concurrency, self.rung(index))


async def _raw_json(session: aiohttp.ClientSession, base: str, sid: str) -> Any:
    async with session.get(base + PATH.format(sid)) as response:
        response.raise_for_status()
        return json.loads(await response.read())


def measure(
    *,
    stacks: Sequence[str] = ("acp_async",),
    requests: int = 2000,
    servers: int = 1000,
    concurrency: int = 50,
    reps: int = 9,
    tls: bool = False,
) -> dict[str, Any]:
    """Client CPU microseconds per request, one value per repetition, per stack and rung;
    ``"b"`` is aiohttp + ``json.loads`` (the HTTP scenarios' (b)) for reference."""
    ids = _ids(requests, servers)
    warm = _ids(concurrency, servers)
    loaded = [Stack(name) for name in stacks]
    cpu: dict[str, dict[int, list[float]]] = {s.name: {} for s in loaded}
    cpu["b"] = {0: []}
    with LoadServer(tls=tls) as server, asyncio.Runner() as runner:
        ladders = [Rungs(stack, server.base_url, server.ssl_context) for stack in loaded]
        for ladder in ladders:
            runner.run(ladder.open())

        async def make_raw() -> aiohttp.ClientSession:
            return aiohttp.ClientSession(
                connector=_connector(server.ssl_context),
                headers={"Authorization": f"Bearer {TOKEN}"},
            )

        raw = runner.run(make_raw())

        async def b_run(batch: Sequence[str]) -> int:
            return await _workers(
                batch, concurrency, lambda sid: _raw_json(raw, server.base_url, sid)
            )

        jobs: list[tuple[str, int, Callable[[Sequence[str]], Awaitable[int]]]] = [("b", 0, b_run)]
        for ladder in ladders:
            for index in range(len(Rungs.LABELS)):
                jobs.append(
                    (
                        ladder.stack.name,
                        index,
                        lambda batch, ladder=ladder, index=index: ladder.run(
                            index, batch, concurrency
                        ),
                    )
                )
        for _, _, job in jobs:
            runner.run(job(warm))  # warm pools, generated code and caches
        for rep in range(reps):
            shift = rep % len(jobs)
            for name, index, job in jobs[shift:] + jobs[:shift]:
                started = time.process_time()
                done = runner.run(job(ids))
                spent = time.process_time() - started
                assert done == len(ids), (name, index, done)
                cpu[name].setdefault(index, []).append(spent / len(ids) * 1e6)
        runner.run(raw.close())
        for ladder in ladders:
            runner.run(ladder.close())
    return {"cpu": cpu, "stacks": list(stacks), "reps": reps, "requests": requests, "tls": tls}


def _diffs(upper: list[float], lower: list[float]) -> list[float]:
    return [a - b for a, b in zip(upper, lower, strict=True)]


def table(results: dict[str, Any]) -> list[str]:
    """The Markdown table: per rung, CPU per request and what its layer adds (medians of
    per-repetition values, min - max), one column pair per stack."""
    cpu, stacks = results["cpu"], results["stacks"]
    head = "| layer |" + "".join(f" {s}: us per request | {s}: layer adds |" for s in stacks)
    lines = [head, "|---|" + "---|---|" * len(stacks)]
    for index, label in enumerate(Rungs.LABELS):
        row = f"| {label} |"
        for stack in stacks:
            values = cpu[stack][index]
            if index == 0:
                added = "-"
            elif index == len(Rungs.LABELS) - 3:  # Transport.get: against the bare rung
                added = f"{fmt_spread(_diffs(values, cpu[stack][0]))} over bare"
            else:
                added = fmt_spread(_diffs(values, cpu[stack][index - 1]))
            row += f" {fmt_spread(values)} | {added} |"
        lines.append(row)
    b = cpu["b"][0]
    row = "| (b) aiohttp + `json.loads`, for reference |"
    for stack in stacks:
        ratio = [x / y for x, y in zip(b, cpu[stack][len(Rungs.LABELS) - 1], strict=True)]
        row += f" {fmt_spread(b)} | (c)/(b) CPU ratio {fmt_spread(ratio)} |"
    lines.append(row)
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.send_path")
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--package", help="another copy of acp_async, measured beside it")
    parser.add_argument("--path", help="where that copy is importable from")
    parser.add_argument("--json", help="write the raw figures to this file")
    parser.add_argument(
        "--write", type=Path, help="put the table in this Markdown file (its own section)"
    )
    args = parser.parse_args()
    stacks = ["acp_async"]
    if args.package:
        if args.path:
            sys.path.insert(0, args.path)
        stacks.insert(0, args.package)
    results = measure(stacks=stacks, requests=args.requests, reps=args.reps, tls=args.tls)
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out)
    section = markdown(results)
    if args.write:
        write_section(args.write, section, "send_path")
    print(section)


def markdown(results: dict[str, Any]) -> str:
    """The section of ``RESULTS.md``: how it was measured, then the table."""
    stacks = " and ".join(f"`{s}`" for s in results["stacks"])
    return "\n".join(
        [
            f"## The send path, layer by layer{' over TLS' if results['tls'] else ''}: "
            f"client CPU per request ({results['requests']:,} GETs a rung, "
            f"{results['reps']} repetitions, Python {sys.version.split()[0]})",
            "",
            "Each rung adds one layer of `client.runs.list` to the rung above it, using the "
            "client's own pieces (its URL builder, headers, socket timeouts, `_Hop`, "
            "`read_capped`, `read_reply`, `Transport.get`); all rungs send the same GETs to the "
            "same load server from 50 workers (the last rung is `list_many` itself) and take "
            "turns in a rotating order. Microseconds of this process's CPU per request, "
            "median (min - max); what a layer adds is the median of its per-repetition "
            f"differences with the rung above. Stacks: {stacks}. On this shared machine a "
            "rung moves by tens of microseconds between repetitions, so a layer under ~5 us "
            "is not resolved.",
            "",
            *table(results),
        ]
    )


if __name__ == "__main__":
    main()
