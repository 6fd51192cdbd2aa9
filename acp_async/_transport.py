"""The private sender: the session, the retry loop and one attempt.

Three layers, each doing one thing:
``get`` (retry loop under one deadline, the shared 429 cool-down, ``.url`` on every error)
-> ``_attempt`` (one request under one timeout, redirects on the same origin only)
-> ``_response.read_reply`` (capped body, status mapped to an error, JSON, ``Link``).

Everything a request needs that does not change between requests (the keyword arguments
for aiohttp, headers included, the base URL's parts, the retry budget) is worked out once per
client; with no observer attached, nothing is allocated or called for one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from ._config import ClientConfig
from ._log import log
from ._observe import Observer, RequestOutcome
from ._response import Unread, keep_body, read_reply, redirect_target, request_id, status_error
from ._retry import CoolDown, RetryPolicy
from .errors import (
    ACPError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    RateLimitError,
    ResponseValidationError,
)

T = TypeVar("T")

_MAX_REDIRECTS = 5
_MAX_COOL_DOWN = 900.0  # seconds; the longest a 429 may pause the whole client


class Pool:
    """What a client shares with every client derived from it by ``with_options``: the
    session (made on first use, so a client derived before the first request shares it
    too), the event loop it is bound to, and the 429 cool-down."""

    def __init__(
        self,
        session: aiohttp.ClientSession | None,
        *,
        max_connections: int,
        trace_configs: Iterable[aiohttp.TraceConfig] | None,
    ) -> None:
        self._session = session
        self._owns_session = session is None
        self._max_connections = max_connections
        self._trace_configs = list(trace_configs or ())
        self._loop: asyncio.AbstractEventLoop | None = None
        self.cool_down = CoolDown()

    def session(self) -> aiohttp.ClientSession:
        """The session, created on first use inside the running loop (aiohttp binds it there)."""
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            raise RuntimeError(
                "an ACPClient belongs to the event loop it was first used in (each "
                "asyncio.run() starts a new one): create one client per loop"
            )
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._max_connections)
            # Never trust_env=True: it reads ~/.netrc and looks the proxy up in a thread on
            # every request; the proxy is worked out once, in the config.
            # No default headers either: aiohttp merges a session's defaults into the
            # proxy's CONNECT too, and the token must reach the API only.
            self._session = aiohttp.ClientSession(
                connector=connector, trace_configs=self._trace_configs or None
            )
        return self._session

    @property
    def current(self) -> aiohttp.ClientSession | None:
        """The session, or None before the first use."""
        return self._session

    async def close(self) -> None:
        """Close the session we created; a borrowed one is left open."""
        if self._owns_session and self._session is not None:
            await self._session.close()

    def limit(self) -> int | None:
        """How many connections the session's pool allows (None: unbounded). Known without
        a running loop: ours is sized by the config, a borrowed one by its connector."""
        if self._session is None:
            return self._max_connections
        connector = self._session.connector
        return connector.limit if connector is not None and connector.limit else None


class Transport:
    """Sends the client's GETs; ``Runs`` receives one, users never see it.

    A transport made by ``derive`` sends with other options through the same ``Pool``;
    it is closed when the transport it was derived from is, and closing it closes nothing
    else.
    """

    def __init__(
        self,
        config: ClientConfig,
        *,
        pool: Pool,
        observer: Observer,
        parent: Transport | None = None,
    ) -> None:
        self.config = config
        self.retry = RetryPolicy(max_retries=config.max_retries)
        self.observer = observer
        # A _Hop is allocated, and the request hooks called, only when the observer
        # overrides them (the base Observer's hooks do nothing).
        kind = type(observer)
        self._observed = (
            kind.request_started is not Observer.request_started
            or kind.request_finished is not Observer.request_finished
        )
        self._secret = config.secret.encode()
        self._timeout = config.timeout
        self._budget = self.retry.budget(config.timeout)
        self._limit = config.max_response_bytes
        self._origin = config.base_url
        # The base URL's parts, so a request's URL is built, not parsed from a string.
        self._scheme = config.base_url.scheme
        self._authority = config.base_url.raw_authority
        self._base_path = config.base_url.raw_path
        self._pool = pool
        self._parent = parent
        self._closed = False
        self._cool_down = pool.cool_down
        # One timer per attempt: asyncio.timeout in _attempt bounds the whole attempt
        # (redirect hops, pool wait and body read included), so aiohttp gets no read
        # timeout of its own (sock_read would re-arm a timer on every read, and never fire
        # first). sock_connect, not connect: waiting for a pooled connection is not a slow
        # host.
        socket_timeout = aiohttp.ClientTimeout(total=None, sock_connect=config.connect_timeout)
        # Every request's keyword arguments, worked out once.
        self._request_options: dict[str, Any] = {
            "headers": config.headers,
            "timeout": socket_timeout,
            "allow_redirects": False,
            # Whatever the (maybe borrowed) session says: we map statuses and inflate
            # bodies ourselves, under the size cap.
            "raise_for_status": False,
            "auto_decompress": False,
        }
        if config.proxy is not None:
            self._request_options["proxy"] = config.proxy
            if config.proxy_authorization is not None:
                self._request_options.update(_proxy_credentials(config))

    def derive(self, config: ClientConfig) -> Transport:
        """A transport sending with ``config`` through this one's pool and cool-down."""
        if self.closed:
            raise RuntimeError("this ACPClient is closed")
        return Transport(config, pool=self._pool, observer=self.observer, parent=self)

    @property
    def closed(self) -> bool:
        return self._closed or (self._parent is not None and self._parent.closed)

    def session(self) -> aiohttp.ClientSession:
        """The shared session; refused once this transport (or its origin) is closed."""
        if self.closed:
            raise RuntimeError("this ACPClient is closed")
        return self._pool.session()

    async def close(self) -> None:
        """Close the session we created (a borrowed one is left open); a derived transport
        closes only itself. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._parent is None:
            await self._pool.close()

    def pool_limit(self) -> int | None:
        """How many connections the session's pool allows (None: unbounded)."""
        return self._pool.limit()

    @property
    def _session(self) -> aiohttp.ClientSession | None:
        """The shared session, or None before the first use (tests look at it here)."""
        return self._pool.current

    def url(self, *segments: str, query: str = "") -> URL:
        """An API URL from already percent-encoded path segments and query (yarl must not
        re-normalise them)."""
        return URL.build(
            scheme=self._scheme,
            authority=self._authority,
            path=f"{self._base_path}/{'/'.join(segments)}",
            query_string=query,
            encoded=True,
        )

    async def get(
        self,
        url: URL,
        parse: Callable[[Any], T],
        *,
        peek: Callable[[bytes], T | None] | None = None,
    ) -> tuple[T, URL | None]:
        """GET ``url`` with retries; ``parse`` turns the decoded JSON into the caller's type.

        ``peek`` sees a 2xx body's bytes first: what it returns (not None) is the result,
        and the body is neither decoded nor parsed (the watch skips a page it has seen).

        ``parse`` runs inside the attempt, so a 2xx it refuses counts as an ``invalid``
        request. Any error, ``parse``'s included, leaves with ``.url`` set: the one place
        it is set.
        """
        try:
            return await self._send(url, parse, peek)
        except ACPError as exc:
            exc.url = str(url)
            raise

    async def get_later(self, url: URL, parse: Callable[[Any], T]) -> Later[T]:
        """``get`` for a fan-out: the body is decoded and parsed only by ``Later.value()``,
        which the consumer calls as it takes the result, so a page is built just before it
        is used (and freed) instead of waiting, built, among the results not yet taken.

        With an observer that counts requests, the body is parsed now, as ``get`` does (a
        2xx whose body fails is then an ``invalid`` request), and ``value()`` returns it.
        """
        if self._observed:
            value, _ = await self.get(url, parse)
            return Later(url, None, parse, value)
        unread, _ = await self.get(url, _unparsed, peek=keep_body)
        return Later(url, unread, parse, None)

    async def _send(
        self, url: URL, parse: Callable[[Any], T], peek: Callable[[bytes], T | None] | None
    ) -> tuple[T, URL | None]:
        """The retry loop: attempts until one succeeds, the policy gives up, or time runs out."""
        session = self.session()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._budget
        attempt = 0
        while True:
            attempt += 1
            try:
                if self._cool_down.started:  # until a first 429, no clock to read
                    await self._wait_out_cool_down(deadline, loop)
                return await self._attempt(
                    session, url, attempt, deadline - loop.time(), parse=parse, peek=peek
                )
            except (APIConnectionError, APIStatusError) as exc:
                time_left = deadline - loop.time()
                delay = self.retry.delay(exc, attempt, time_left)
                if isinstance(exc, RateLimitError):
                    self._pause_everyone(exc, delay)
                    delay = None if delay is None else 0.0  # the cool-down is the wait
                if delay is None or delay + self._cool_down.remaining() >= time_left:
                    raise
                reason = _retry_reason(exc)
                self.observer.retried(reason)
                log.info(
                    "retrying GET %s in %.2fs (retry %d of %d) after %s",
                    url,
                    delay + self._cool_down.remaining(),
                    attempt,
                    self.retry.max_retries,
                    exc,
                )
                await asyncio.sleep(delay)

    async def _wait_out_cool_down(self, deadline: float, loop: asyncio.AbstractEventLoop) -> None:
        """A loop: another 429 may push the end further while we sleep."""
        while (wait := self._cool_down_left(deadline - loop.time())) > 0:  # noqa: ASYNC110
            await asyncio.sleep(wait)

    def _pause_everyone(self, exc: RateLimitError, delay: float | None) -> None:
        """The host spoke for the whole client: every request waits, fan-outs included
        (capped, so a bogus ``Retry-After`` cannot disable the client for good)."""
        pause = exc.retry_after if exc.retry_after is not None else delay
        if pause:
            grown = self._cool_down.extend(min(pause, _MAX_COOL_DOWN))
            if grown:
                self.observer.rate_limited(grown)

    def _cool_down_left(self, time_left: float) -> float:
        """Seconds of 429 cool-down to wait out first; too long a one raises RateLimitError."""
        remaining = self._cool_down.remaining()
        if remaining > min(self.retry.max_retry_after, time_left):
            raise RateLimitError(
                f"the host asked us to wait {remaining:.1f}s after a 429",
                status=429,
                retry_after=remaining,
            )
        return remaining

    async def _attempt(
        self,
        session: aiohttp.ClientSession,
        url: URL,
        attempt: int,
        time_left: float,
        *,
        parse: Callable[[Any], T],
        peek: Callable[[bytes], T | None] | None,
    ) -> tuple[T, URL | None]:
        """One attempt under one timeout; aiohttp's errors become ours, unchained."""
        timeout = max(0.001, min(self._timeout, time_left))
        # Timing each hop is for the observer and the DEBUG log; with neither, no _Hop.
        hop = _Hop(self.observer) if self._observed or log.isEnabledFor(logging.DEBUG) else None
        try:
            async with asyncio.timeout(timeout):
                return await self._follow(session, url, attempt, hop, parse=parse, peek=peek)
        except TimeoutError as exc:
            if isinstance(exc, ACPError):
                raise
            if hop is not None:
                hop.end("timeout")
            log.debug("GET %s timed out (attempt %d)", url, attempt)
            failure: ACPError = APITimeoutError(f"timed out after {timeout:.3g}s")
        except aiohttp.ClientError as exc:
            if hop is not None:
                hop.end("connection")
            # Only the name and message: some aiohttp errors' repr carries the request
            # headers, and with them the token.
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            log.debug("GET %s failed (attempt %d): %s", url, attempt, reason)
            failure = APIConnectionError(f"connection failed: {reason}")
        finally:
            if hop is not None:
                hop.end()  # cancelled, or an error of ours: the request still ends once
        # Raised outside the except blocks, so neither __cause__ nor __context__ keeps
        # the aiohttp error (and its headers) alive.
        raise failure

    async def _follow(
        self,
        session: aiohttp.ClientSession,
        url: URL,
        attempt: int,
        hop: _Hop | None,
        *,
        parse: Callable[[Any], T],
        peek: Callable[[bytes], T | None] | None,
    ) -> tuple[T, URL | None]:
        """The request, and any redirects on our own origin; a 2xx whose body fails to
        read, decode or parse is an ``invalid`` request."""
        origin = self._origin
        for _ in range(_MAX_REDIRECTS + 1):
            if hop is not None:
                hop.start()
            async with session.get(url, **self._request_options) as response:
                if hop is not None:
                    hop.outcome = _status_outcome(response.status)
                try:
                    redirect = redirect_target(response, origin)
                    if redirect is None:
                        try:
                            reply = await read_reply(
                                response,
                                parse,
                                peek,
                                origin=origin,
                                limit=self._limit,
                                secret=self._secret,
                            )
                        except ResponseValidationError:
                            if hop is not None:
                                hop.outcome = "invalid"
                            raise
                        if hop is not None:
                            hop.end()
                        return reply
                finally:
                    if hop is not None and log.isEnabledFor(logging.DEBUG):
                        log.debug(
                            "GET %s -> %d (attempt %d, %.0f ms, request id %s)",
                            url,
                            response.status,
                            attempt,
                            hop.elapsed() * 1000,
                            request_id(response.headers),
                        )
            if hop is not None:
                hop.end()
            url = redirect
        raise status_error(response, f"more than {_MAX_REDIRECTS} redirects")


def _proxy_credentials(config: ClientConfig) -> dict[str, Any]:
    """Request options that send the proxy's credentials as ``Proxy-Authorization``.

    To an https origin the proxy sees only the ``CONNECT``: aiohttp sends
    ``proxy_headers`` there. To an http origin the request itself goes to the proxy, and
    aiohttp does not add ``proxy_headers`` to it, so the header rides with the request's
    own (a proxy strips it). Same-origin redirects never change the scheme.
    """
    value = {"Proxy-Authorization": config.proxy_authorization or ""}
    if config.base_url.scheme == "https":
        return {"proxy_headers": CIMultiDictProxy(CIMultiDict(value))}
    return {"headers": CIMultiDictProxy(CIMultiDict({**config.headers, **value}))}


class Later(Generic[T]):
    """A 2xx answer of ``Transport.get_later``: ``value()`` decodes and parses its body (once)."""

    __slots__ = ("_parse", "_unread", "_url", "_value")

    def __init__(
        self, url: URL, unread: Unread | None, parse: Callable[[Any], T], value: T | None
    ) -> None:
        self._url = url
        self._unread = unread
        self._parse = parse
        self._value = value

    def value(self) -> T:
        """The parsed value, or the ACPError (``.url`` set, as ``get`` sets it) reading the
        body at once would have raised."""
        unread = self._unread
        if unread is None:
            return self._value  # type: ignore[return-value]  # parsed when received
        try:
            self._value = self._parse(unread.decoded())
        except ACPError as exc:
            exc.url = str(self._url)
            raise
        self._unread = None
        return self._value


def _unparsed(value: Any) -> Any:
    raise AssertionError("keep_body keeps every body: nothing is decoded to parse")


class _Hop:
    """One HTTP request on the wire, reported to the observer exactly once as it ends."""

    __slots__ = ("_loop", "_observer", "_started", "outcome")

    def __init__(self, observer: Observer) -> None:
        self._observer = observer
        self._loop = asyncio.get_running_loop()
        self._started: float | None = None
        self.outcome: RequestOutcome = "connection"

    def start(self) -> None:
        self._observer.request_started()
        self._started = self._loop.time()
        self.outcome = "connection"

    def elapsed(self) -> float:
        return 0.0 if self._started is None else self._loop.time() - self._started

    def end(self, outcome: RequestOutcome | None = None) -> None:
        if self._started is not None:
            self._observer.request_finished(outcome or self.outcome, self.elapsed())
            self._started = None


_OUTCOMES: dict[int, RequestOutcome] = {2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}


def _status_outcome(status: int) -> RequestOutcome:
    return _OUTCOMES.get(status // 100, "invalid")


def _retry_reason(exc: ACPError) -> str:
    if isinstance(exc, APIStatusError):
        return str(exc.status)
    return "timeout" if isinstance(exc, APITimeoutError) else "connection"
