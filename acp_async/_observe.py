"""What the SDK reports as it works, for whoever watches a long-running worker.

The send path, the watch engine and the Redis fleet call these hooks at fixed points;
the default does nothing, and ``acp_async.metrics.PrometheusMetrics`` turns them into
Prometheus metrics. Hooks take no server or run id: metric labels stay bounded.
"""

from __future__ import annotations

from typing import Literal

__all__ = ("Observer", "RequestOutcome")

RequestOutcome = Literal["2xx", "3xx", "4xx", "5xx", "timeout", "connection", "invalid"]


class Observer:
    """The hooks, each a no-op here; subclasses override the ones they count."""

    def request_started(self) -> None:
        """An HTTP request (one attempt, or one redirect hop of it) is about to be sent."""

    def request_finished(self, outcome: RequestOutcome, seconds: float) -> None:
        """That request ended; every ``request_started`` is followed by exactly one of these.

        ``invalid`` is a 2xx whose body could not be read or decoded.
        """

    def retried(self, reason: str) -> None:
        """A call will try again; ``reason`` is a status or a failure (``"429"``, ``"timeout"``)."""

    def rate_limited(self, seconds: float) -> None:
        """The client's shared 429 cool-down grew by ``seconds`` of wall-clock time."""

    def watch_polled(self, *, ok: bool, late: float) -> None:
        """A watch poll ended; ``late`` is how many seconds after it was due it started."""

    def watch_event(self, kind: Literal["created", "updated", "error"]) -> None:
        """A watch (in-process or a fleet worker) produced an event of this kind."""

    def fleet_committed(self, result: Literal["ok", "fenced", "error"]) -> None:
        """A fleet worker's commit of one poll: written, refused (claim lost) or failed."""

    def fleet_redis_up(self, up: bool) -> None:
        """A fleet worker or consumer found Redis answering (True) or not (False): called
        when that changes."""

    def fleet_dropped(self, kind: Literal["due", "state", "stream"]) -> None:
        """A fleet entry in Redis that could not be read was dropped: a due member that is
        not a server id, a server's saved state, or a stream entry."""

    def fleet_failing(self, servers: int) -> None:
        """How many of the fleet's servers are failing, as a worker's last round trip saw."""


NO_OBSERVER = Observer()
