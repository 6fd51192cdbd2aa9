"""Reading one HTTP response: its body under a cap, its status as an error, its JSON, its
``Link: rel="next"``, its request id, and where a redirect may lead.

aiohttp has no body cap of its own, and its decompressor may inflate one network
chunk to tens of MiB before a caller can count. So we ask for the raw bytes and
inflate them here, never more than the cap plus one byte at a time.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import aiohttp
from multidict import CIMultiDictProxy
from yarl import URL

from . import _json
from ._log import log
from ._retry import parse_retry_after
from .errors import APIStatusError, ResponseValidationError, status_error_class

_REQUEST_ID_HEADERS = ("X-Request-Id", "Request-Id")

T = TypeVar("T")


async def read_reply(
    response: aiohttp.ClientResponse,
    parse: Callable[[Any], T],
    peek: Callable[[bytes], T | None] | None,
    *,
    origin: URL,
    limit: int,
    secret: bytes,
) -> tuple[T, URL | None]:
    """The caller's value from a 2xx body and the same-origin ``Link: rel="next"`` (if
    any), or the error the status or the body calls for.

    ``peek`` sees the body's bytes first: what it returns (not None) is the value, and the
    body is not decoded; else ``parse`` turns the decoded JSON into it. ``secret`` (the
    token) is blanked out of error bodies before anything is read from them.
    """
    status = response.status
    try:
        body = await read_capped(response, limit)
    except ResponseValidationError:
        if status < 400:
            raise
        # An error page we cannot read (too large, a broken gzip from a proxy) is still
        # the status it came with: retried or not as that status is.
        body = b""
    if status >= 400:
        raise _error_from_body(response, body, secret)
    if status >= 300 or status < 200:
        raise status_error(response, f"unexpected status {status}")
    if peek is not None:
        early: Any = peek(body)
        if peek is keep_body:  # with what decoding it later needs to explain a failure
            early.content_type = response.headers.get("Content-Type")
        if early is not None:
            return early, _next_link(response, origin)
    try:
        value = _json.loads(body)
    except _json.DECODE_ERRORS as exc:
        raise _not_json(body, response.headers.get("Content-Type"), exc) from None
    return parse(value), _next_link(response, origin)


class Unread:
    """A 2xx body kept as bytes, to be decoded where its value is used (``decoded()``)."""

    __slots__ = ("body", "content_type")

    def __init__(self, body: bytes, content_type: str | None) -> None:
        self.body = body
        self.content_type = content_type

    def decoded(self) -> Any:
        """The body's JSON, or the ResponseValidationError reading it at once would raise."""
        try:
            return _json.loads(self.body)
        except _json.DECODE_ERRORS as exc:
            raise _not_json(self.body, self.content_type, exc) from None


def keep_body(body: bytes) -> Unread:
    """A ``peek`` that keeps the body undecoded (``read_reply`` adds its content type)."""
    return Unread(body, None)


def _not_json(body: bytes, content_type: str | None, exc: Exception) -> ResponseValidationError:
    kind = content_type or "no content type"
    return ResponseValidationError(
        f"response is not valid JSON ({kind}, {len(body)} bytes): {type(exc).__name__}"
    )


def redirect_target(response: aiohttp.ClientResponse, origin: URL) -> URL | None:
    """Where a 3xx points on ``origin``; a redirect elsewhere would carry the token away."""
    if not 300 <= response.status < 400:
        return None
    location = response.headers.get("Location")
    target = _resolve(response.url, location) if location else None
    if target is None:
        raise status_error(response, f"redirect {response.status} without a usable Location")
    if not same_origin(target, origin):
        raise status_error(
            response, f"refusing to follow a redirect to another origin ({target.origin()})"
        )
    return target


def same_origin(a: URL, b: URL) -> bool:
    """Scheme, host and port alike (an explicit default port is the same origin)."""
    return (a.scheme, a.host, a.port) == (b.scheme, b.host, b.port)


def request_id(headers: CIMultiDictProxy[str]) -> str | None:
    for name in _REQUEST_ID_HEADERS:
        if value := headers.get(name):
            return value
    return None


def status_error(response: aiohttp.ClientResponse, message: str) -> APIStatusError:
    return APIStatusError(message, status=response.status, request_id=request_id(response.headers))


def _next_link(response: aiohttp.ClientResponse, origin: URL) -> URL | None:
    if "Link" not in response.headers:
        return None  # the usual case; ``response.links`` parses and allocates
    try:
        link = response.links.get("next")
    except ValueError:  # a header yarl cannot parse: no next page we can trust
        link = None
    target = _resolve(response.url, str(link.get("url", ""))) if link else None
    if target is None:
        return None
    if not same_origin(target, origin):
        log.warning("ignoring a Link rel=next to another origin (%s)", target.origin())
        return None
    return target


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


def _error_from_body(
    response: aiohttp.ClientResponse, body: bytes, secret: bytes
) -> APIStatusError:
    """Map a status to its error class, reading the API's JSON error body when there is one.

    A server or proxy may echo the request's token back, as it is or JSON-escaped: it is
    blanked out of the body, and again out of every decoded string (message, details,
    reason, request id), before anything is kept.
    """
    token = secret.decode()
    for spelling in _spellings(token):
        body = body.replace(spelling, b"***")
    text = _scrub(body.decode("utf-8", errors="replace"), token)
    try:
        decoded = _json.loads(body)
    except _json.DECODE_ERRORS:
        decoded = payload = None
    else:
        payload = _scrub(decoded, token)
        if payload != decoded:  # spelled some other way in the text: keep the clean form
            text = json.dumps(payload, ensure_ascii=False)
    fields = payload if isinstance(payload, dict) else {}
    reason = _scrub(response.reason, token)
    message = _text(fields.get("message")) or _text(fields.get("error")) or reason
    return status_error_class(response.status)(
        message or f"HTTP {response.status}",
        status=response.status,
        code=_text(fields.get("code")),
        details=fields.get("details"),
        request_id=_scrub(request_id(response.headers), token),
        body=text,
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
    )


def _spellings(token: str) -> set[bytes]:
    """The token as a body may carry it: raw, JSON-escaped, with ``/`` escaped too."""
    escaped = json.dumps(token)[1:-1]
    return {s.encode() for s in (token, escaped, escaped.replace("/", "\\/")) if s}


def _scrub(value: Any, token: str) -> Any:
    """``value`` with the token blanked out of every string in it, at any depth."""
    if isinstance(value, str):
        return value.replace(token, "***") if token and token in value else value
    if isinstance(value, list):
        return [_scrub(item, token) for item in value]
    if isinstance(value, dict):
        return {_scrub(key, token): _scrub(item, token) for key, item in value.items()}
    return value


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


_ENCODINGS = {"gzip", "x-gzip", "deflate"}
_AUTO_HEADER = 32 + zlib.MAX_WBITS  # accept a gzip or a zlib header


async def read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The decoded body, or ResponseValidationError once it would exceed ``limit`` bytes.

    A body whose ``Content-Length`` is within the cap is read in one call (then inflated,
    if compressed); one without is read chunk by chunk and counted as it comes.
    """
    length = response.content_length
    if length is not None and length > limit:
        raise _too_large(limit, f"of {length} bytes ")
    coding = response.headers.get("Content-Encoding")
    encoding = "identity" if coding is None else coding.strip().lower()
    if encoding == "identity":
        if length is not None:
            return await response.read()  # exactly Content-Length bytes, already checked
        return await _read_plain(response, limit)
    if encoding not in _ENCODINGS:
        raise ResponseValidationError(f"unsupported Content-Encoding {encoding!r}")
    return await _inflate(response, encoding, limit, whole=length is not None)


async def _read_plain(response: aiohttp.ClientResponse, limit: int) -> bytes:
    body = bytearray()
    async for chunk in response.content.iter_any():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


async def _inflate(
    response: aiohttp.ClientResponse, encoding: str, limit: int, *, whole: bool
) -> bytes:
    """The inflated body, never more than ``limit`` + 1 bytes of it; ``whole``: the
    compressed body is known to be within the cap, so it is read in one call."""
    inflater = _Inflater(encoding, limit)
    body = bytearray()
    try:
        if whole:
            _inflate_into(body, inflater, await response.read(), limit)
        else:
            async for chunk in response.content.iter_any():
                _inflate_into(body, inflater, chunk, limit)
    except zlib.error as exc:
        raise ResponseValidationError(f"body is not valid {inflater.encoding}: {exc}") from None
    if not inflater.finished:
        raise ResponseValidationError(f"{inflater.encoding} body ends early")
    return bytes(body)


def _inflate_into(body: bytearray, inflater: _Inflater, chunk: bytes, limit: int) -> None:
    for piece in inflater.feed(chunk):
        body += piece
        if len(body) > limit:
            raise _too_large(limit, "(decompressed) ")


class _Inflater:
    """gzip (several members too), zlib-wrapped deflate, or raw deflate as some servers send."""

    def __init__(self, encoding: str, limit: int) -> None:
        self.encoding = encoding
        self._zlib = zlib.decompressobj(_AUTO_HEADER)
        self._started = False
        self._room = limit + 1  # never inflate more than this in all: a bomb stops here

    @property
    def finished(self) -> bool:
        return self._zlib.eof

    def feed(self, data: bytes) -> Iterator[bytes]:
        while data and self._room > 0:
            if self._zlib.eof:  # another gzip member follows the last one
                self._zlib = zlib.decompressobj(_AUTO_HEADER)
            try:
                piece = self._zlib.decompress(data, self._room)
            except zlib.error:
                if self._started or self.encoding != "deflate":
                    raise
                self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)  # raw deflate: no header
                piece = self._zlib.decompress(data, self._room)
            self._started = True
            self._room -= len(piece)
            yield piece
            data = self._zlib.unconsumed_tail or self._zlib.unused_data


def _too_large(limit: int, what: str = "") -> ResponseValidationError:
    return ResponseValidationError(f"response {what}exceeds max_response_bytes={limit}")
