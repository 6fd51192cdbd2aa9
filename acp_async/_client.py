"""ACPClient: what the user holds. It resolves the configuration, owns the lifecycle and
hands ``runs`` a private transport; sending lives in ``_transport``."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Self

import aiohttp

from ._config import ClientConfig, InsecureTransportWarning, is_cleartext_remote
from ._observe import NO_OBSERVER, Observer
from ._runs import runs_for
from ._transport import Pool, Transport

if TYPE_CHECKING:
    from .metrics import PrometheusMetrics

__all__ = ("ACPClient",)


class ACPClient:
    """An async client for the agent runs of Computer Agents (ACP) servers.

    Use it as an async context manager, which closes it::

        async with ACPClient() as client:        # the key from ACP_API_KEY
            page = await client.runs.list("srv-0001", limit=10)
            async for outcome in client.runs.list_many(server_ids):
                ...

    ``client.runs`` holds every call (``list``, ``iter``, ``pages``, ``list_many``,
    ``watch``, ``wait_for``); ``client.config`` is the resolved, frozen configuration.

    Args:
        api_key: the API key, sent as ``Authorization: Bearer``. Default: ``ACP_API_KEY``,
            then ``COMPUTER_AGENTS_API_KEY``, then ``TESTBASE_API_KEY``.
        runtime_token: for code running inside an ACP resource: the runtime token the
            platform gives it, sent as ``X-Computer-Agents-Runtime-Token`` and
            ``X-Testbase-Runtime-Token`` instead of ``Authorization``. Default, when no API
            key is given or set: ``COMPUTER_AGENTS_RUNTIME_TOKEN``, then
            ``TESTBASE_RUNTIME_TOKEN``.
        base_url: the API's base URL; ``/v1`` is appended unless present, and a path
            prefix is kept. Default: ``ACP_BASE_URL``, ``COMPUTER_AGENTS_BASE_URL``,
            ``COMPUTER_AGENTS_API_URL``; with a runtime token then
            ``COMPUTER_AGENTS_PLATFORM_API_URL``, ``TESTBASE_PLATFORM_API_URL`` and
            ``platform.apiBaseUrl`` of the runtime JSON; then
            ``https://api.computer-agents.com``.
        organization_id: sent as ``X-Computer-Agents-Organization``. Default: none.
        server_id: the server ``runs.list``, ``runs.iter`` and ``runs.pages`` read when
            called without one. Default: ``COMPUTER_AGENTS_SERVER_ID``, then
            ``TESTBASE_SERVER_ID``, then ``server.id`` of the runtime JSON, else none.
        timeout: seconds one attempt may take (connect, wait and read). Default 60.
        connect_timeout: seconds to open a connection. Default 10.
        max_retries: retries of a transient failure (connection error, timeout, 408,
            409, 429, 5xx), with capped exponential backoff. Default 2.
        max_connections: the connection pool's size; a fan-out never has more requests
            in flight. Default 100.
        session: an ``aiohttp.ClientSession`` to borrow (never closed by the client).
            Default: the client makes and closes its own.
        default_headers: more headers for every request (not a token header).
        max_response_bytes: the largest body read, in bytes after decompression.
            Default 32 MiB.
        trace_configs: ``aiohttp.TraceConfig`` objects for the session the client makes
            (OpenTelemetry's aiohttp instrumentation, say).
        metrics: an ``acp_async.metrics.PrometheusMetrics`` to count requests into.
        proxy: an ``http://`` (or ``https://``) proxy URL for every request; a
            ``user:password@`` in it is sent as ``Proxy-Authorization`` and never shown.
            Default: from the environment (below).
        trust_env: read the proxy from ``HTTPS_PROXY``/``HTTP_PROXY`` (for the base URL's
            scheme) unless ``NO_PROXY`` names its host, as requests and httpx do; once,
            here. Never credentials: no ``~/.netrc``. Default True.

    The runtime JSON is the platform's runtime description, a base64-encoded JSON object
    in ``COMPUTER_AGENTS_RUNTIME_JSON_B64`` (then ``TESTBASE_RUNTIME_JSON_B64``).

    Raises:
        ValueError: no API key or runtime token (the message names the ways to set
            one), both given, or a bad value from an argument or the environment (a
            runtime JSON that is not base64 of a JSON object, an invalid server id or
            URL, a token header in ``default_headers``); the message names where it
            came from and never quotes a secret.
        TypeError: an option of the wrong type (say a ``session`` that is not an
            ``aiohttp.ClientSession``).

    A borrowed ``session`` is used as it is: made with aiohttp's own ``trust_env=True``,
    it would read ``~/.netrc`` and look proxies up on every request itself.

    The token and the proxy's credentials are in no ``repr``, error or log record, and
    the token is never sent to another origin (a redirect there raises). A client
    belongs to the event loop it is first used in. ``async with`` may be nested: the
    client closes when the outermost block exits.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        runtime_token: str | None = None,
        base_url: str | None = None,
        organization_id: str | None = None,
        server_id: str | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        max_retries: int = 2,
        max_connections: int = 100,
        session: aiohttp.ClientSession | None = None,
        default_headers: Mapping[str, str] | None = None,
        max_response_bytes: int = 32 * 2**20,
        trace_configs: Iterable[aiohttp.TraceConfig] | None = None,
        metrics: PrometheusMetrics | None = None,
        proxy: str | None = None,
        trust_env: bool = True,
    ) -> None:
        if session is not None and not isinstance(session, aiohttp.ClientSession):
            raise TypeError(
                f"session must be an aiohttp.ClientSession, got {type(session).__name__}"
            )
        if metrics is not None and not isinstance(metrics, Observer):
            raise TypeError(
                "metrics must be an acp_async.metrics.PrometheusMetrics (or another "
                f"Observer), got {type(metrics).__name__}"
            )
        traces = _trace_configs(trace_configs)
        if traces and session is not None:
            raise ValueError(
                "trace_configs apply to the session the client creates; add them to the "
                "aiohttp.ClientSession you pass instead"
            )
        config = ClientConfig.resolve(
            api_key,
            runtime_token=runtime_token,
            base_url=base_url,
            organization_id=organization_id,
            server_id=server_id,
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_retries=max_retries,
            max_connections=max_connections,
            default_headers=default_headers,
            max_response_bytes=max_response_bytes,
            proxy=proxy,
            trust_env=trust_env,
        )
        if is_cleartext_remote(config.base_url):
            # Once per client, at construction: the caller's line, not every request.
            warnings.warn(
                f"ACPClient sends its token in clear text to {config.base_url.origin()}"
                "; use https:// (plain http:// is only quiet for loopback hosts)",
                InsecureTransportWarning,
                stacklevel=2,
            )
        pool = Pool(session, max_connections=config.max_connections, trace_configs=traces)
        self._setup(Transport(config, pool=pool, observer=metrics or NO_OBSERVER))

    def _setup(self, transport: Transport) -> None:
        self._transport = transport
        self._depth = 0
        self.runs = runs_for(transport)

    def with_options(
        self,
        *,
        timeout: float | None = None,
        max_retries: int | None = None,
        default_headers: Mapping[str, str] | None = None,
    ) -> ACPClient:
        """A client that sends with these options and shares everything else with this one.

        It shares this client's session, connection pool and 429 cool-down (also when
        derived before the first request), credentials and configuration. Closing it (or
        leaving its ``async with``) never closes this client's session; it is closed
        when this client is, so close this one (it owns the session) as usual. Cheap:
        derive one per call if you like.

        Args:
            timeout: seconds one attempt may take. Default: this client's.
            max_retries: retries of a transient failure (0: none). Default: this
                client's.
            default_headers: headers merged over this client's (not a token header).

        Raises:
            ValueError, TypeError: a bad option, as at construction.
            RuntimeError: this client is closed.

        Example::

            quick = client.with_options(timeout=5.0, max_retries=0)
            page = await quick.runs.list("srv-0001")
        """
        config = self.config.with_options(
            timeout=timeout, max_retries=max_retries, default_headers=default_headers
        )
        derived = object.__new__(ACPClient)
        derived._setup(self._transport.derive(config))
        return derived

    def __repr__(self) -> str:
        return f"ACPClient(base_url={str(self.config.base_url)!r})"

    @property
    def config(self) -> ClientConfig:
        """The resolved, frozen configuration (``config.base_url`` ends in ``/v1``)."""
        return self._transport.config

    @property
    def closed(self) -> bool:
        """True once ``close()`` ran (or, for a derived client, its original's)."""
        return self._transport.closed

    async def __aenter__(self) -> Self:
        self._transport.session()
        self._depth += 1
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._depth -= 1
        if self._depth <= 0:
            await self.close()

    async def close(self) -> None:
        """Close the client: the session it created is closed, a borrowed one left open.

        Idempotent. A client made by ``with_options`` closes only itself. Any call after
        ``close()`` raises ``RuntimeError``.
        """
        await self._transport.close()


def _trace_configs(
    trace_configs: Iterable[aiohttp.TraceConfig] | None,
) -> list[aiohttp.TraceConfig]:
    if trace_configs is None:
        return []
    if isinstance(trace_configs, aiohttp.TraceConfig):
        raise TypeError("trace_configs must be a list of aiohttp.TraceConfig, not a single one")
    traces = list(trace_configs)
    for trace in traces:
        if not isinstance(trace, aiohttp.TraceConfig):
            raise TypeError(
                f"trace_configs must hold aiohttp.TraceConfig, got {type(trace).__name__}"
            )
    return traces
