"""A real ``redis-server`` (Debian's package) on a free loopback port, for the fleet tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server")


def require_redis_server() -> str:
    """The binary; missing is a skip on a developer's machine and a failure in CI."""
    if REDIS_SERVER is None:
        message = "redis-server is not installed (make test installs Debian's redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return REDIS_SERVER


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ask(port: int, command: bytes) -> bytes:
    """One command's whole reply (a bulk string), read over a fresh connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
        sock.sendall(command)
        reply = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return reply
            reply += chunk
            if b"\r\n" not in reply:
                continue
            header, _, body = reply.partition(b"\r\n")
            if not header.startswith(b"$") or len(body) >= int(header[1:]) + 2:
                return reply


class RedisServer:
    """One redis-server process with the append-only file on, in its own directory."""

    def __init__(self, directory: Path, *, fsync: str = "everysec") -> None:
        self.binary = require_redis_server()
        self.directory = directory
        self.port = free_port()
        self.fsync = fsync
        self.process: subprocess.Popen[bytes] | None = None
        self.started = False  # once started, restarts keep the port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start redis-server and wait until it answers; the first start takes another free
        port if someone took this one since it was chosen (another xdist worker's server,
        say). A restart keeps the port: clients hold its URL."""
        tries = 1 if self.started else 5
        for _ in range(tries):
            self.process = subprocess.Popen(
                self._args(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            if self._wait_until_up():
                self.started = True
                return
            if not self.started:
                self.port = free_port()
        log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"redis-server did not start on port {self.port}:\n{log}")

    def _args(self) -> list[str]:
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--appendonly", "yes",
            "--appendfsync", self.fsync,
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip

    def _wait_until_up(self, timeout: float = 10.0) -> bool:
        """True once our own process answers on the port (its pid, from ``INFO server``:
        not another redis-server that holds the port); False if ours exited (the port was
        taken)."""
        assert self.process is not None
        pid = f"process_id:{self.process.pid}\r\n".encode()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                if pid in _ask(self.port, b"INFO server\r\n"):
                    return True
            except OSError:
                pass
            time.sleep(0.02)
        self.kill()
        raise TimeoutError(f"redis-server on port {self.port} did not come up")

    def stop(self) -> None:
        """A graceful stop (SIGTERM: Redis flushes its append-only file)."""
        if self.process is not None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=10)
            self.process = None

    def kill(self) -> None:
        """SIGKILL: what the append-only file holds is all that survives."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
            self.process = None
