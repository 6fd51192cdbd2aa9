"""A TCP proxy in front of a real redis-server that cuts one connection at a chosen
command: a real connection drop at the moment a test needs, not a mock of Redis."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator


class CuttingProxy:
    """Forwards every connection to ``127.0.0.1:port``. ``cut_request(needle)``: the next
    command whose bytes hold ``needle`` is not sent and its connection is dropped;
    ``cut_reply(needle)``: that command is sent (Redis runs it), its reply is swallowed
    and the connection dropped. Either once; ``cuts`` counts the cuts made.

    Each connection carries one command at a time (redis-py's, no pipeline), so the first
    bytes back after a command are its reply."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._needle = b""
        self._reply = False  # cut the reply, not the request
        self.cuts = 0
        self.port = 0

    def cut_request(self, needle: bytes) -> None:
        self._needle, self._reply = needle, False

    def cut_reply(self, needle: bytes) -> None:
        self._needle, self._reply = needle, True

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[CuttingProxy]:
        tasks: set[asyncio.Task[None]] = set()

        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            try:
                await self._serve(reader, writer)
            finally:
                tasks.discard(task)

        server = await asyncio.start_server(accept, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        try:
            async with server:
                yield self
                server.close()
                for task in list(tasks):
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            self.port = 0

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            redis_r, redis_w = await asyncio.open_connection("127.0.0.1", self._port)
        except BaseException:
            client_w.close()
            raise
        swallow = asyncio.Event()  # the reply on its way back is to be cut

        async def upstream() -> None:
            tail = b""
            while data := await client_r.read(65536):
                seen = tail + data
                tail = seen[len(seen) - len(self._needle) + 1 :] if self._needle else b""
                if self._needle and self._needle in seen:
                    self._needle = b""
                    if not self._reply:
                        self.cuts += 1
                        return  # not sent: the connection is dropped
                    swallow.set()
                redis_w.write(data)
                await redis_w.drain()

        async def downstream() -> None:
            while data := await redis_r.read(65536):
                if swallow.is_set():
                    self.cuts += 1
                    return  # Redis ran the command; its reply is lost
                client_w.write(data)
                await client_w.drain()

        pumps = [asyncio.ensure_future(upstream()), asyncio.ensure_future(downstream())]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            for writer in (client_w, redis_w):
                writer.transport.abort()  # a drop, not a clean close
                writer.close()
