"""Many workers watch one fleet of ACP servers together through Redis (extra ``redis``).

    fleet = RedisFleet("redis://localhost:6379/0", name="default")
    async with fleet:
        await fleet.add(["srv-1", "srv-2"])
        await fleet.work(client)            # in each worker process; runs until cancelled
        async for event in fleet.events(group="billing", consumer="c1"):
            ...
            await fleet.ack("billing", event)

Work is claimed from Redis (due servers, fenced claims held for at most ``lease``
seconds); each poll's events are appended to the fleet's stream together with the
server's new compact state in one fenced script, so every change a committed poll sees
is appended exactly once. Consumers read through consumer groups (at least once).

Redis errors no retry can fix (a refused password, an ACL denial, a fleet key of the
wrong type) raise ``FleetRedisError``; Redis away is ``RedisUnavailableError``, which
``work()`` and ``events()`` wait out.

The package: ``_fleet`` (``RedisFleet``: options, lifecycle, the calls), ``models``
(``FleetEvent``, ``FleetStatus``), ``_errors`` (``FleetRedisError``,
``RedisUnavailableError``), ``_connection`` (the Redis client: made from a URL, a Cluster
node or sentinels, or borrowed and checked), ``_store`` (every Redis command: key names,
the ``scripts/*.lua``, reads and acks), ``_classify`` (what Redis's errors mean),
``_outage`` (Redis away: said once, waited out), ``_worker`` (one worker's claim
lifecycle) and ``_events`` (a consumer group's reader). The watch engine they run is
``acp_async._watch``.
"""

try:
    import redis.asyncio  # noqa: F401 - the extra's check, before any module of ours needs it
except ImportError as exc:  # pragma: no cover - exercised when the extra is absent
    raise ImportError(
        "acp_async.fleet needs the official Redis client, the 'redis' extra: from a clone of "
        "the acp-async repository, pip install '.[redis]' (or pip install 'acp-async[redis]' "
        "once it is published)"
    ) from exc

from ._errors import FleetRedisError, RedisUnavailableError
from ._fleet import RedisFleet
from .models import FleetEvent, FleetStatus

__all__ = ("FleetEvent", "FleetRedisError", "FleetStatus", "RedisFleet", "RedisUnavailableError")
