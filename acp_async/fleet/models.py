"""The fleet's values: ``FleetEvent`` (what ``events()`` yields) and ``FleetStatus``
(what ``status()`` returns). Both are importable from ``acp_async.fleet``."""

from __future__ import annotations

from typing import Literal

import attrs

from ..models import AgentRun, RunStatus

__all__ = ("FleetEvent", "FleetStatus")


@attrs.frozen
class FleetEvent:
    """A change appended to the fleet's stream by a committed poll, as ``events()`` yields it.

    Attributes:
        id: the stream entry id (``<milliseconds>-<n>``); pass the event to ``ack``.
        key: server id, run id and that run's change number: the same for the same
            change whoever appended it, so consumers may dedupe on it.
        kind: ``"created"`` or ``"updated"``.
        server_id: the server.
        run: the run as the poll saw it (an ``AgentRun``).
        previous_status: for ``"updated"``, the status before (``RunStatus`` or ``str``),
            else None.
    """

    id: str
    key: str
    kind: Literal["created", "updated"]
    server_id: str
    run: AgentRun
    previous_status: RunStatus | str | None = None


@attrs.frozen
class FleetStatus:
    """How the fleet is doing, as ``RedisFleet.status()`` returns it.

    Attributes:
        servers: servers in the fleet.
        workers: workers that claimed or committed within the last two leases.
        overdue: servers due more than one ``interval`` ago and not claimed.
        oldest_overdue: seconds the most overdue server has waited beyond that.
        failing: servers whose last poll failed.
        stream_length: events in the stream.
        pending: unacknowledged events per consumer group.
    """

    servers: int
    workers: int
    overdue: int
    oldest_overdue: float
    failing: int
    stream_length: int
    pending: dict[str, int] = attrs.Factory(dict)
