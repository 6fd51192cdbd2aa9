"""Reading a response body without ever holding more than a cap of it.

aiohttp has no body cap of its own, and its decompressor may inflate one network
chunk to tens of MiB before a caller can count. So we ask for the raw bytes and
inflate them here, never more than the cap plus one byte at a time.
"""

from __future__ import annotations

import zlib

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
    inflater = zlib.decompressobj(_AUTO_HEADER)
    body = bytearray()
    try:
        async for chunk in response.content.iter_any():
            data = chunk
            while data:
                # max_length bounds what one call may produce: a bomb stops at limit + 1.
                body += inflater.decompress(data, limit + 1 - len(body))
                if len(body) > limit:
                    raise _too_large(response, limit, "(decompressed) ")
                data = inflater.unconsumed_tail
        body += inflater.flush()
    except zlib.error as exc:
        raise ResponseValidationError(
            f"GET {response.url}: body is not valid {response.headers['Content-Encoding']}: {exc}"
        ) from None
    if len(body) > limit:
        raise _too_large(response, limit, "(decompressed) ")
    return bytes(body)


def _too_large(
    response: aiohttp.ClientResponse, limit: int, what: str = ""
) -> ResponseValidationError:
    return ResponseValidationError(
        f"GET {response.url}: response {what}exceeds max_response_bytes={limit}"
    )
