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


class RedisServer:
    """One redis-server process with the append-only file on, in its own directory."""

    def __init__(self, directory: Path, *, fsync: str = "everysec") -> None:
        self.binary = require_redis_server()
        self.directory = directory
        self.port = free_port()
        self.fsync = fsync
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
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
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait(up=True)

    def _wait(self, *, up: bool, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                    sock.sendall(b"PING\r\n")
                    answer = sock.recv(64)
                if up and answer.startswith(b"+PONG"):
                    return
            except OSError:
                if not up:
                    return
            time.sleep(0.02)
        raise TimeoutError(
            f"redis-server on port {self.port} did not come {'up' if up else 'down'}"
        )

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
