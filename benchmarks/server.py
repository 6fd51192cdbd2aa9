"""The load server: a minimal HTTP/1.1 keep-alive server answering every GET with one
pre-serialised page, in its own process, so it is never the bottleneck.

Run as ``python -m benchmarks.server [--runs N] [--delay S] [--tls-cert C --tls-key K]
[--gzip]``;
it prints its port on stdout. uvloop is used when installed. ``--delay`` answers each
request that many seconds late (a WAN round trip); with a certificate it serves https.
``LoadServer`` starts it, pins it to a core and reports its CPU time.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import os
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from . import tls
from .payload import page_bytes

ROOT = Path(__file__).resolve().parent.parent


def _response(body: bytes, *, gzipped: bool = False) -> bytes:
    head = ["HTTP/1.1 200 OK", "Content-Type: application/json"]
    if gzipped:
        body = gzip.compress(body)
        head.append("Content-Encoding: gzip")
    head += [f"Content-Length: {len(body)}", "Connection: keep-alive", "", ""]
    return "\r\n".join(head).encode() + body


class _Http(asyncio.Protocol):
    """Answers each request (headers only: GETs have no body) with the same bytes."""

    def __init__(self, answer: bytes, delay: float) -> None:
        self._answer = answer
        self._delay = delay
        self._buffer = b""
        self._transport: Any = None

    def connection_made(self, transport: Any) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        answers = self._buffer.count(b"\r\n\r\n")
        if answers and self._transport is not None:
            self._buffer = self._buffer[self._buffer.rfind(b"\r\n\r\n") + 4 :]
            if self._delay:
                asyncio.get_running_loop().call_later(self._delay, self._write, answers)
            else:
                self._transport.write(self._answer * answers)

    def _write(self, answers: int) -> None:
        if not self._transport.is_closing():
            self._transport.write(self._answer * answers)


async def _serve(
    runs: int, delay: float, context: ssl.SSLContext | None, *, gzipped: bool = False
) -> None:
    answer = _response(page_bytes(runs), gzipped=gzipped)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Http(answer, delay), "127.0.0.1", 0, backlog=1024, ssl=context
    )
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--delay", type=float, default=0.0)
    parser.add_argument("--tls-cert", type=Path)
    parser.add_argument("--tls-key", type=Path)
    parser.add_argument("--gzip", action="store_true", help="send the page gzip-encoded")
    args = parser.parse_args()
    context = tls.server_context(args.tls_cert, args.tls_key) if args.tls_cert else None
    serve = _serve(args.runs, args.delay, context, gzipped=args.gzip)
    try:
        import uvloop  # noqa: PLC0415 - optional
    except ImportError:
        asyncio.run(serve)
    else:
        uvloop.run(serve)


def pin(pid: int, cpus: set[int]) -> bool:
    """Pin ``pid`` to ``cpus`` where the platform allows it."""
    if not hasattr(os, "sched_setaffinity"):
        return False
    try:
        os.sched_setaffinity(pid, cpus)
    except OSError:
        return False
    return True


def usable_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


class LoadServer:
    """``with LoadServer() as server:`` a started load server; ``server.base_url``."""

    def __init__(
        self,
        runs: int = 20,
        *,
        pin_cores: bool = True,
        tls: bool = False,
        delay: float = 0.0,
        gzipped: bool = False,
    ) -> None:
        self._runs = runs
        self._pin = pin_cores
        self._tls = tls
        self._delay = delay
        self._gzip = gzipped
        self._certs: tempfile.TemporaryDirectory[str] | None = None
        self.ssl_context: ssl.SSLContext | None = None  # what clients trust (https only)
        self.pinned = False
        self.uvloop = _has_uvloop()
        self._process: subprocess.Popen[str] | None = None
        self.base_url = ""
        self._original_cpus: list[int] = []

    def __enter__(self) -> Self:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        command = [sys.executable, "-m", "benchmarks.server", "--runs", str(self._runs)]
        command += ["--delay", str(self._delay)]
        if self._gzip:
            command.append("--gzip")
        if self._tls:
            self._certs = tempfile.TemporaryDirectory(prefix="acp-bench-")
            cert, key = tls.make_certificate(Path(self._certs.name))
            command += ["--tls-cert", str(cert), "--tls-key", str(key)]
            self.ssl_context = tls.client_context(cert)
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        assert self._process.stdout is not None
        port = int(self._process.stdout.readline())
        self.base_url = f"{'https' if self._tls else 'http'}://127.0.0.1:{port}"
        cpus = self._original_cpus = usable_cpus()
        if self._pin and len(cpus) >= 2:
            # The server gets the last core, this process (the client) the others.
            self.pinned = pin(self._process.pid, {cpus[-1]}) and pin(0, set(cpus[:-1]))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process is not None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            if self._process.stdout is not None:
                self._process.stdout.close()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        if self.pinned:
            pin(0, set(self._original_cpus))
        if self._certs is not None:
            self._certs.cleanup()

    def cpu_seconds(self) -> float | None:
        """User + system CPU time the server has used so far (Linux), else None."""
        if self._process is None:
            return None
        try:
            fields = Path(f"/proc/{self._process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        ticks = int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401, PLC0415
    except ImportError:
        return False
    return True


class Stopwatch:
    """Wall time of a block, and the server's CPU share over it."""

    def __init__(self, server: LoadServer) -> None:
        self._server = server
        self.seconds = 0.0
        self.server_cpu_share: float | None = None

    def __enter__(self) -> Self:
        self._cpu = self._server.cpu_seconds()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self._start
        cpu = self._server.cpu_seconds()
        if cpu is not None and self._cpu is not None and self.seconds > 0:
            self.server_cpu_share = (cpu - self._cpu) / self.seconds


if __name__ == "__main__":
    main()
