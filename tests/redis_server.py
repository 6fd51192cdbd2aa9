"""Real Redis deployments on loopback for the fleet tests, from Debian's packages.

- `RedisServer`: one redis-server (or valkey-server) process on a free port, with the
  append-only file on, in its own directory; optionally TLS with a CA made at test time.
- `RedisCluster`: three such nodes made into a Redis Cluster (3 masters, no replicas)
  by ``redis-cli --cluster create``.
- `RedisSentinel`: a master, a replica and one sentinel (quorum 1) that can fail over;
  optionally with passwords (``requirepass``/``masterauth`` on the master and the replica,
  and one of the sentinel's own).

A server counts as started only when ``INFO server`` on its port reports its own pid:
xdist workers choose ports at the same time, and another worker's server may hold ours.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import attrs
import pytest

if TYPE_CHECKING:
    from acp_async.fleet import RedisFleet

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
VALKEY_SERVER = shutil.which("valkey-server")
# Redis 7.0 refuses a cluster node port whose bus port (port + 10000) would not fit.
_HIGHEST_CLUSTER_PORT = 55535


def require(binary: str | None, name: str, package: str) -> str:
    """The binary; missing is a skip on a developer's machine and a failure in CI."""
    if binary is None:
        message = f"{name} is not installed (make test installs Debian's {package})"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return binary


def require_redis_server() -> str:
    return require(REDIS_SERVER, "redis-server", "redis-server")


def free_port(*, below: int = 65536) -> int:
    """A port nobody listens on now (another process may still take it: callers retry)."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port < below:
            return port


def _ask(
    port: int, command: bytes, tls: ssl.SSLContext | None = None, password: str | None = None
) -> bytes:
    """One command's whole reply (a bulk string), read over a fresh connection (after
    ``AUTH password``, whose ``+OK`` is not part of the reply)."""
    with contextlib.ExitStack() as stack:
        sock = stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=0.5))
        if tls is not None:  # the TLS socket takes the connection over: it is closed too
            sock = stack.enter_context(tls.wrap_socket(sock, server_hostname="127.0.0.1"))
        auth = b"" if password is None else f"AUTH {password}\r\n".encode()
        sock.sendall(auth + command)
        reply = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return reply
            reply += chunk
            if auth and reply.startswith(b"+OK\r\n"):
                reply, auth = reply.removeprefix(b"+OK\r\n"), b""
            if b"\r\n" not in reply:
                continue
            header, _, body = reply.partition(b"\r\n")
            if not header.startswith(b"$") or len(body) >= int(header[1:]) + 2:
                return reply


@attrs.frozen
class TLSFiles:
    """A private CA and a server certificate for 127.0.0.1 signed by it."""

    ca: Path
    certificate: Path
    key: Path

    @classmethod
    def make(cls, directory: Path) -> TLSFiles:
        openssl = require(shutil.which("openssl"), "openssl", "openssl")
        ca, ca_key = directory / "ca.crt", directory / "ca.key"
        csr, certificate, key = (
            directory / "server.csr",
            directory / "server.crt",
            directory / "server.key",
        )
        extensions = directory / "san.cnf"
        # What Python 3.13's default context demands (VERIFY_X509_STRICT): key usages on
        # both, a key identifier naming the CA's, and the leaf marked as no CA.
        extensions.write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
            "subjectKeyIdentifier=hash\n"
            "authorityKeyIdentifier=keyid,issuer\n"
        )
        for args in (
            ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
             "-days", "2", "-subj", "/CN=acp-async test CA",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
            ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
             "-subj", "/CN=127.0.0.1"],
            ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
             "-out", certificate, "-days", "2", "-extfile", extensions],
        ):  # fmt: skip
            subprocess.run([openssl, *map(str, args)], check=True, capture_output=True)
        return cls(ca=ca, certificate=certificate, key=key)

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


@attrs.frozen
class FleetRedis:
    """A deployment the fleet tests run on (``single``, ``cluster`` or ``valkey``): how a
    fleet, a CLI command and its environment reach it."""

    kind: str
    url: str
    cluster: bool = False

    def fleet(self, name: str, **options: Any) -> RedisFleet:
        from acp_async.fleet import RedisFleet  # the redis extra: imported when used

        return RedisFleet(self.url, name=name, cluster=self.cluster, **options)

    @property
    def args(self) -> list[str]:
        """A CLI command's options for it."""
        return ["--redis", self.url, *(["--redis-cluster"] if self.cluster else [])]

    @property
    def env(self) -> dict[str, str]:
        """The same as ``ACP_REDIS_*`` variables."""
        return {"ACP_REDIS_URL": self.url, **({"ACP_REDIS_CLUSTER": "1"} if self.cluster else {})}


class RedisServer:
    """One redis-server (or valkey-server) process, in its own directory.

    ``cluster=True`` makes it a cluster node (a port below 55535 and its own bus port);
    ``sentinel_monitor=(name, port)`` makes it a sentinel watching that master (quorum 1).
    ``password``: the server asks every client for it (``requirepass``, from the start);
    ``monitor_password``: a sentinel's password for the master it watches (``auth-pass``).
    """

    def __init__(
        self,
        directory: Path,
        *,
        fsync: str = "everysec",
        binary: str | None = None,
        extra: Sequence[str] = (),
        tls: TLSFiles | None = None,
        cluster: bool = False,
        sentinel_monitor: tuple[str, int] | None = None,
        password: str | None = None,
        monitor_password: str | None = None,
    ) -> None:
        self.binary = binary or require_redis_server()
        self.password = password
        self.monitor_password = monitor_password
        self.directory = directory
        self.fsync = fsync
        self.extra = list(extra)
        self.tls = tls
        self.cluster = cluster
        self.sentinel_monitor = sentinel_monitor
        self.port = 0
        self.bus_port = 0
        self._choose_ports()
        self.process: subprocess.Popen[bytes] | None = None
        self.started = False  # once started, restarts keep the port

    def _choose_ports(self) -> None:
        self.port = free_port(below=_HIGHEST_CLUSTER_PORT if self.cluster else 65536)
        self.bus_port = free_port() if self.cluster else 0

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://127.0.0.1:{self.port}/0"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start the server and wait until it answers; the first start takes other free
        ports if someone took these since they were chosen (another xdist worker's server,
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
                self._choose_ports()
        raise RuntimeError(f"{self.binary} did not start on port {self.port}:\n{self.log()}")

    def _listen_args(self) -> list[str]:
        if self.tls is None:
            return ["--port", str(self.port)]
        return [
            "--port", "0", "--tls-port", str(self.port),
            "--tls-cert-file", str(self.tls.certificate), "--tls-key-file", str(self.tls.key),
            "--tls-ca-cert-file", str(self.tls.ca), "--tls-auth-clients", "no",
        ]  # fmt: skip

    def _args(self) -> list[str]:
        common = [
            *self._listen_args(),
            "--bind", "127.0.0.1",
            "--dir", str(self.directory),
            "--daemonize", "no",
            "--logfile", str(self.directory / "redis.log"),
            *(["--requirepass", self.password] if self.password else []),
        ]  # fmt: skip
        if self.sentinel_monitor is not None:
            return [self.binary, str(self._sentinel_config()), "--sentinel", *common, *self.extra]
        args = [self.binary, *common]
        args += ["--appendonly", "yes", "--appendfsync", self.fsync, "--save", ""]
        if self.cluster:
            config = self.directory / "nodes.conf"
            if not self.started:  # a fresh node: no cluster state from a failed start
                config.unlink(missing_ok=True)
            args += [
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(config),
                "--cluster-node-timeout", "2000",
                "--cluster-port", str(self.bus_port),
            ]  # fmt: skip
        return args + self.extra

    def _sentinel_config(self) -> Path:
        """A sentinel rewrites its config file: a fresh one for a first start."""
        assert self.sentinel_monitor is not None
        config = self.directory / "sentinel.conf"
        if not self.started:
            name, port = self.sentinel_monitor
            config.write_text(
                f"sentinel monitor {name} 127.0.0.1 {port} 1\n"
                f"sentinel down-after-milliseconds {name} 1000\n"
                f"sentinel failover-timeout {name} 5000\n"
            )
            if self.monitor_password:
                with config.open("a") as file:
                    file.write(f"sentinel auth-pass {name} {self.monitor_password}\n")
        return config

    def _wait_until_up(self, timeout: float = 10.0) -> bool:
        """True once our own process answers on the port (its pid, from ``INFO server``:
        not another server that holds the port); False if ours exited (the port was
        taken)."""
        assert self.process is not None
        pid = f"process_id:{self.process.pid}\r\n".encode()
        context = self.tls.context() if self.tls else None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                if pid in _ask(self.port, b"INFO server\r\n", context, self.password):
                    return True
            except OSError:
                pass
            time.sleep(0.02)
        self.kill()
        raise TimeoutError(f"{self.binary} on port {self.port} did not come up")

    def log(self) -> str:
        path = self.directory / "redis.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def cli(self, *args: str) -> str:
        """One redis-cli command against this server; its output."""
        cli = require(REDIS_CLI, "redis-cli", "redis-tools")
        tls = ["--tls", "--cacert", str(self.tls.ca)] if self.tls else []
        auth = {"REDISCLI_AUTH": self.password} if self.password else {}
        done = subprocess.run(
            [cli, *tls, "-h", "127.0.0.1", "-p", str(self.port), *args],
            capture_output=True, text=True, timeout=10, check=True, env={**os.environ, **auth},
        )  # fmt: skip
        return done.stdout

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


class _Deployment(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


_D = TypeVar("_D", bound=_Deployment)


@contextlib.contextmanager
def running(deployment: _D) -> Iterator[_D]:
    """``deployment`` started, and stopped however its user ends (a failed start too:
    a cluster or sentinel stops the nodes it had started)."""
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


def _directory(parent: Path, name: str) -> Path:
    path = parent / name
    path.mkdir(exist_ok=True)
    return path


class RedisCluster:
    """Three redis-server masters made into one Redis Cluster on loopback."""

    def __init__(self, directory: Path, *, size: int = 3, binary: str | None = None) -> None:
        self.directory = directory
        self.size = size
        self.binary = binary
        self.nodes: list[RedisServer] = []

    @property
    def url(self) -> str:
        """One node's URL: redis-py's RedisCluster discovers the others from it."""
        return self.nodes[0].url

    def start(self) -> None:
        for index in range(self.size):
            node = RedisServer(
                _directory(self.directory, f"node-{index}"), binary=self.binary, cluster=True
            )
            self.nodes.append(node)
            node.start()
        cli = require(REDIS_CLI, "redis-cli", "redis-tools")
        subprocess.run(
            [cli, "--cluster", "create", *(node.address for node in self.nodes),
             "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        _wait_for(
            lambda: all("cluster_state:ok" in node.cli("CLUSTER", "INFO") for node in self.nodes),
            "the cluster did not reach cluster_state:ok",
        )

    def flush(self) -> None:
        """Every node's keys gone (between tests sharing one cluster)."""
        for node in self.nodes:
            node.cli("FLUSHALL")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        self.nodes = []


class RedisSentinel:
    """A master, a replica of it and one sentinel watching them (quorum 1).

    ``password``: the master and the replica ask every client for it, and for
    replication (``requirepass`` and ``masterauth``); the sentinel knows it
    (``auth-pass``). ``sentinel_password``: the sentinel's own (``requirepass``)."""

    MASTER = "acpmaster"

    def __init__(
        self,
        directory: Path,
        *,
        tls: TLSFiles | None = None,
        password: str | None = None,
        sentinel_password: str | None = None,
    ) -> None:
        self.directory = directory
        self.tls = tls  # every server speaks TLS only, replication and the sentinel's too
        self.password = password
        self.sentinel_password = sentinel_password
        self.master: RedisServer | None = None
        self.replica: RedisServer | None = None
        self.sentinel: RedisServer | None = None

    @property
    def sentinel_address(self) -> tuple[str, int]:
        assert self.sentinel is not None
        return ("127.0.0.1", self.sentinel.port)

    @contextlib.asynccontextmanager
    async def master_client(self, **options: Any) -> AsyncIterator[Any]:
        """``Sentinel(...).master_for(MASTER)``, as a user makes it with redis-py, each
        password where it goes (``options``: more of Sentinel's); closed at the end with
        the sentinels' own clients."""
        from redis.asyncio.sentinel import Sentinel

        if self.sentinel_password is not None:
            options.setdefault("sentinel_kwargs", {"password": self.sentinel_password})
        if self.password is not None:
            options.setdefault("password", self.password)
        sentinels = Sentinel([self.sentinel_address], **options)  # type: ignore[no-untyped-call]
        client = sentinels.master_for(self.MASTER)
        try:
            yield client
        finally:
            await client.aclose()
            for own in sentinels.sentinels:
                await own.aclose()

    def start(self) -> None:
        common = ["--tls-replication", "yes"] if self.tls else []
        if self.password:
            common += ["--masterauth", self.password]
        self.master = self._server("master", common)
        self.master.start()
        self.replica = self._server(
            "replica", ["--replicaof", "127.0.0.1", str(self.master.port), *common]
        )
        self.replica.start()
        _wait_for(self._replica_in_sync, "the replica did not sync with the master")
        self.sentinel = RedisServer(
            _directory(self.directory, "sentinel"),
            tls=self.tls,
            extra=["--tls-replication", "yes"] if self.tls else [],
            sentinel_monitor=(self.MASTER, self.master.port),
            password=self.sentinel_password,
            monitor_password=self.password,
        )
        self.sentinel.start()
        _wait_for(lambda: self._known_replicas() >= 1, "the sentinel did not find the replica")

    def _server(self, name: str, extra: list[str]) -> RedisServer:
        return RedisServer(
            _directory(self.directory, name), tls=self.tls, extra=extra, password=self.password
        )

    def _sentinel(self, *args: str) -> str:
        assert self.sentinel is not None
        return self.sentinel.cli(*args)

    def _known_replicas(self) -> int:
        return self._sentinel("SENTINEL", "REPLICAS", self.MASTER).count("ip")

    def _replica_in_sync(self) -> bool:
        assert self.replica is not None
        info = self.replica.cli("INFO", "replication")
        return "master_link_status:up" in info

    def master_port(self) -> int:
        """The port of the master the sentinel names now."""
        lines = self._sentinel("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.MASTER).split()
        return int(lines[1])

    def failover(self) -> None:
        """``SENTINEL FAILOVER``: the replica becomes the master; returns once it has."""
        before = self.master_port()
        # Until the sentinel has read the replica's INFO (every 10 s at first) it answers
        # NOGOODSLAVE: ask again until it accepts.
        _wait_for(
            lambda: self._sentinel("SENTINEL", "FAILOVER", self.MASTER).strip() == "OK",
            "the sentinel refused to fail over",
            timeout=30.0,
        )
        _wait_for(lambda: self.master_port() != before, "the sentinel did not fail over")
        promoted = self.replica if self.replica and self.replica.port != before else self.master
        assert promoted is not None
        _wait_for(
            lambda: "role:master" in promoted.cli("INFO", "replication"),
            "the promoted replica did not become a master",
        )

    def stop(self) -> None:
        for server in (self.sentinel, self.replica, self.master):
            if server is not None:
                server.stop()
