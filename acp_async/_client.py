"""ACPClient: session ownership, lifecycle and the send path.

The send path has three layers, each doing one thing:
``get`` (retry loop, shared 429 cool-down) -> ``_attempt`` (one request, redirects on the
same origin only) -> ``_read`` (capped body, status mapped to an error).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

import aiohttp
import attrs
from multidict import CIMultiDictProxy
from yarl import URL

from . import _json
from ._config import ClientConfig
from ._retry import RETRYABLE_STATUSES, CoolDown, RetryPolicy, parse_retry_after
from .errors import (
    ACPError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    RateLimitError,
    ResponseValidationError,
    status_error_class,
)
from .runs import Runs

__all__ = ("ACPClient",)

log = logging.getLogger("acp_async")

T = TypeVar("T")

_MAX_REDIRECTS = 5
_REQUEST_ID_HEADERS = ("X-Request-Id", "Request-Id")


@attrs.frozen
class Reply:
    """A 2xx answer, decoded; ``next_url`` is a same-origin ``Link: rel="next"``, if any."""

    value: Any
    url: URL
    next_url: URL | None


class ACPClient:
    """Reads agent runs from an ACP server. Use it as ``async with ACPClient() as client:``."""

    def __init__(
        self,
        api_key: str | None = None,
        *,
        base_url: str | None = None,
        organization_id: str | None = None,
        timeout: float = 60.0,
        connect_timeout: float = 10.0,
        max_retries: int = 2,
        max_connections: int = 100,
        session: aiohttp.ClientSession | None = None,
        default_headers: Mapping[str, str] | None = None,
        max_response_bytes: int = 32 * 2**20,
    ) -> None:
        self._config = ClientConfig.resolve(
            api_key,
            base_url=base_url,
            organization_id=organization_id,
            timeout=timeout,
            connect_timeout=connect_timeout,
            max_retries=max_retries,
            max_connections=max_connections,
            default_headers=default_headers,
            max_response_bytes=max_response_bytes,
        )
        self._retry = RetryPolicy(max_retries=self._config.max_retries)
        self._full_timeout = self._client_timeout(self._config.timeout)
        self._session = session
        self._owns_session = session is None
        self._closed = False
        self._cooldown = CoolDown()
        self.runs = Runs(self)

    def __repr__(self) -> str:
        return f"ACPClient(base_url={str(self._config.base_url)!r})"

    @property
    def config(self) -> ClientConfig:
        return self._config

    @property
    def closed(self) -> bool:
        return self._closed

    async def __aenter__(self) -> Self:
        self._ensure_session()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the session this client created; a borrowed session is left open."""
        if self._closed:
            return
        self._closed = True
        if self._owns_session and self._session is not None:
            await self._session.close()

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._closed:
            raise RuntimeError("this ACPClient is closed")
        if self._session is None:
            # Created here, inside the running loop, so aiohttp binds it to the right loop.
            connector = aiohttp.TCPConnector(limit=self._config.max_connections)
            self._session = aiohttp.ClientSession(connector=connector)
        return self._session

    def pool_limit(self) -> int | None:
        """How many connections the session's pool allows (None: unbounded)."""
        connector = self._ensure_session().connector
        return connector.limit if connector is not None and connector.limit else None

    def _client_timeout(self, timeout: float) -> aiohttp.ClientTimeout:
        return aiohttp.ClientTimeout(
            total=timeout, connect=min(self._config.connect_timeout, timeout), sock_read=timeout
        )

    def url(self, *segments: str, query: str = "") -> URL:
        """An API URL from already percent-encoded path segments and query (yarl must not
        re-normalise them)."""
        path = "/".join(segments)
        return URL(f"{self._config.base_url}/{path}{'?' if query else ''}{query}", encoded=True)

    async def get(self, url: URL, parse: Callable[[Any], T]) -> tuple[T, URL | None]:
        """GET ``url`` with retries; ``parse`` turns the decoded JSON into the caller's type."""
        session = self._ensure_session()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._retry.budget(self._config.timeout)
        attempt = 0
        while True:
            attempt += 1
            try:
                if self._cool_down_left(deadline - loop.time()) > 0:
                    await self._cooldown.wait()
                reply = await self._attempt(session, url, attempt, deadline - loop.time())
            except (APIConnectionError, APIStatusError) as exc:
                delay = self._retry_delay(exc, attempt, deadline - loop.time())
                if delay is None:
                    raise
                log.info(
                    "retrying GET %s in %.2fs (retry %d of %d) after %s",
                    url,
                    delay,
                    attempt,
                    self._retry.max_retries,
                    exc,
                )
                await asyncio.sleep(delay)
                continue
            try:
                return parse(reply.value), reply.next_url
            except ResponseValidationError as exc:
                raise ResponseValidationError(f"GET {url}: {exc}") from None

    def _cool_down_left(self, time_left: float) -> float:
        """Seconds of 429 cool-down to wait out first; too long a one raises RateLimitError."""
        remaining = self._cooldown.remaining()
        if remaining > min(self._retry.max_retry_after, time_left):
            raise RateLimitError(
                f"the host asked us to wait {remaining:.1f}s after a 429",
                status=429,
                retry_after=remaining,
            )
        return remaining

    def _retry_delay(self, exc: ACPError, attempt: int, time_left: float) -> float | None:
        """Seconds to wait before the next attempt, or None to give up and raise ``exc``."""
        retry_after = exc.retry_after if isinstance(exc, APIStatusError) else None
        delay = retry_after if retry_after is not None else self._retry.backoff(attempt)
        if isinstance(exc, RateLimitError):
            # The host spoke for the whole client: every request waits, fan-outs included.
            self._cooldown.extend(delay)
            delay = 0.0
        if (
            attempt > self._retry.max_retries
            or (isinstance(exc, APIStatusError) and exc.status not in RETRYABLE_STATUSES)
            or (retry_after is not None and retry_after > self._retry.max_retry_after)
        ):
            return None
        return delay if delay + self._cooldown.remaining() < time_left else None

    async def _attempt(
        self, session: aiohttp.ClientSession, url: URL, attempt: int, time_left: float
    ) -> Reply:
        config = self._config
        timeout = max(0.001, min(config.timeout, time_left))
        # Built once per client for the usual case: a whole attempt fits in the deadline.
        client_timeout = (
            self._full_timeout if timeout == config.timeout else self._client_timeout(timeout)
        )
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            for _ in range(_MAX_REDIRECTS + 1):
                async with session.get(
                    url, headers=config.headers, timeout=client_timeout, allow_redirects=False
                ) as response:
                    redirect = self._same_origin_redirect(response)
                    if redirect is None:
                        reply = await self._read(response)
                        if log.isEnabledFor(logging.DEBUG):
                            log.debug(
                                "GET %s -> %d (attempt %d, %.0f ms, request id %s)",
                                url,
                                response.status,
                                attempt,
                                (loop.time() - started) * 1000,
                                _request_id(response.headers),
                            )
                        return reply
                url = redirect
        except TimeoutError as exc:
            log.debug("GET %s timed out (attempt %d)", url, attempt)
            raise APITimeoutError(f"GET {url} timed out after {timeout:.3g}s") from exc
        except aiohttp.ClientError as exc:
            log.debug("GET %s failed (attempt %d): %r", url, attempt, exc)
            raise APIConnectionError(f"GET {url} failed: {exc or type(exc).__name__}") from exc
        raise APIStatusError(f"more than {_MAX_REDIRECTS} redirects", status=310)

    def _same_origin_redirect(self, response: aiohttp.ClientResponse) -> URL | None:
        """Where a 3xx points on our origin; a redirect elsewhere would carry the token away."""
        if not 300 <= response.status < 400:
            return None
        location = response.headers.get("Location")
        if not location:
            raise _status_error(response, f"redirect {response.status} without a Location")
        target = response.url.join(URL(location))
        if target.origin() != self._config.base_url.origin():
            raise _status_error(
                response, f"refusing to follow a redirect to another origin ({target.origin()})"
            )
        return target

    async def _read(self, response: aiohttp.ClientResponse) -> Reply:
        body = await self._read_capped(response)
        if response.status >= 400:
            raise _error_from_body(response, body)
        if response.status >= 300 or response.status < 200:
            raise _status_error(response, f"unexpected status {response.status}")
        try:
            value = _json.loads(body)
        except _json.DECODE_ERRORS as exc:
            kind = response.headers.get("Content-Type", "no content type")
            raise ResponseValidationError(
                f"GET {response.url}: response is not valid JSON ({kind}, {len(body)} bytes): "
                f"{type(exc).__name__}"
            ) from None
        return Reply(value, response.url, self._next_link(response))

    async def _read_capped(self, response: aiohttp.ClientResponse) -> bytes:
        """The body, but never more than ``max_response_bytes`` of it (gzip bombs included)."""
        limit = self._config.max_response_bytes
        length = response.content_length
        if length is not None and length > limit:
            raise ResponseValidationError(
                f"GET {response.url}: response of {length} bytes exceeds max_response_bytes={limit}"
            )
        if length is not None and "Content-Encoding" not in response.headers:
            return await response.read()  # exactly Content-Length bytes, already checked
        body = bytearray()
        async for chunk in response.content.iter_any():
            body += chunk
            if len(body) > limit:
                raise ResponseValidationError(
                    f"GET {response.url}: response exceeds max_response_bytes={limit}"
                )
        return bytes(body)

    def _next_link(self, response: aiohttp.ClientResponse) -> URL | None:
        if "Link" not in response.headers:
            return None  # the usual case; ``response.links`` parses and allocates
        link = response.links.get("next")
        if link is None:
            return None
        target = response.url.join(URL(str(link.get("url", ""))))
        if target.origin() != self._config.base_url.origin():
            log.warning("ignoring a Link rel=next to another origin (%s)", target.origin())
            return None
        return target


def _request_id(headers: CIMultiDictProxy[str]) -> str | None:
    for name in _REQUEST_ID_HEADERS:
        if value := headers.get(name):
            return value
    return None


def _status_error(response: aiohttp.ClientResponse, message: str) -> APIStatusError:
    return APIStatusError(message, status=response.status, request_id=_request_id(response.headers))


def _error_from_body(response: aiohttp.ClientResponse, body: bytes) -> APIStatusError:
    """Map a status to its error class, reading the API's JSON error body when there is one."""
    text = body.decode("utf-8", errors="replace")
    try:
        payload = _json.loads(body)
    except _json.DECODE_ERRORS:
        payload = None
    fields = payload if isinstance(payload, dict) else {}
    message = _text(fields.get("message")) or _text(fields.get("error")) or response.reason
    return status_error_class(response.status)(
        message or f"HTTP {response.status}",
        status=response.status,
        code=_text(fields.get("code")),
        details=fields.get("details"),
        request_id=_request_id(response.headers),
        body=text,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
