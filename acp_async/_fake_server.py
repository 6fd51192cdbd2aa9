"""A real loopback ACP server for tests, demos and the CLI.

`FakeACPServer` serves ``GET {prefix}/v1/servers/{serverId}/runtime/agent/runs``
from seeded, deterministic data, checks the bearer token, honours ``limit``,
lets runs progress through their statuses, and injects faults on demand. It is
an ``aiohttp.web`` server on 127.0.0.1, so the client under test goes through
its real connection, timeout and parsing code instead of a mock.

Faults, queued with `FakeACPServer.fail` and consumed in order::

    status     respond `status` with the JSON error body (or `body`)
    html       respond `status` with an HTML page, like a proxy's 502
    malformed  200 with a body that is not valid JSON
    truncated  200 whose body stops short of its Content-Length, then close
    drop       close the connection without any response
    stall      200, part of the body, then wait `delay` (30 s) before the rest
    latency    wait `delay` (1 s), then answer normally
    redirect   302 (or `status` if it is a 3xx) to the `Location` in `headers`
"""

from __future__ import annotations

import asyncio
import copy
import http
import json
import random
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Final, Literal, Self
from urllib.parse import quote

import attrs
from aiohttp import web

__all__ = ("FakeACPServer", "RecordedRequest")

Shape = Literal["data", "runs", "both"]

_RUNS_PATH: Final = "/v1/servers/{server_id}/runtime/agent/runs"
_DEFAULT_LIMIT: Final = 20
_MAX_LIMIT: Final = 1000
_FAULT_KINDS: Final = frozenset(
    {"status", "html", "malformed", "truncated", "drop", "stall", "latency", "redirect"}
)
# Kinds whose `delay` has a meaning of its own when the caller gives none.
_DEFAULT_DELAYS: Final = {"stall": 30.0, "latency": 1.0}
# How long aiohttp may wait for handlers at close(); stalls are woken before that.
_SHUTDOWN_TIMEOUT: Final = 0.25
_TERMINAL: Final = frozenset({"completed", "failed", "cancelled"})
# Seeded timestamps count from a fixed instant so the same seed gives the same JSON.
_EPOCH: Final = datetime(2025, 6, 2, 9, 0, tzinfo=UTC)
_FAIL_SHARE: Final = 0.2

_STATUS_WEIGHTS: Final = {
    "queued": 15,
    "running": 20,
    "completed": 45,
    "failed": 12,
    "cancelled": 8,
}
_TITLES: Final = (
    "Summarize weekly sales report",
    "Triage new GitHub issues",
    "Refactor the billing module",
    "Draft release notes for v2.4",
    "Compare competitor pricing pages",
    "Update dependency lockfile",
    "Translate onboarding docs to German",
    "Reconcile March invoices",
    "Write tests for the auth middleware",
    "Clean up stale feature flags",
)
_ERRORS: Final = (
    "Tool call timed out after 120s",
    "Sandbox exited with code 137 (out of memory)",
    "Upstream model provider returned 529 (overloaded)",
    "Permission denied writing to /workspace/output",
)
_SOURCES: Final = ("api", "cli", "schedule", "webhook")
_TEAMS: Final = ("growth", "platform", "finance", "support")
_PRIORITIES: Final = ("low", "normal", "high")
_THREAD_STATUSES: Final = ("active", "idle", "archived")
_PROTOCOLS: Final = ("acp/1.0", "acp/1.1")
_MALFORMED_BODY: Final = b'{"object": "list", "data": [{"id": "run-'
_HTML_PAGE: Final = (
    "<html>\r\n<head><title>{code} {phrase}</title></head>\r\n<body>\r\n"
    "<center><h1>{code} {phrase}</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)
# What `fault_rate` picks from: the transient failures a client should retry.
_RANDOM_FAULTS: Final = (
    ("status", 500),
    ("status", 502),
    ("status", 503),
    ("status", 504),
    ("status", 429),
    ("drop", 0),
    ("truncated", 0),
)


@attrs.frozen
class RecordedRequest:
    """One request the fake received, for assertions in tests.

    It is listed on arrival with ``finished`` and ``status`` None, and replaced
    by its final form when the response is done or the connection is gone;
    ``status`` stays None when no response was sent (a drop, or a client that
    went away first).
    """

    server_id: str | None
    path: str  # the raw, still percent-encoded path, without the query
    query: dict[str, str]
    headers: dict[str, str]
    started: float
    finished: float | None
    status: int | None
    fault: str | None
    method: str = "GET"
    request_id: str = ""


@attrs.define
class _Fault:
    kind: str
    status: int
    remaining: int
    server_id: str | None
    retry_after: str | None
    delay: float
    body: bytes | None
    headers: dict[str, str]

    def matches(self, server_id: str) -> bool:
        return self.server_id is None or self.server_id == server_id


@attrs.define
class _Server:
    id: str
    runtime_id: str
    runs: list[dict[str, Any]]  # newest first
    last_created: datetime
    progressed_at: float


@attrs.frozen
class _Answer:
    """A response before it is sent, so faults can send it whole, cut or late."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: Mapping[str, str] = attrs.field(factory=dict)


@attrs.define
class _Outcome:
    """What happened to one request, filled in as the handler goes."""

    status: int | None = None
    fault: str | None = None


class FakeACPServer:
    """A local ACP API with seeded servers and runs, and faults on demand.

    Use it as ``async with FakeACPServer() as fake:`` and point a client at
    ``fake.base_url`` with ``fake.token``. Everything is deterministic for a
    given ``seed`` and sequence of calls; ``clock`` drives ``progress_every``
    and the timings in `requests`, so tests can inject a fake one.
    """

    def __init__(
        self,
        *,
        token: str = "test-token",
        servers: int | Iterable[str] = 3,
        runs_per_server: int = 5,
        seed: int = 0,
        shape: Shape = "data",
        page_size: int | None = None,
        progress_every: float | None = None,
        fault_rate: float = 0.0,
        latency: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        prefix: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _check_options(
            shape=shape,
            runs_per_server=runs_per_server,
            page_size=page_size,
            progress_every=progress_every,
            fault_rate=fault_rate,
            latency=latency,
        )
        self._token = token
        self._seed = seed
        self._shape: Shape = shape
        self._page_size = page_size
        self._progress_every = progress_every
        self._fault_rate = fault_rate
        self._latency = latency
        self._host = host
        self._port = port
        self._prefix = _normalize_prefix(prefix)
        self._clock = clock
        self._rng = random.Random(seed)
        # A separate stream, so drawing faults never changes the seeded data.
        self._fault_rng = random.Random(f"{seed}:faults")
        self._servers: dict[str, _Server] = {}
        self._run_ids: set[str] = set()
        self._faults: list[_Fault] = []
        self._requests: list[RecordedRequest] = []
        self._request_counter = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self._closed = False
        for server_id in _seed_ids(servers):
            self.add_server(server_id)
            self._seed_runs(self._servers[server_id], runs_per_server)

    def __repr__(self) -> str:
        where = self.base_url if self._runner is not None else "not started"
        return f"<FakeACPServer {where} servers={len(self._servers)}>"

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Bind the socket and start serving; the port is known afterwards."""
        if self._closed:
            raise RuntimeError("this FakeACPServer is closed; create a new one")
        if self._runner is not None:
            raise RuntimeError("this FakeACPServer is already started")
        app = web.Application()
        app.router.add_route("*", self._prefix + _RUNS_PATH, self._handle_runs)
        app.router.add_route("*", "/{tail:.*}", self._handle_other)
        # handler_cancellation: a client that gives up ends its handler, so
        # `in_flight` shows what is really still open.
        runner = web.AppRunner(
            app,
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=_SHUTDOWN_TIMEOUT,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def close(self) -> None:
        """Stop serving; stalled and delayed handlers are woken and dropped."""
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- what a client needs -------------------------------------------------

    @property
    def base_url(self) -> str:
        """The URL to give a client: scheme, host, port and prefix, no ``/v1``."""
        if self._runner is None:
            raise RuntimeError("start the FakeACPServer before asking for its URL")
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"http://{host}:{self._port}{self._prefix}"

    @property
    def token(self) -> str:
        return self._token

    @property
    def server_ids(self) -> list[str]:
        return list(self._servers)

    # -- scripting the data --------------------------------------------------

    def add_server(self, server_id: str) -> None:
        """Add a server with no runs; fill it with `add_run`."""
        if not isinstance(server_id, str):
            raise TypeError(f"server_id must be a str, not {type(server_id).__name__}")
        if not server_id:
            raise ValueError("server_id must be a non-empty str")
        if server_id in self._servers:
            raise ValueError(f"server {server_id!r} already exists")
        self._servers[server_id] = _Server(
            id=server_id,
            runtime_id=f"rt-{random.Random(f'{self._seed}:{server_id}').getrandbits(48):012x}",
            runs=[],
            last_created=_EPOCH,
            progressed_at=self._clock(),
        )

    def add_run(self, server_id: str, **fields: Any) -> dict[str, Any]:
        """Add the newest run (status "queued" unless given) and return a copy.

        ``fields`` use the API's camelCase names and override the generated
        values; unknown names are stored too, which lets tests check that a
        client ignores fields it does not know.
        """
        server = self._server(server_id)
        run = self._new_run(server, str(fields.get("status", "queued")))
        run.update(fields)
        self._settle(run, set(fields))
        server.runs.insert(0, run)
        self._run_ids.add(str(run.get("id")))
        return copy.deepcopy(run)

    def runs(self, server_id: str) -> list[dict[str, Any]]:
        """A deep copy of the server's runs, newest first."""
        return copy.deepcopy(self._server(server_id).runs)

    def set_run(self, server_id: str, run_id: str, **fields: Any) -> None:
        """Change fields of a stored run (camelCase names).

        A new terminal ``status`` also gets ``completedAt`` (and ``error`` for
        "failed") unless given; a non-terminal one loses them.
        """
        run = self._find_run(self._server(server_id), run_id)
        run.update(fields)
        self._settle(run, set(fields))

    def advance(self, server_id: str | None = None, steps: int = 1) -> None:
        """Move every non-terminal run ``steps`` status steps forward.

        queued -> running -> completed, except that a deterministic ~1 in 5
        (from the seed and the run id) ends "failed". Runs with a status the
        fake does not know stay as they are.
        """
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError("steps must be an int >= 0")
        targets = self._servers.values() if server_id is None else [self._server(server_id)]
        for server in targets:
            self._advance_server(server, steps)

    # -- scripting faults ----------------------------------------------------

    def fail(
        self,
        kind: str = "status",
        *,
        status: int = 503,
        times: int = 1,
        server_id: str | None = None,
        retry_after: str | None = None,
        delay: float | None = None,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Queue a fault for the next ``times`` matching requests.

        ``server_id=None`` matches a request for any server. ``delay`` is
        waited before the response for every kind except "stall", where it is
        the pause in the middle of the body; it defaults to 30 s for "stall",
        1 s for "latency" and 0 otherwise.

        aiohttp's client resends an idempotent request once, silently, when
        the connection closes before any response; so one client call sees a
        "drop" only with ``times=2``.
        """
        if kind not in _FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; use one of {sorted(_FAULT_KINDS)}")
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError("times must be an int >= 1")
        if not 100 <= status <= 599:
            raise ValueError("status must be an HTTP status code (100..599)")
        if delay is not None and delay < 0:
            raise ValueError("delay must be >= 0")
        extra = dict(headers or {})
        if kind == "redirect" and not any(name.lower() == "location" for name in extra):
            raise ValueError('a "redirect" fault needs headers={"Location": ...}')
        self._faults.append(
            _Fault(
                kind=kind,
                status=status,
                remaining=times,
                server_id=server_id,
                retry_after=retry_after,
                delay=_DEFAULT_DELAYS.get(kind, 0.0) if delay is None else delay,
                body=body,
                headers=extra,
            )
        )

    # -- observing -----------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in arrival order (a copy)."""
        return list(self._requests)

    @property
    def in_flight(self) -> int:
        """Requests being handled right now."""
        return self._in_flight

    @property
    def max_in_flight(self) -> int:
        """The most requests handled at once since start or `reset_stats`."""
        return self._max_in_flight

    def reset_stats(self) -> None:
        """Forget recorded requests and restart the peak from the current load."""
        self._requests.clear()
        self._max_in_flight = self._in_flight

    # -- seeded data -----------------------------------------------------------

    def _server(self, server_id: str) -> _Server:
        try:
            return self._servers[server_id]
        except KeyError:
            raise KeyError(f"no server {server_id!r} on this FakeACPServer") from None

    @staticmethod
    def _find_run(server: _Server, run_id: str) -> dict[str, Any]:
        for run in server.runs:
            if run.get("id") == run_id:
                return run
        raise KeyError(f"no run {run_id!r} on server {server.id!r}")

    def _seed_runs(self, server: _Server, count: int) -> None:
        statuses, weights = zip(*_STATUS_WEIGHTS.items(), strict=True)
        for _ in range(count):
            status = self._rng.choices(statuses, weights)[0]
            run = self._new_run(server, status)
            self._settle(run, {"status"})
            server.runs.insert(0, run)
            self._run_ids.add(run["id"])

    def _new_run(self, server: _Server, status: str) -> dict[str, Any]:
        """A realistic run, created a little after the server's newest one."""
        rng = self._rng
        server.last_created += timedelta(milliseconds=rng.randint(5_000, 900_000))
        title = rng.choice(_TITLES)
        thread_title = rng.choice(_TITLES)
        return {
            "id": self._new_run_id(),
            "serverId": server.id,
            "threadId": f"thr-{rng.getrandbits(48):012x}",
            "title": title,
            "input": f"Please {title[0].lower()}{title[1:]}.",
            "output": "",
            "mode": rng.choice(("sync", "async")),
            "status": status,
            "metadata": {
                "source": rng.choice(_SOURCES),
                "attempt": rng.randint(1, 3),
                "labels": {"team": rng.choice(_TEAMS), "priority": rng.choice(_PRIORITIES)},
            },
            "createdAt": _iso(server.last_created),
            "sessionProtocol": rng.choice(_PROTOCOLS),
            "threadBacked": rng.random() < 0.7,
            "threadStatus": rng.choice(_THREAD_STATUSES),
            "threadTitle": thread_title,
        }

    def _new_run_id(self) -> str:
        while True:
            run_id = f"run-{self._rng.getrandbits(48):012x}"
            if run_id not in self._run_ids:
                return run_id

    def _outcome_rng(self, run: dict[str, Any]) -> random.Random:
        """Per-run randomness, so a run's fate does not depend on call order."""
        return random.Random(f"{self._seed}:{run.get('id')}")

    def _settle(self, run: dict[str, Any], given: set[str]) -> None:
        """Make the fields that follow from ``status`` agree with it.

        Only when ``status`` was just set, and never over a field the caller
        gave explicitly.
        """
        if "status" not in given:
            return
        status = run.get("status")
        rng = self._outcome_rng(run)
        took = timedelta(milliseconds=rng.randint(2_000, 600_000))
        error = rng.choice(_ERRORS)
        if status in _TERMINAL:
            if "completedAt" not in given and "completedAt" not in run:
                run["completedAt"] = _iso(_parse_iso(run.get("createdAt"), _EPOCH) + took)
            if status == "completed" and "output" not in given and not run.get("output"):
                run["output"] = f"Done: {run.get('title') or 'the task'}."
        elif "completedAt" not in given:
            run.pop("completedAt", None)
        if status == "failed":
            if "error" not in given and "error" not in run:
                run["error"] = error
        elif "error" not in given:
            run.pop("error", None)

    def _advance_server(self, server: _Server, steps: int) -> None:
        # Two steps take any known status to a terminal one; more change nothing.
        for _ in range(min(steps, 2)):
            for run in server.runs:
                self._step(run)

    def _step(self, run: dict[str, Any]) -> None:
        status = run.get("status")
        if status == "queued":
            run["status"] = "running"
        elif status == "running":
            fails = self._outcome_rng(run).random() < _FAIL_SHARE
            run["status"] = "failed" if fails else "completed"
            self._settle(run, {"status"})

    def _progress(self, server: _Server) -> None:
        """Advance the server's runs by the whole periods elapsed on `clock`."""
        if self._progress_every is None:
            return
        periods = int((self._clock() - server.progressed_at) // self._progress_every)
        if periods > 0:
            self._advance_server(server, periods)
            server.progressed_at += periods * self._progress_every

    # -- serving -------------------------------------------------------------

    async def _handle_runs(self, request: web.Request) -> web.StreamResponse:
        # aiohttp matches on the path with only %2F and %25 still encoded and
        # decodes the segment once, so "a%2Fb" arrives here as "a/b".
        return await self._handle(request, request.match_info["server_id"])

    async def _handle_other(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, None)

    async def _handle(self, request: web.Request, server_id: str | None) -> web.StreamResponse:
        """Count and record the request around the actual answer."""
        self._request_counter += 1
        request_id = f"req-{self._request_counter:06d}"
        record = RecordedRequest(
            server_id=server_id,
            path=request.rel_url.raw_path,
            query=dict(request.query),
            headers={str(name): value for name, value in request.headers.items()},
            started=self._clock(),
            finished=None,
            status=None,
            fault=None,
            method=request.method,
            request_id=request_id,
        )
        self._requests.append(record)
        self._in_flight += 1
        self._max_in_flight = max(self._max_in_flight, self._in_flight)
        outcome = _Outcome()
        try:
            return await self._respond(request, server_id, request_id, outcome)
        finally:
            self._in_flight -= 1
            final = attrs.evolve(
                record, finished=self._clock(), status=outcome.status, fault=outcome.fault
            )
            self._replace_record(record, final)

    def _replace_record(self, old: RecordedRequest, new: RecordedRequest) -> None:
        # Search from the end: the request is usually among the latest ones.
        # Not found means `reset_stats` ran meanwhile, and it stays forgotten.
        for index in range(len(self._requests) - 1, -1, -1):
            if self._requests[index] is old:
                self._requests[index] = new
                return

    async def _respond(
        self, request: web.Request, server_id: str | None, request_id: str, outcome: _Outcome
    ) -> web.StreamResponse:
        fault = None
        if server_id is not None:
            if server_id in self._servers:
                self._progress(self._servers[server_id])
            fault = self._take_fault(server_id)
        outcome.fault = fault.kind if fault else None
        delay = self._latency
        if fault is not None and fault.kind != "stall":
            delay += fault.delay
        if not await self._pause(delay):
            return _drop(request)
        if fault is None or fault.kind == "latency":
            return self._reply(self._answer(request, server_id), request_id, outcome)
        if fault.kind == "drop":
            return _drop(request)
        if fault.kind in {"truncated", "stall"}:
            answer = self._answer(request, server_id)
            return await self._send_slowly(request, answer, request_id, outcome, fault)
        return self._reply(_fault_answer(fault), request_id, outcome)

    def _take_fault(self, server_id: str) -> _Fault | None:
        """The first queued fault for this server, else maybe a random one."""
        for index, fault in enumerate(self._faults):
            if fault.matches(server_id):
                fault.remaining -= 1
                if fault.remaining == 0:
                    del self._faults[index]
                return fault
        if self._fault_rate and self._fault_rng.random() < self._fault_rate:
            kind, status = self._fault_rng.choice(_RANDOM_FAULTS)
            return _Fault(
                kind=kind,
                status=status or 200,
                remaining=1,
                server_id=None,
                retry_after="0" if status == 429 else None,
                delay=0.0,
                body=None,
                headers={},
            )
        return None

    async def _pause(self, seconds: float) -> bool:
        """Wait, but wake at once when the server closes; False means closing."""
        if seconds > 0:
            try:
                async with asyncio.timeout(seconds):
                    await self._closing.wait()
            except TimeoutError:
                pass
        return not self._closing.is_set()

    def _answer(self, request: web.Request, server_id: str | None) -> _Answer:
        """What the real API would answer, errors included."""
        if server_id is None:
            return _error(404, "not_found", "No route matches this path", "route_not_found")
        if request.method not in {"GET", "HEAD"}:
            return attrs.evolve(
                _error(405, "method_not_allowed", "Use GET", "method_not_allowed"),
                headers={"Allow": "GET"},
            )
        if not self._authorized(request):
            return _error(401, "unauthorized", "Missing or invalid API key", "invalid_api_key")
        server = self._servers.get(server_id)
        if server is None:
            return _error(404, "not_found", f"Server {server_id!r} not found", "server_not_found")
        return self._list_runs(request, server)

    def _list_runs(self, request: web.Request, server: _Server) -> _Answer:
        limit = _int_param(request.query.get("limit"), default=_DEFAULT_LIMIT, low=1)
        if limit is None or limit > _MAX_LIMIT:
            message = f"limit must be an integer between 1 and {_MAX_LIMIT}"
            return _error(400, "invalid_request", message, "invalid_limit")
        offset = _int_param(request.query.get("cursor"), default=0, low=0)
        if offset is None:
            return _error(400, "invalid_request", "cursor is not valid", "invalid_cursor")
        return self._page(server, limit, offset)

    def _authorized(self, request: web.Request) -> bool:
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and credentials == self._token

    def _page(self, server: _Server, limit: int, offset: int) -> _Answer:
        size = limit if self._page_size is None else min(limit, self._page_size)
        items = server.runs[offset : offset + size]
        payload: dict[str, Any] = {
            "serverId": server.id,
            "agentRuntimeId": server.runtime_id,
            "object": "list",
        }
        if self._shape in {"data", "both"}:
            payload["data"] = items
        if self._shape in {"runs", "both"}:
            payload["runs"] = items
        headers = {}
        following = offset + size
        if self._page_size is not None and following < len(server.runs):
            path = self._prefix + _RUNS_PATH.format(server_id=quote(server.id, safe=""))
            headers["Link"] = f'<{path}?limit={limit}&cursor={following}>; rel="next"'
        return _Answer(200, _dump(payload), headers=headers)

    def _reply(self, answer: _Answer, request_id: str, outcome: _Outcome) -> web.Response:
        outcome.status = answer.status
        return web.Response(
            status=answer.status, body=answer.body, headers=_headers(answer, request_id)
        )

    async def _send_slowly(
        self,
        request: web.Request,
        answer: _Answer,
        request_id: str,
        outcome: _Outcome,
        fault: _Fault,
    ) -> web.StreamResponse:
        """Send the headers and half the body, then cut ("truncated") or wait ("stall").

        The Content-Length announces the whole body, so a client that gets
        less sees an incomplete payload rather than a short valid one.
        """
        response = web.StreamResponse(status=answer.status, headers=_headers(answer, request_id))
        response.content_length = len(answer.body)
        half = len(answer.body) // 2
        await response.prepare(request)
        outcome.status = answer.status
        try:
            await response.write(answer.body[:half])
            if fault.kind == "stall" and await self._pause(fault.delay):
                await response.write(answer.body[half:])
                return response
        except ConnectionError:
            pass  # the client went away; there is nothing left to cut
        _drop(request)
        return response


def _drop(request: web.Request) -> web.Response:
    """Close the connection; bytes already written are flushed first.

    The returned response is never sent: aiohttp's attempt to write it meets
    the closed transport, which it treats as a client disconnect (3.13, 3.14).
    """
    transport = request.transport
    if transport is not None:
        transport.close()
    return web.Response()


def _fault_answer(fault: _Fault) -> _Answer:
    """The response a "status", "html", "malformed" or "redirect" fault sends."""
    headers = dict(fault.headers)
    if fault.kind == "malformed":
        return _Answer(200, fault.body or _MALFORMED_BODY, headers=headers)
    if fault.kind == "redirect":
        status = fault.status if 300 <= fault.status < 400 else 302
        return _Answer(status, fault.body or b"", content_type="text/plain", headers=headers)
    if fault.retry_after is not None:
        headers = {"Retry-After": fault.retry_after, **headers}
    phrase = _phrase(fault.status)
    if fault.kind == "html":
        page = _HTML_PAGE.format(code=fault.status, phrase=phrase).encode()
        return _Answer(fault.status, fault.body or page, "text/html; charset=utf-8", headers)
    kind = phrase.lower().replace(" ", "_").replace("-", "_")
    answer = _error(fault.status, kind, f"Injected {fault.status} {phrase}", f"fake_{kind}")
    return attrs.evolve(answer, body=fault.body or answer.body, headers=headers)


def _error(status: int, error: str, message: str, code: str) -> _Answer:
    """An error in the API's JSON form."""
    return _Answer(status, _dump({"error": error, "message": message, "code": code}))


def _headers(answer: _Answer, request_id: str) -> dict[str, str]:
    return {"Content-Type": answer.content_type, "X-Request-Id": request_id, **answer.headers}


def _dump(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _int_param(raw: str | None, *, default: int, low: int) -> int | None:
    """A strict decimal query parameter; None when it is not one (or below ``low``)."""
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdecimal() or int(raw) < low:
        return None
    return int(raw)


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_iso(value: object, fallback: datetime) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return fallback
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return fallback


def _normalize_prefix(prefix: str) -> str:
    stripped = prefix.strip("/")
    return f"/{stripped}" if stripped else ""


def _seed_ids(servers: int | Iterable[str]) -> list[str]:
    if isinstance(servers, str):
        raise TypeError("servers must be a count or an iterable of ids, not a single str")
    if isinstance(servers, int):
        if servers < 0:
            raise ValueError("servers must be >= 0")
        return [f"srv-{number:04d}" for number in range(1, servers + 1)]
    return list(servers)


def _check_options(
    *,
    shape: str,
    runs_per_server: int,
    page_size: int | None,
    progress_every: float | None,
    fault_rate: float,
    latency: float,
) -> None:
    if shape not in {"data", "runs", "both"}:
        raise ValueError('shape must be "data", "runs" or "both"')
    if runs_per_server < 0:
        raise ValueError("runs_per_server must be >= 0")
    if page_size is not None and page_size < 1:
        raise ValueError("page_size must be >= 1 or None")
    if progress_every is not None and progress_every <= 0:
        raise ValueError("progress_every must be > 0 or None")
    if not 0.0 <= fault_rate <= 1.0:
        raise ValueError("fault_rate must be between 0 and 1")
    if latency < 0:
        raise ValueError("latency must be >= 0")
