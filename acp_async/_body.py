"""Reading a response body without ever holding more than a cap of it.

aiohttp has no body cap of its own, and its decompressor may inflate one network
chunk to tens of MiB before a caller can count. So we ask for the raw bytes and
inflate them here, never more than the cap plus one byte at a time.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import aiohttp

from .errors import ResponseValidationError

_ENCODINGS = {"gzip", "x-gzip", "deflate"}
_AUTO_HEADER = 32 + zlib.MAX_WBITS  # accept a gzip or a zlib header


async def read_capped(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The decoded body, or ResponseValidationError once it would exceed ``limit`` bytes."""
    length = response.content_length
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if length is not None and length > limit:
        raise _too_large(response, limit, f"of {length} bytes ")
    if encoding == "identity":
        if length is not None:
            return await response.read()  # exactly Content-Length bytes, already checked
        return await _read_plain(response, limit)
    if encoding not in _ENCODINGS:
        raise ResponseValidationError(
            f"GET {response.url}: unsupported Content-Encoding {encoding!r}"
        )
    return await _inflate(response, limit)


async def _read_plain(response: aiohttp.ClientResponse, limit: int) -> bytes:
    body = bytearray()
    async for chunk in response.content.iter_any():
        body += chunk
        if len(body) > limit:
            raise _too_large(response, limit)
    return bytes(body)


async def _inflate(response: aiohttp.ClientResponse, limit: int) -> bytes:
    inflater = _Inflater(response.headers["Content-Encoding"].strip().lower(), limit)
    body = bytearray()
    try:
        async for chunk in response.content.iter_any():
            for piece in inflater.feed(chunk):
                body += piece
                if len(body) > limit:
                    raise _too_large(response, limit, "(decompressed) ")
    except zlib.error as exc:
        raise ResponseValidationError(
            f"GET {response.url}: body is not valid {inflater.encoding}: {exc}"
        ) from None
    if not inflater.finished:
        raise ResponseValidationError(f"GET {response.url}: {inflater.encoding} body ends early")
    return bytes(body)


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


def _too_large(
    response: aiohttp.ClientResponse, limit: int, what: str = ""
) -> ResponseValidationError:
    return ResponseValidationError(
        f"GET {response.url}: response {what}exceeds max_response_bytes={limit}"
    )
