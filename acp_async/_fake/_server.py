"""`FakeACPServer`: the aiohttp server that answers from the world, injects faults and logs.

It serves ``GET {prefix}/v1/servers/{serverId}/runtime/agent/runs`` on 127.0.0.1,
so the client under test goes through its real connection, timeout and parsing
code instead of a mock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Final, Self

import attrs
from aiohttp import web

from ._answer import RUNS_PATH, SHAPES, Answer, Shape, error, headers, page
from ._faults import Faults, drop, fault_answer, send_slowly
from ._log import Auth, Outcome, RecordedRequest, RequestLog
from ._world import Server, World

__all__ = ("FakeACPServer",)

# The platform's runtime client sends its token under both names; either is accepted.
RUNTIME_TOKEN_HEADERS: Final = ("X-Computer-Agents-Runtime-Token", "X-Testbase-Runtime-Token")
_DEFAULT_LIMIT: Final = 20
_MAX_LIMIT: Final = 1000
# How long aiohttp may wait for handlers at close(); stalls are woken before that.
_SHUTDOWN_TIMEOUT: Final = 0.25


class FakeACPServer:
    """A local ACP API with seeded servers and runs, and faults on demand.

    Use it as ``async with FakeACPServer() as fake:`` and point a client at
    ``fake.base_url`` with ``fake.token`` (or ``fake.runtime_token``, sent as
    ``X-Computer-Agents-Runtime-Token`` or ``X-Testbase-Runtime-Token``, as code inside an
    ACP resource does).
    A page lists its runs under both ``data`` and ``runs``, as the API
    documents; ``shape="data"`` or ``shape="runs"`` serves only one.
    Everything is deterministic for a given ``seed`` and sequence of calls;
    ``clock`` drives ``progress_every`` and the timings in `requests`, so
    tests can inject a fake one.

    Args:
        token: the API key it accepts as ``Authorization: Bearer``. Default
            ``"test-token"``.
        runtime_token: the runtime token it accepts. Default ``"test-runtime-token"``.
        servers: how many servers (ids ``srv-0001`` ...), or their ids. Default 3.
        runs_per_server: runs each server starts with. Default 5.
        seed: seeds the generated runs and faults. Default 0.
        shape: where a page lists its runs: ``"both"`` (default), ``"data"``, ``"runs"``.
        page_size: at most this many runs a page, with a ``Link: <...>; rel="next"``
            header to the next one. Default None: one page, up to the request's limit.
        progress_every: seconds after which a server's unfinished runs move a status
            forward, counted from its last request. Default None: never by themselves.
        fault_rate: the share of requests (0 to 1) that fail at random. Default 0.
        latency: seconds added to every response. Default 0.
        host: the address to listen on. Default ``"127.0.0.1"``.
        port: the port; 0 (default) picks a free one (see ``base_url``).
        prefix: a path prefix the API is served under (say ``"/acp"``). Default none.
        clock: a monotonic clock in seconds. Default ``time.monotonic``.

    Example::

        async with FakeACPServer(servers=2) as fake:
            async with ACPClient(fake.token, base_url=fake.base_url) as client:
                page = await client.runs.list(fake.server_ids[0])
    """

    def __init__(
        self,
        *,
        token: str = "test-token",
        runtime_token: str = "test-runtime-token",
        servers: int | Iterable[str] = 3,
        runs_per_server: int = 5,
        seed: int = 0,
        shape: Shape = "both",
        page_size: int | None = None,
        progress_every: float | None = None,
        fault_rate: float = 0.0,
        latency: float = 0.0,
        host: str = "127.0.0.1",
        port: int = 0,
        prefix: str = "",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if shape not in SHAPES:
            raise ValueError('shape must be "data", "runs" or "both"')
        if page_size is not None and page_size < 1:
            raise ValueError("page_size must be >= 1 or None")
        if latency < 0:
            raise ValueError("latency must be >= 0")
        self._world = World(
            servers=servers,
            runs_per_server=runs_per_server,
            seed=seed,
            progress_every=progress_every,
            clock=clock,
        )
        self._faults = Faults(seed=seed, rate=fault_rate)
        self._log = RequestLog(clock)
        self._token = token
        self._runtime_token = runtime_token
        self._shape: Shape = shape
        self._page_size = page_size
        self._latency = latency
        self._host = host
        self._port = port
        self._prefix = _normalize_prefix(prefix)
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self._closed = False

    def __repr__(self) -> str:
        where = self.base_url if self._runner is not None else "not started"
        return f"<FakeACPServer {where} servers={len(self._world.server_ids)}>"

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Bind the socket and start serving; the port is known afterwards."""
        if self._closed:
            raise RuntimeError("this FakeACPServer is closed; create a new one")
        if self._runner is not None:
            raise RuntimeError("this FakeACPServer is already started")
        app = web.Application()
        app.router.add_route("*", self._prefix + RUNS_PATH, self._handle_runs)
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
        """The API key it accepts as ``Authorization: Bearer <token>``."""
        return self._token

    @property
    def runtime_token(self) -> str:
        """The runtime token it accepts as ``X-Computer-Agents-Runtime-Token`` (or
        ``X-Testbase-Runtime-Token``)."""
        return self._runtime_token

    @property
    def server_ids(self) -> list[str]:
        """The ids of the servers it serves, in order (``srv-0001``, ...)."""
        return self._world.server_ids

    # -- scripting the data --------------------------------------------------

    def add_server(self, server_id: str) -> None:
        """Add a server ``server_id`` with no runs; fill it with `add_run`."""
        self._world.add_server(server_id)

    def add_run(self, server_id: str, **fields: Any) -> dict[str, Any]:
        """Add the newest run of ``server_id`` (status "queued" unless given); return a copy.

        ``fields`` use the API's camelCase names and override the generated
        values; unknown names are stored too, which lets tests check that a
        client ignores fields it does not know.
        """
        return self._world.add_run(server_id, **fields)

    def runs(self, server_id: str) -> list[dict[str, Any]]:
        """A deep copy of the runs of ``server_id``, newest first, as the API sends them."""
        return self._world.runs(server_id)

    def set_run(self, server_id: str, run_id: str, **fields: Any) -> None:
        """Change fields (camelCase names) of run ``run_id`` of ``server_id``.

        A new terminal ``status`` also gets ``completedAt`` (and ``error`` for
        "failed") unless given; a non-terminal one loses them.
        """
        self._world.set_run(server_id, run_id, **fields)

    def advance(self, server_id: str | None = None, steps: int = 1) -> None:
        """Move every non-terminal run of ``server_id`` (None: of every server) ``steps``
        status steps forward.

        queued -> running -> completed, except that a deterministic ~1 in 5
        (from the seed and the run id) ends "failed". Runs with a status the
        fake does not know stay as they are.
        """
        self._world.advance(server_id, steps)

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

        Kinds: "status" (the JSON error of ``status``), "html" (a proxy's HTML
        error page), "malformed" (200, not JSON), "truncated" (200, the body
        cut short), "drop" (no response), "stall" (200, half the body, a
        pause, the rest), "latency" (a pause, then the normal answer) and
        "redirect" (a 3xx to the ``Location`` in ``headers``).

        ``server_id=None`` matches a request for any server. ``retry_after`` is
        sent as the ``Retry-After`` header (seconds or an HTTP date). ``delay`` is
        waited before the response for every kind except "stall", where it is
        the pause in the middle of the body; it defaults to 30 s for "stall",
        1 s for "latency" and 0 otherwise.

        aiohttp's client resends an idempotent request once, silently, when
        the connection closes before any response; so one client call sees a
        "drop" only with ``times=2``.
        """
        self._faults.add(
            kind,
            status=status,
            times=times,
            server_id=server_id,
            retry_after=retry_after,
            delay=delay,
            body=body,
            headers=headers,
        )

    # -- observing -----------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in arrival order (a copy)."""
        return self._log.records

    @property
    def in_flight(self) -> int:
        """Requests being handled right now."""
        return self._log.in_flight

    @property
    def max_in_flight(self) -> int:
        """The most requests handled at once since start or `reset_stats`."""
        return self._log.max_in_flight

    def reset_stats(self) -> None:
        """Forget recorded requests and restart the peak from the current load."""
        self._log.reset()

    # -- serving -------------------------------------------------------------

    async def _handle_runs(self, request: web.Request) -> web.StreamResponse:
        # aiohttp matches on the path with only %2F and %25 still encoded and
        # decodes the segment once, so "a%2Fb" arrives here as "a/b".
        return await self._handle(request, request.match_info["server_id"])

    async def _handle_other(self, request: web.Request) -> web.StreamResponse:
        return await self._handle(request, None)

    async def _handle(self, request: web.Request, server_id: str | None) -> web.StreamResponse:
        """Log the request around the actual answer."""
        record = self._log.arrived(
            server_id=server_id,
            path=request.rel_url.raw_path,
            query=request.query,
            headers={str(name): value for name, value in request.headers.items()},
            method=request.method,
            auth=self._credential(request),
        )
        outcome = Outcome()
        try:
            return await self._respond(request, server_id, record, outcome)
        finally:
            self._log.finished(record, outcome)

    async def _respond(
        self,
        request: web.Request,
        server_id: str | None,
        record: RecordedRequest,
        outcome: Outcome,
    ) -> web.StreamResponse:
        fault = None
        if server_id is not None:
            self._world.progress(server_id)
            fault = self._faults.take(server_id)
        outcome.fault = fault.kind if fault else None
        delay = self._latency
        if fault is not None and fault.kind != "stall":
            delay += fault.delay
        if not await self._pause(delay):
            return drop(request)
        if fault is None or fault.kind == "latency":
            return self._reply(self._answer(request, server_id, record), record, outcome)
        if fault.kind == "drop":
            return drop(request)
        if fault.kind in {"truncated", "stall"}:
            answer = self._answer(request, server_id, record)
            return await send_slowly(
                request,
                answer,
                headers=headers(answer, record.request_id),
                fault=fault,
                outcome=outcome,
                pause=self._pause,
            )
        return self._reply(fault_answer(fault), record, outcome)

    async def _pause(self, seconds: float) -> bool:
        """Wait, but wake at once when the server closes; False means closing."""
        if seconds > 0:
            try:
                async with asyncio.timeout(seconds):
                    await self._closing.wait()
            except TimeoutError:
                pass
        return not self._closing.is_set()

    def _answer(
        self, request: web.Request, server_id: str | None, record: RecordedRequest
    ) -> Answer:
        """What the real API would answer, errors included."""
        if server_id is None:
            return error(404, "not_found", "No route matches this path", "route_not_found")
        if request.method not in {"GET", "HEAD"}:
            return attrs.evolve(
                error(405, "method_not_allowed", "Use GET", "method_not_allowed"),
                headers={"Allow": "GET"},
            )
        if record.auth is None:
            return error(401, "unauthorized", "Missing or invalid API key", "invalid_api_key")
        server = self._world.find(server_id)
        if server is None:
            return error(404, "not_found", f"Server {server_id!r} not found", "server_not_found")
        return self._list_runs(request, server)

    def _list_runs(self, request: web.Request, server: Server) -> Answer:
        limit = _int_param(request.query.get("limit"), default=_DEFAULT_LIMIT, low=1)
        if limit is None or limit > _MAX_LIMIT:
            message = f"limit must be an integer between 1 and {_MAX_LIMIT}"
            return error(400, "invalid_request", message, "invalid_limit")
        offset = _int_param(request.query.get("cursor"), default=0, low=0)
        if offset is None:
            return error(400, "invalid_request", "cursor is not valid", "invalid_cursor")
        return page(
            server,
            limit=limit,
            offset=offset,
            shape=self._shape,
            page_size=self._page_size,
            prefix=self._prefix,
        )

    def _credential(self, request: web.Request) -> Auth | None:
        """Which of the two accepted credentials the request carries, if either."""
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and credentials == self._token:
            return "bearer"
        if any(request.headers.get(h) == self._runtime_token for h in RUNTIME_TOKEN_HEADERS):
            return "runtime"
        return None

    def _reply(self, answer: Answer, record: RecordedRequest, outcome: Outcome) -> web.Response:
        outcome.status = answer.status
        return web.Response(
            status=answer.status, body=answer.body, headers=headers(answer, record.request_id)
        )


def _int_param(raw: str | None, *, default: int, low: int) -> int | None:
    """A strict decimal query parameter; None when it is not one (or below ``low``)."""
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdecimal() or int(raw) < low:
        return None
    return int(raw)


def _normalize_prefix(prefix: str) -> str:
    stripped = prefix.strip("/")
    return f"/{stripped}" if stripped else ""
