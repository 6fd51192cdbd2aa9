"""A small forwarding HTTP proxy on 127.0.0.1, for the proxy tests: loopback only.

It forwards absolute-form requests (``GET http://127.0.0.1:P/... HTTP/1.1``, what a client
sends a proxy for an http:// URL) one per connection, and tunnels ``CONNECT host:port``
(what a client sends for an https:// URL). It records each request's line and its
``Proxy-Authorization``, and answers 407 when ``credentials`` are set and not given.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from types import TracebackType
from typing import Self

import attrs
from yarl import URL

LOOPBACK = ("127.0.0.1", "localhost", "::1")


@attrs.frozen
class Seen:
    """One request the proxy received."""

    method: str
    target: str
    proxy_authorization: str | None


class ForwardProxy:
    """``async with ForwardProxy() as proxy:``; ``proxy.url`` is ``http://127.0.0.1:P``."""

    def __init__(self, credentials: tuple[str, str] | None = None) -> None:
        self.seen: list[Seen] = []
        self._expected = None
        if credentials is not None:
            pair = f"{credentials[0]}:{credentials[1]}".encode()
            self._expected = "Basic " + base64.b64encode(pair).decode()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        request_line, *header_lines = head.decode("latin-1").split("\r\n")[:-2]
        method, target, version = request_line.split(" ")
        headers = [line.split(":", 1) for line in header_lines]
        auth = next((v.strip() for k, v in headers if k.lower() == "proxy-authorization"), None)
        self.seen.append(Seen(method, target, auth))
        if self._expected is not None and auth != self._expected:
            writer.write(
                b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                b'Proxy-Authenticate: Basic realm="test"\r\n'
                b"Content-Length: 0\r\nConnection: close\r\n\r\n"
            )
            await writer.drain()
            return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            await self._tunnel(host.strip("[]"), int(port), reader, writer, b"")
            return
        url = URL(target)
        assert url.is_absolute(), target
        kept = [
            f"{k}:{v}"
            for k, v in headers
            if not k.lower().startswith("proxy-") and k.lower() != "connection"
        ]
        forwarded = "\r\n".join(
            [f"{method} {url.raw_path_qs} {version}", *kept, "Connection: close", "", ""]
        ).encode("latin-1")
        await self._tunnel(url.host or "", url.port or 80, reader, writer, forwarded)

    async def _tunnel(
        self,
        host: str,
        port: int,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        first: bytes,
    ) -> None:
        """Pipe both ways to ``host:port`` (loopback only) until either side closes."""
        assert host in LOOPBACK, f"the test proxy only reaches loopback, not {host}"
        up_reader, up_writer = await asyncio.open_connection(host, port)
        if first:
            up_writer.write(first)
        else:
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            with contextlib.suppress(ConnectionError, OSError):
                sink.write_eof()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            up_writer.close()
            with contextlib.suppress(ConnectionError):
                await up_writer.wait_closed()
