"""A fleet's Redis client: made from a URL (one server, or a node of a Redis Cluster) or
from sentinels, or borrowed from the caller and checked.

Besides ``_store`` and ``_classify`` the only module of the fleet that imports redis; it
sends no command.
A client made here gets no redis-py retries (``retry=`` with none): the fleet's own
backoff is the only one, so a refused password surfaces at once. A borrowed client is
never closed by the fleet, and must read RESP2 replies as bytes, which the store parses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias
from urllib.parse import urlsplit

import redis
from redis.asyncio import Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import NoBackoff

__all__ = (
    "NO_RETRY",
    "Client",
    "address",
    "borrowed",
    "check_url",
    "close",
    "from_sentinels",
    "from_url",
    "longest_block",
    "socket_timeout",
)

Client: TypeAlias = Redis | RedisCluster

CONNECT_TIMEOUT = 5.0  # seconds to open a connection (a sentinel's answers too)
# A blocking read ends this long before the socket timeout would (at most), so the
# timeout never cuts one: half the timeout when it is short.
BLOCK_MARGIN = 5.0

_SCHEMES = ("redis", "rediss", "unix")
# Clients the fleet makes retry nothing themselves (redis-py 6 and later retry connect
# and AUTH three times by default): a refused password is an error at once.
NO_RETRY = Retry(NoBackoff(), 0)


def socket_timeout(lease: float) -> float:
    """The socket timeout of a client the fleet makes: long enough for any script, and for
    a blocking read (``events`` keeps ``block`` below it)."""
    return max(30.0, lease)


def _options(
    timeout: float, ca: str | None, username: str | None = None, password: str | None = None
) -> dict[str, Any]:
    tls = {"ssl_ca_certs": ca} if ca is not None else {}
    credentials = {
        key: value
        for key, value in (("username", username), ("password", password))
        if value is not None
    }
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": CONNECT_TIMEOUT,
        "retry": NO_RETRY,
        **tls,
        **credentials,
    }


def check_url(url: object, *, cluster: bool = False, ca: str | None = None) -> str:
    """The URL, if ``Redis.from_url`` (or ``RedisCluster.from_url``) would take it; a clear
    error otherwise, at construction. The URL is never echoed: it may hold a password."""
    if not isinstance(url, str):
        raise TypeError(f"redis must be a URL (str) or a redis.asyncio client, not {url!r}")
    if not url:
        raise ValueError("the Redis URL is empty; give redis://host:port/db")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:  # not its text: it quotes the "port", maybe a password's piece
        raise ValueError(
            "the Redis URL is not a valid URL (a port that is not a number, or a bad "
            "host): percent-encode '#', '/', '?' and '@' in a password"
        ) from None
    if parts.scheme not in _SCHEMES:
        raise ValueError(
            f"the Redis URL must start with redis://, rediss:// or unix://, not {parts.scheme!r}"
        )
    if parts.scheme == "unix" and not parts.path:
        raise ValueError("a unix:// Redis URL needs a socket path (unix:///path/redis.sock)")
    if cluster and parts.scheme == "unix":
        raise ValueError("a Redis Cluster is reached over TCP: give redis:// or rediss://")
    if ca is not None and parts.scheme != "rediss":
        raise ValueError("a CA file is for TLS: give a rediss:// URL")
    return url


def from_url(
    url: str,
    *,
    cluster: bool,
    timeout: float,
    ca: str | None = None,
    username: str | None = None,
    password: str | None = None,
) -> Client:
    """A client of the fleet's own for ``url`` (a pool; it connects on first use).
    ``username``/``password``: for a URL without them (one the URL holds wins)."""
    options = _options(timeout, ca, username, password)
    if cluster:
        return RedisCluster.from_url(check_url(url, cluster=True, ca=ca), **options)
    return Redis.from_url(check_url(url, ca=ca), **options)


def from_sentinels(
    sentinels: Sequence[tuple[str, int]],
    master: str,
    *,
    timeout: float,
    ca: str | None = None,
    credentials: tuple[str | None, str | None] = (None, None),
    sentinel_credentials: tuple[str | None, str | None] = (None, None),
) -> Redis:
    """A client of the master that ``sentinels`` name ``master`` (asked again after a
    failover). ``ca``: TLS to the sentinels and the master, trusting that CA.
    ``credentials``: (user, password) for the master; ``sentinel_credentials``: for the
    sentinels, which have their own (redis-py gives them none of the master's)."""
    tls = {"ssl": True} if ca is not None else {}
    sentinel_options = {**_options(CONNECT_TIMEOUT, ca, *sentinel_credentials), **tls}
    sentinel = Sentinel(  # type: ignore[no-untyped-call]
        list(sentinels),
        sentinel_kwargs=sentinel_options,
        **_options(timeout, ca, *credentials),
        **tls,
    )
    client: Redis = sentinel.master_for(master)
    return client


def borrowed(client: object, *, cluster: bool) -> Client:
    """A caller's client, checked: a ``redis.asyncio`` one that reads RESP2 bytes."""
    if isinstance(client, redis.Redis | redis.RedisCluster):
        raise TypeError(
            f"the fleet is async: pass a redis.asyncio client, not {type(client).__module__}."
            f"{type(client).__name__}"
        )
    if not isinstance(client, Redis | RedisCluster):
        raise TypeError(
            "redis must be a URL or a redis.asyncio.Redis or RedisCluster client, not "
            f"{type(client).__name__}"
        )
    if cluster and not isinstance(client, RedisCluster):
        raise ValueError("cluster=True takes a URL or a redis.asyncio.RedisCluster client")
    if client.get_encoder().decode_responses:
        raise ValueError("the fleet reads bytes: give a client made without decode_responses=True")
    if str(client.get_connection_kwargs().get("protocol") or 2) != "2":
        raise ValueError("the fleet reads RESP2 replies: give a client made without protocol=3")
    return client


def longest_block(client: Client) -> float | None:
    """The longest a blocking read may wait on ``client`` (seconds): shorter than its
    socket timeout, which would otherwise cut the read. None: it has no socket timeout."""
    timeout = client.get_connection_kwargs().get("socket_timeout")
    if timeout is None:
        return None
    return float(timeout) - min(BLOCK_MARGIN, float(timeout) / 2)


def address(client: Client) -> str:
    """Where ``client`` goes, for people, never with credentials: ``host:port/db``, a
    socket's ``path?db=N``, a Cluster node it was given, or a Sentinel master's name and
    the sentinels."""
    if isinstance(client, RedisCluster):
        node = next(iter(client.nodes_manager.startup_nodes.values()))
        return f"{node.host}:{node.port} (cluster)"
    pool = client.connection_pool
    db = pool.connection_kwargs.get("db") or 0
    if isinstance(pool, SentinelConnectionPool):
        known = pool.sentinel_manager.sentinels
        sentinels = ",".join(_where(s.get_connection_kwargs()) for s in known)
        return f"{pool.service_name}/{db} (sentinel {sentinels})"
    if pool.connection_kwargs.get("path"):
        return f"{pool.connection_kwargs['path']}?db={db}"
    return f"{_where(pool.connection_kwargs)}/{db}"


def _where(kwargs: dict[str, Any]) -> str:
    return f"{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}"


async def close(client: Client) -> None:
    """Close a client made here (and a Sentinel master's sentinels' clients)."""
    if isinstance(client, Redis) and isinstance(client.connection_pool, SentinelConnectionPool):
        for sentinel in client.connection_pool.sentinel_manager.sentinels:
            await sentinel.aclose()
    await client.aclose()
