"""The request log: what reached the fake, how each request ended, how many ran at once."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal

import attrs

__all__ = ("Auth", "Outcome", "RecordedRequest", "RequestLog")

Auth = Literal["bearer", "runtime"]


@attrs.frozen
class RecordedRequest:
    """One request the fake received, for assertions in tests.

    It is listed on arrival with ``finished`` and ``status`` None, and replaced
    by its final form when the response is done or the connection is gone;
    ``status`` stays None when no response was sent (a drop, or a client that
    went away first). ``auth`` names the credential that was accepted:
    ``"bearer"`` (``Authorization: Bearer <token>``), ``"runtime"``
    (``X-Computer-Agents-Runtime-Token: <runtime_token>``), or None when
    neither was right; it never holds the secret itself.

    Attributes:
        server_id: the server id of the path (decoded), or None off the runs route.
        path: the raw, still percent-encoded path, without the query.
        query: the query parameters.
        headers: the request's headers.
        started, finished: times on the fake's ``clock``, in seconds; ``finished`` is
            None while the request is in flight.
        status: the status sent, or None.
        fault: the kind of fault injected (see ``FakeACPServer.fail``), or None.
        method: the HTTP method.
        request_id: the ``X-Request-Id`` the fake answered with.
        auth: ``"bearer"``, ``"runtime"`` or None, as above.
    """

    server_id: str | None
    path: str  # the raw, still percent-encoded path, without the query
    query: dict[str, str]
    headers: dict[str, str]
    started: float
    finished: float | None
    status: int | None
    fault: str | None
    method: str = "GET"
    request_id: str = ""
    auth: Auth | None = None


@attrs.define
class Outcome:
    """What happened to one request, filled in as the handler goes."""

    status: int | None = None
    fault: str | None = None


class RequestLog:
    """Every request in arrival order, and the load: in flight now and at the peak."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._records: list[RecordedRequest] = []
        self._counter = 0
        self._in_flight = 0
        self._max_in_flight = 0

    @property
    def records(self) -> list[RecordedRequest]:
        return list(self._records)

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def max_in_flight(self) -> int:
        return self._max_in_flight

    def arrived(
        self,
        *,
        server_id: str | None,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        method: str,
        auth: Auth | None,
    ) -> RecordedRequest:
        """List a request as it arrives; its ``request_id`` is the next in sequence."""
        self._counter += 1
        record = RecordedRequest(
            server_id=server_id,
            path=path,
            query=dict(query),
            headers=dict(headers),
            started=self._clock(),
            finished=None,
            status=None,
            fault=None,
            method=method,
            request_id=f"req-{self._counter:06d}",
            auth=auth,
        )
        self._records.append(record)
        self._in_flight += 1
        self._max_in_flight = max(self._max_in_flight, self._in_flight)
        return record

    def finished(self, record: RecordedRequest, outcome: Outcome) -> None:
        """Replace the arrival record by its final form."""
        self._in_flight -= 1
        final = attrs.evolve(
            record, finished=self._clock(), status=outcome.status, fault=outcome.fault
        )
        # Search from the end: the request is usually among the latest ones.
        # Not found means `reset` ran meanwhile, and it stays forgotten.
        for index in range(len(self._records) - 1, -1, -1):
            if self._records[index] is record:
                self._records[index] = final
                return

    def reset(self) -> None:
        """Forget the records and restart the peak from the current load."""
        self._records.clear()
        self._max_in_flight = self._in_flight
