"""Faults: queued by a test, or drawn at random, and sent the way a broken peer sends them.

The kinds, consumed in the order they were queued::

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

import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Final

import attrs
from aiohttp import web

from ._answer import Answer, error, phrase
from ._log import Outcome

__all__ = ("Fault", "Faults", "drop", "fault_answer", "send_slowly")

_KINDS: Final = frozenset(
    {"status", "html", "malformed", "truncated", "drop", "stall", "latency", "redirect"}
)
# Kinds whose `delay` has a meaning of its own when the caller gives none.
_DEFAULT_DELAYS: Final = {"stall": 30.0, "latency": 1.0}
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
_MALFORMED_BODY: Final = b'{"object": "list", "data": [{"id": "run-'
_HTML_PAGE: Final = (
    "<html>\r\n<head><title>{code} {phrase}</title></head>\r\n<body>\r\n"
    "<center><h1>{code} {phrase}</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


@attrs.define
class Fault:
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


class Faults:
    """The queue of scripted faults, and the random ones at ``rate``."""

    def __init__(self, *, seed: int, rate: float) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError("fault_rate must be between 0 and 1")
        self._rate = rate
        # A stream of its own, so drawing faults never changes the seeded data.
        self._rng = random.Random(f"{seed}:faults")
        self._queue: list[Fault] = []

    def add(
        self,
        kind: str,
        *,
        status: int,
        times: int,
        server_id: str | None,
        retry_after: str | None,
        delay: float | None,
        body: bytes | None,
        headers: Mapping[str, str] | None,
    ) -> None:
        """Queue a fault after checking it; see `FakeACPServer.fail`."""
        if kind not in _KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; use one of {sorted(_KINDS)}")
        if isinstance(times, bool) or not isinstance(times, int) or times < 1:
            raise ValueError("times must be an int >= 1")
        if not 100 <= status <= 599:
            raise ValueError("status must be an HTTP status code (100..599)")
        if delay is not None and delay < 0:
            raise ValueError("delay must be >= 0")
        extra = dict(headers or {})
        if kind == "redirect" and not any(name.lower() == "location" for name in extra):
            raise ValueError('a "redirect" fault needs headers={"Location": ...}')
        self._queue.append(
            Fault(
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

    def take(self, server_id: str) -> Fault | None:
        """The first queued fault for this server, else maybe a random one."""
        for index, fault in enumerate(self._queue):
            if fault.matches(server_id):
                fault.remaining -= 1
                if fault.remaining == 0:
                    del self._queue[index]
                return fault
        if self._rate and self._rng.random() < self._rate:
            kind, status = self._rng.choice(_RANDOM_FAULTS)
            return Fault(
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


def fault_answer(fault: Fault) -> Answer:
    """The response a "status", "html", "malformed" or "redirect" fault sends."""
    headers = dict(fault.headers)
    if fault.kind == "malformed":
        return Answer(200, fault.body or _MALFORMED_BODY, headers=headers)
    if fault.kind == "redirect":
        status = fault.status if 300 <= fault.status < 400 else 302
        return Answer(status, fault.body or b"", content_type="text/plain", headers=headers)
    if fault.retry_after is not None:
        headers = {"Retry-After": fault.retry_after, **headers}
    said = phrase(fault.status)
    if fault.kind == "html":
        page = _HTML_PAGE.format(code=fault.status, phrase=said).encode()
        return Answer(fault.status, fault.body or page, "text/html; charset=utf-8", headers)
    kind = said.lower().replace(" ", "_").replace("-", "_")
    answer = error(fault.status, kind, f"Injected {fault.status} {said}", f"fake_{kind}")
    return attrs.evolve(answer, body=fault.body or answer.body, headers=headers)


def drop(request: web.Request) -> web.Response:
    """Close the connection; bytes already written are flushed first.

    The returned response is never sent: aiohttp's attempt to write it meets
    the closed transport, which it treats as a client disconnect (3.13, 3.14).
    """
    transport = request.transport
    if transport is not None:
        transport.close()
    return web.Response()


async def send_slowly(
    request: web.Request,
    answer: Answer,
    *,
    headers: Mapping[str, str],
    fault: Fault,
    outcome: Outcome,
    pause: Callable[[float], Awaitable[bool]],
) -> web.StreamResponse:
    """Send the headers and half the body, then cut ("truncated") or wait ("stall").

    The Content-Length announces the whole body, so a client that gets less
    sees an incomplete payload rather than a short valid one. ``pause`` waits
    and says whether to go on (False: the server is closing).
    """
    response = web.StreamResponse(status=answer.status, headers=headers)
    response.content_length = len(answer.body)
    half = len(answer.body) // 2
    await response.prepare(request)
    outcome.status = answer.status
    try:
        await response.write(answer.body[:half])
        if fault.kind == "stall" and await pause(fault.delay):
            await response.write(answer.body[half:])
            return response
    except ConnectionError:
        pass  # the client went away; there is nothing left to cut
    drop(request)
    return response
