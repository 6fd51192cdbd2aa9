"""ACPClient: what the user holds. It resolves the configuration, owns the lifecycle and
hands ``runs`` a private transport; sending lives in ``_transport``."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Self

import aiohttp

from ._config import ClientConfig, InsecureTransportWarning, is_cleartext_remote
from ._observe import NO_OBSERVER, Observer
from ._runs import Runs
from ._transport import Transport

__all__ = ("ACPClient",)


class ACPClient:
    """Reads agent runs from an ACP server. Use it as ``async with ACPClient() as client:``.

    ``async with`` may be nested (say a helper that enters a client it was handed): the
    client closes when the outermost block exits.
    """

    def __init__(
        self,
        api_key: str | None = None,
        *,
        runtime_token: str | None = None,
        base_url: str | None = None,
        organization_id: str | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        max_retries: int = 2,
        max_connections: int = 100,
        session: aiohttp.ClientSession | None = None,
        default_headers: Mapping[str, str] | None = None,
        max_response_bytes: int = 32 * 2**20,
        trace_configs: Iterable[aiohttp.TraceConfig] | None = None,
        metrics: Observer | None = None,
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
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_retries=max_retries,
            max_connections=max_connections,
            default_headers=default_headers,
            max_response_bytes=max_response_bytes,
        )
        if is_cleartext_remote(config.base_url):
            # Once per client, at construction: the caller's line, not every request.
            warnings.warn(
                f"ACPClient sends its token in clear text to {config.base_url.origin()}"
                "; use https:// (plain http:// is only quiet for loopback hosts)",
                InsecureTransportWarning,
                stacklevel=2,
            )
        self._transport = Transport(
            config, session=session, observer=metrics or NO_OBSERVER, trace_configs=traces
        )
        self._depth = 0
        self.runs = Runs(self._transport)

    def __repr__(self) -> str:
        return f"ACPClient(base_url={str(self.config.base_url)!r})"

    @property
    def config(self) -> ClientConfig:
        return self._transport.config

    @property
    def closed(self) -> bool:
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
        """Close the session this client created; a borrowed session is left open."""
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
