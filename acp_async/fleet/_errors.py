"""The errors a fleet raises for what Redis did (public in ``acp_async.fleet``)::

    ACPError
    └── FleetRedisError            no retry can fix it: work() and events() end with it
        └── RedisUnavailableError  Redis away or busy for now: work() and events() wait it out

Which Redis error is which is decided once, by ``_classify.classify``. Every message names
Redis by ``host:port/db`` (``address``), never with its password.
"""

from __future__ import annotations

from ..errors import ACPError

__all__ = ("FleetRedisError", "RedisUnavailableError")


class FleetRedisError(ACPError):
    """Redis refused the fleet's work in a way no retry can fix: a refused password
    (WRONGPASS, NOAUTH; by Sentinel's sentinels too), an ACL denial (NOPERM), a fleet
    key of the wrong type (WRONGTYPE), a fleet counter that is not an integer. ``work()``
    and ``events()`` end with it; ``fleet worker`` exits 1 with its message as the last
    line.

    Its subclass ``RedisUnavailableError`` is what a single call (``add``, ``status``)
    raises while Redis is away; the loops wait that one out.

    Attributes:
        address: the Redis it came from, ``host:port/db`` (no credentials).
    """

    def __init__(self, message: str, *, address: str) -> None:
        super().__init__(message)
        self.address = address


class RedisUnavailableError(FleetRedisError):
    """Redis is away or cannot serve the fleet for now: connection refused or reset, a
    DNS failure, a timeout, LOADING, READONLY, CLUSTERDOWN, TRYAGAIN, a storm of MOVED,
    Sentinel's master not found, OOM. ``work()`` and ``events()`` retry with backoff;
    ``add``, ``remove``, ``server_ids``, ``status`` and ``ack`` raise it."""
