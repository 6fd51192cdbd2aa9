"""ACPClient: session ownership, lifecycle and the send path.

The send path has three layers, each doing one thing:
``get`` (retry loop, shared 429 cool-down) -> ``_attempt`` (one request, redirects on the
same origin only) -> ``_read`` (capped body, status mapped to an error).
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

import aiohttp
import attrs
from multidict import CIMultiDictProxy
from yarl import URL

from . import _json
from ._body import read_capped
from ._config import ClientConfig, InsecureTransportWarning, is_cleartext_remote
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
_MAX_COOL_DOWN = 900.0  # seconds; the longest a 429 may pause the whole client
_REQUEST_ID_HEADERS = ("X-Request-Id", "Request-Id")


@attrs.frozen
class Reply:
    """A 2xx answer, decoded; ``next_url`` is a same-origin ``Link: rel="next"``, if any."""

    value: Any
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
        if is_cleartext_remote(self._config.base_url):
            # Once per client, at construction: the caller's line, not every request.
            warnings.warn(
                f"ACPClient sends its API token in clear text to {self._config.base_url.origin()}"
                "; use https:// (plain http:// is only quiet for loopback hosts)",
                InsecureTransportWarning,
                stacklevel=2,
            )
        self._retry = RetryPolicy(max_retries=self._config.max_retries)
        self._secret = self._config.api_key.encode()
        # The whole attempt (redirect hops and pool wait included) is bounded by
        # asyncio.timeout in _attempt; aiohttp bounds the socket steps. sock_connect, not
        # connect: waiting for a pooled connection is not a slow host.
        self._socket_timeout = aiohttp.ClientTimeout(
            total=None,
            sock_connect=self._config.connect_timeout,
            sock_read=self._config.timeout,
        )
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
                # A loop: another 429 may push the end further while we sleep.
                while (wait := self._cool_down_left(deadline - loop.time())) > 0:  # noqa: ASYNC110
                    await asyncio.sleep(wait)
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
            # The host spoke for the whole client: every request waits, fan-outs included
            # (capped, so a bogus Retry-After cannot disable the client for good).
            self._cooldown.extend(min(delay, _MAX_COOL_DOWN))
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
        timeout = max(0.001, min(self._config.timeout, time_left))
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with asyncio.timeout(timeout):
                return await self._follow(session, url, attempt, started)
        except TimeoutError as exc:
            if isinstance(exc, ACPError):
                raise
            log.debug("GET %s timed out (attempt %d)", url, attempt)
            failure: ACPError = APITimeoutError(f"GET {url} timed out after {timeout:.3g}s")
        except aiohttp.ClientError as exc:
            # Only the name and message: some aiohttp errors' repr carries the request
            # headers, and with them the token.
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            log.debug("GET %s failed (attempt %d): %s", url, attempt, reason)
            failure = APIConnectionError(f"GET {url} failed: {reason}")
        # Raised outside the except blocks, so neither __cause__ nor __context__ keeps
        # the aiohttp error (and its headers) alive.
        raise failure

    async def _follow(
        self, session: aiohttp.ClientSession, url: URL, attempt: int, started: float
    ) -> Reply:
        """One attempt: the request, and any redirects on our own origin."""
        for _ in range(_MAX_REDIRECTS + 1):
            async with session.get(
                url,
                headers=self._config.headers,
                timeout=self._socket_timeout,
                allow_redirects=False,
                # Whatever the (maybe borrowed) session says: we map statuses and
                # inflate bodies ourselves, under the size cap.
                raise_for_status=False,
                auto_decompress=False,
            ) as response:
                try:
                    redirect = self._same_origin_redirect(response)
                    if redirect is None:
                        return await self._read(response)
                finally:
                    if log.isEnabledFor(logging.DEBUG):
                        log.debug(
                            "GET %s -> %d (attempt %d, %.0f ms, request id %s)",
                            url,
                            response.status,
                            attempt,
                            (asyncio.get_running_loop().time() - started) * 1000,
                            _request_id(response.headers),
                        )
            url = redirect
        raise APIStatusError(f"more than {_MAX_REDIRECTS} redirects", status=response.status)

    def _same_origin_redirect(self, response: aiohttp.ClientResponse) -> URL | None:
        """Where a 3xx points on our origin; a redirect elsewhere would carry the token away."""
        if not 300 <= response.status < 400:
            return None
        location = response.headers.get("Location")
        target = _resolve(response.url, location) if location else None
        if target is None:
            raise _status_error(response, f"redirect {response.status} without a usable Location")
        if not same_origin(target, self._config.base_url):
            raise _status_error(
                response, f"refusing to follow a redirect to another origin ({target.origin()})"
            )
        return target

    async def _read(self, response: aiohttp.ClientResponse) -> Reply:
        body = await read_capped(response, self._config.max_response_bytes)
        if response.status >= 400:
            raise _error_from_body(response, body, self._secret)
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
        return Reply(value, self._next_link(response))

    def _next_link(self, response: aiohttp.ClientResponse) -> URL | None:
        if "Link" not in response.headers:
            return None  # the usual case; ``response.links`` parses and allocates
        try:
            link = response.links.get("next")
        except ValueError:  # a header yarl cannot parse: no next page we can trust
            link = None
        target = _resolve(response.url, str(link.get("url", ""))) if link else None
        if target is None:
            return None
        if not same_origin(target, self._config.base_url):
            log.warning("ignoring a Link rel=next to another origin (%s)", target.origin())
            return None
        return target


def same_origin(a: URL, b: URL) -> bool:
    """Scheme, host and port alike (an explicit default port is the same origin)."""
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


def _resolve(base: URL, reference: str) -> URL | None:
    """``reference`` made absolute against ``base``, or None when it is not a usable URL."""
    try:
        target = base.join(URL(reference))
        # yarl checks the port and decodes the host only when asked; both may raise
        # (UnicodeError, for a host IDNA cannot round-trip, is a ValueError too).
        usable = target.scheme in ("http", "https") and target.host and target.port
    except ValueError:
        return None
    return target if usable else None


def _request_id(headers: CIMultiDictProxy[str]) -> str | None:
    for name in _REQUEST_ID_HEADERS:
        if value := headers.get(name):
            return value
    return None


def _status_error(response: aiohttp.ClientResponse, message: str) -> APIStatusError:
    return APIStatusError(message, status=response.status, request_id=_request_id(response.headers))


def _error_from_body(
    response: aiohttp.ClientResponse, body: bytes, secret: bytes
) -> APIStatusError:
    """Map a status to its error class, reading the API's JSON error body when there is one.

    A server or proxy may echo the request's Authorization back: the token is blanked
    out of the body before anything (message, details, excerpt) is taken from it.
    """
    body = body.replace(secret, b"***")
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
