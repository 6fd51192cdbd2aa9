"""What an error met while talking to Redis means for a fleet: the one place that sorts
them (``classify``), so no fleet call raises a redis-py exception.

``_store`` sends every command and hands each error it meets to ``classify``;
``FleetRedisError`` is what no retry can fix, ``RedisUnavailableError`` what the loops wait
out (``_errors``). This module sends nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from redis.asyncio.sentinel import MasterNotFoundError
from redis.exceptions import (
    AuthenticationError,
    AuthenticationWrongNumberOfArgsError,
    DataError,
    NoPermissionError,
    RedisClusterException,
    RedisError,
)

from ._errors import FleetRedisError, RedisUnavailableError

if TYPE_CHECKING:
    from ._store import Keys

__all__ = ("classify",)


# What Redis, or the way to it, raises: redis-py's errors, its cluster client's own
# (not RedisErrors) and the socket's.
_REDIS_SIDE = (RedisError, RedisClusterException, OSError)


def classify(exc: Exception, address: str, keys: Keys) -> FleetRedisError | None:
    """What an exception met while talking to Redis means for a fleet; None for one that
    is not Redis's (a bug, ours or a dependency's: it goes on as it is).

    ``FleetRedisError`` for what no retry can fix: a refused password (WRONGPASS,
    NOAUTH; by the sentinels too), an ACL denial (NOPERM), a fleet key of the wrong type
    (WRONGTYPE), the fleet counter not an integer. ``RedisUnavailableError`` for every
    other error from Redis or from the way to it (refused, reset, DNS, timeouts, LOADING,
    READONLY, CLUSTERDOWN, TRYAGAIN, MOVED storms, Sentinel's master not found (no
    sentinel answers, or none names a master), OOM, and any error Redis answers that is
    not listed). A redis-py ``DataError`` is refused by the client before
    anything is sent (an argument of ours): a bug, not Redis's. redis-py's cluster client
    raises some errors (``RedisClusterException``: no node reachable, a slot not
    covered) that are not ``RedisError``s; they are Redis's too.
    """
    if isinstance(exc, DataError) or not isinstance(exc, _REDIS_SIDE):
        return None
    text = f"{type(exc).__name__}: {_said(exc)}"
    fatal = _fatal(exc, keys)
    if fatal is not None:
        return FleetRedisError(f"Redis at {address}: {fatal} ({text})", address=address)
    return RedisUnavailableError(f"Redis at {address} is unavailable: {text}", address=address)


def _said(exc: Exception) -> str:
    """``exc``'s text for one line a person reads. Sentinel's "No master found for 'x'"
    goes on with the repr of every sentinel's client and error, a few hundred characters
    a sentinel: the refusal, if any, is sorted out by ``_fatal``, not shown."""
    if isinstance(exc, MasterNotFoundError):
        return str(exc).split(" : ", 1)[0]
    return str(exc)


def _fatal(exc: Exception, keys: Keys) -> str | None:
    """What about ``exc`` no retry can fix, for people; None when a retry may. Replies
    of a script carry the code inside their text (``WRONGTYPE ... script: ...``, or on
    Redis 6 ``Error running script ...: WRONGTYPE ...``), so the text is read too. The
    errors ``exc`` was raised from count as well: redis-py's cluster client raises a
    ``RedisClusterException`` from the refused AUTH of every startup node."""
    chain = list(_causes(exc))
    text = " ".join(map(str, chain))
    # Sentinels that refuse the password: redis-py's MasterNotFoundError carries no
    # cause, only each sentinel's error in its text ("... - AuthenticationError(...)",
    # or "auth:AuthenticationError" since redis-py 7). Without one, "No master found"
    # (no master yet, a failover under way) is retried.
    if any(isinstance(e, MasterNotFoundError) and "AuthenticationError" in str(e) for e in chain):
        return (
            "the credentials were refused by the sentinels (or none were given); check "
            "the sentinels' user and password (sentinel_kwargs, or the CLI's "
            "ACP_REDIS_SENTINEL_USERNAME and ACP_REDIS_SENTINEL_PASSWORD)"
        )
    # A client that has not authenticated and sends a long command (a worker's round
    # trip) is cut off with "Protocol error: unauthenticated multibulk length", not NOAUTH.
    refused = (AuthenticationError, AuthenticationWrongNumberOfArgsError)
    if any(isinstance(e, refused) for e in chain) or any(
        code in text for code in ("WRONGPASS", "NOAUTH", "unauthenticated")
    ):
        return (
            "the credentials were refused (or none were given); check the Redis user and "
            "password (in the Redis URL, or the CLI's ACP_REDIS_USERNAME and "
            "ACP_REDIS_PASSWORD)"
        )
    if any(isinstance(e, NoPermissionError) for e in chain) or "NOPERM" in text:
        return (
            "the Redis user may not run a command the fleet needs; its ACL must allow the "
            f"keys {keys.due.rpartition(':')[0]}:* and the fleet's commands"
        )
    if "WRONGTYPE" in text:
        return (
            "a fleet key holds a value of the wrong type (something else wrote to "
            f"{keys.due.rpartition(':')[0]}:*); remove or rename that key"
        )
    if "not an integer" in text:
        return f"the fleet's counter {keys.seq} is not an integer; set it above every claim token"
    return None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the errors it was raised from (``raise ... from``; not those it merely
    met while handling another, which may be long past)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__
