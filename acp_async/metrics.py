"""Prometheus metrics for a client, a watch or a fleet worker (extra ``metrics``).

``PrometheusMetrics`` is an ``Observer``: pass it as ``ACPClient(metrics=...)`` or
``RedisFleet(metrics=...)`` and serve its registry the way your process already serves
Prometheus (``prometheus_client.start_http_server``, or ``--metrics-port`` on the CLI).
No label holds a server or run id, so the number of series stays fixed however many
servers a worker watches.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Literal

import attrs

try:
    from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
except ImportError as exc:  # say which extra brings it
    raise ImportError(
        "acp_async.metrics needs the 'metrics' extra: from a clone of the acp-async "
        "repository, pip install '.[metrics]' (or pip install 'acp-async[metrics]' once it "
        "is published)"
    ) from exc

from ._observe import Observer, RequestOutcome

__all__ = ("PrometheusMetrics",)

OUTCOMES: tuple[RequestOutcome, ...] = (
    "2xx",
    "3xx",
    "4xx",
    "5xx",
    "timeout",
    "connection",
    "invalid",
)
POLL_RESULTS = ("ok", "error")
EVENT_KINDS = ("created", "updated", "error")
COMMIT_RESULTS = ("ok", "fenced", "error")
DROPPED_KINDS = ("due", "state", "stream")
# One attempt: loopback answers in milliseconds, a slow host in tens of seconds.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# How late a poll started: 0 when the worker keeps up, minutes when it is far behind.
DELAY_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


@attrs.frozen
class _Families:
    """The metric families of one registry (registered once per registry)."""

    requests: Counter
    duration: Histogram
    retries: Counter
    rate_limited: Counter
    in_flight: Gauge
    polls: Counter
    events: Counter
    poll_delay: Histogram
    commits: Counter
    redis_up: Gauge
    dropped: Counter
    failing: Gauge

    @classmethod
    def register(cls, registry: CollectorRegistry) -> _Families:
        return cls(
            requests=Counter(
                "acp_requests",
                "HTTP requests sent to the ACP API (each redirect hop too), by outcome.",
                ["outcome"],
                registry=registry,
            ),
            duration=Histogram(
                "acp_request_duration_seconds",
                "Seconds one HTTP request took, from send to the body read.",
                buckets=REQUEST_BUCKETS,
                registry=registry,
            ),
            retries=Counter(
                "acp_retries",
                "Calls tried again, by the reason of the failed attempt.",
                ["reason"],
                registry=registry,
            ),
            rate_limited=Counter(
                "acp_rate_limited_seconds",
                "Wall-clock seconds added to the client's shared 429 cool-down.",
                registry=registry,
            ),
            in_flight=Gauge(
                "acp_in_flight_requests",
                "HTTP requests sent and not yet finished.",
                registry=registry,
            ),
            polls=Counter(
                "acp_watch_polls",
                "Watch polls of one server, by result (ok or error).",
                ["result"],
                registry=registry,
            ),
            events=Counter(
                "acp_watch_events",
                "Watch events produced, by kind (created, updated, error).",
                ["kind"],
                registry=registry,
            ),
            poll_delay=Histogram(
                "acp_watch_poll_delay_seconds",
                "Seconds a watch poll started after it was due.",
                buckets=DELAY_BUCKETS,
                registry=registry,
            ),
            commits=Counter(
                "acp_fleet_commits",
                "Fleet worker commits of a poll, by result (ok, fenced, error).",
                ["result"],
                registry=registry,
            ),
            redis_up=Gauge(
                "acp_fleet_redis_up",
                "1 while Redis answers the fleet's worker or consumer, 0 while it retries.",
                registry=registry,
            ),
            dropped=Counter(
                "acp_fleet_dropped_entries",
                "Fleet entries in Redis that could not be read and were dropped, by kind "
                "(due: not a server id; state: a saved state; stream: an event entry).",
                ["kind"],
                registry=registry,
            ),
            failing=Gauge(
                "acp_fleet_failing_servers",
                "Fleet servers whose last poll failed, as this worker last saw them.",
                registry=registry,
            ),
        )


# Collectors can be registered only once per registry: every PrometheusMetrics on the
# same registry shares them (two clients in one process count into the same series).
_by_registry: weakref.WeakKeyDictionary[CollectorRegistry, _Families] = weakref.WeakKeyDictionary()


def _children(family: Counter, values: Iterable[str]) -> dict[str, Counter]:
    """The labelled series, created up front so each is exported (as 0) before it happens:
    a rate() over a series that appears only on its first increment misses that one."""
    return {value: family.labels(value) for value in values}


class PrometheusMetrics(Observer):
    """Counts what the client, the watch and the fleet report into Prometheus metrics.

    Args:
        registry: the ``prometheus_client.CollectorRegistry`` to register the metrics in.
            Default: prometheus_client's global ``REGISTRY``; tests pass a fresh one.

    The methods below are the hooks the client, the watch and the fleet call; an
    application never calls them.

    Example::

        metrics = PrometheusMetrics()
        async with ACPClient(metrics=metrics) as client:
            ...
        prometheus_client.start_http_server(9100)   # or --metrics-port in the CLI
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = REGISTRY if registry is None else registry
        families = _by_registry.get(self.registry)
        if families is None:
            families = _by_registry[self.registry] = _Families.register(self.registry)
        self._families = families
        # Bound children: the hot path is a dict lookup and an add, no label validation.
        self._requests = _children(families.requests, OUTCOMES)
        self._polls = _children(families.polls, POLL_RESULTS)
        self._events = _children(families.events, EVENT_KINDS)
        self._commits = _children(families.commits, COMMIT_RESULTS)
        self._dropped = _children(families.dropped, DROPPED_KINDS)
        self._retries: dict[str, Counter] = {}  # reasons are statuses or outcomes: on first use
        self._duration = families.duration
        self._in_flight = families.in_flight
        self._poll_delay = families.poll_delay

    def __repr__(self) -> str:
        return f"PrometheusMetrics(registry={self.registry!r})"

    def request_started(self) -> None:
        """Hook: a request went on the wire (``acp_in_flight_requests`` up)."""
        self._in_flight.inc()

    def request_finished(self, outcome: RequestOutcome, seconds: float) -> None:
        """Hook: a request ended with ``outcome`` (2xx ... invalid) after ``seconds``."""
        self._in_flight.dec()
        self._count(self._requests, self._families.requests, outcome)
        self._duration.observe(max(0.0, seconds))

    def retried(self, reason: str) -> None:
        """Hook: a request is retried for ``reason`` (a status, "timeout", "connection")."""
        self._count(self._retries, self._families.retries, reason)

    def rate_limited(self, seconds: float) -> None:
        """Hook: the shared 429 cool-down grew by ``seconds``."""
        if seconds > 0:  # a Counter refuses negative steps; nothing was added then anyway
            self._families.rate_limited.inc(seconds)

    def watch_polled(self, *, ok: bool, late: float) -> None:
        """Hook: a watch poll ended (``ok`` or not), ``late`` seconds after it was due."""
        self._polls["ok" if ok else "error"].inc()
        self._poll_delay.observe(max(0.0, late))

    def watch_event(self, kind: Literal["created", "updated", "error"]) -> None:
        """Hook: a watch yielded an event of ``kind``."""
        self._count(self._events, self._families.events, kind)

    def fleet_committed(self, result: Literal["ok", "fenced", "error"]) -> None:
        """Hook: a fleet worker's commit ended with ``result`` (ok, fenced, error)."""
        self._count(self._commits, self._families.commits, result)

    def fleet_redis_up(self, up: bool) -> None:
        """Hook: Redis answers (``acp_fleet_redis_up`` 1) or is being retried (0)."""
        self._families.redis_up.set(1 if up else 0)

    def fleet_dropped(self, kind: Literal["due", "state", "stream"]) -> None:
        """Hook: an unreadable fleet entry of ``kind`` (due, state, stream) was dropped."""
        self._count(self._dropped, self._families.dropped, kind)

    def fleet_failing(self, servers: int) -> None:
        """Hook: the fleet has ``servers`` failing, as this worker's last round trip saw."""
        self._families.failing.set(servers)

    @staticmethod
    def _count(children: dict[str, Counter], family: Counter, value: str) -> None:
        child = children.get(value)
        if child is None:  # a value the hooks do not name today: counted, not dropped
            child = children[value] = family.labels(value)
        child.inc()
