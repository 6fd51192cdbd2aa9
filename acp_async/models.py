"""The values acp-async hands out. They know nothing about JSON: see ``_converter``."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

import attrs

if TYPE_CHECKING:
    from .errors import ACPError

__all__ = (
    "AgentRun",
    "AgentRunList",
    "RunEvent",
    "RunMode",
    "RunStatus",
    "ServerRuns",
)


class RunStatus(StrEnum):
    """Known run statuses; a status the server adds later stays a plain ``str``."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class RunMode(StrEnum):
    """Known run modes; a mode the server adds later stays a plain ``str``."""

    SYNC = "sync"
    ASYNC = "async"


TERMINAL_STATUSES = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})


@attrs.frozen(weakref_slot=False)
class AgentRun:
    """One agent run, as ``client.runs`` returns it. Frozen; every field is None when the
    server left it out (or sent null).

    Attributes:
        id, server_id, thread_id, title: the run's ids and title (``str``).
        input, output, error: its text (``str``).
        mode: a ``RunMode`` (``"sync"``, ``"async"``), or a ``str`` the server added.
        status: a ``RunStatus`` (queued, running, completed, failed, cancelled), or a
            ``str`` the server added later (say ``"paused"``).
        metadata: free-form, a ``dict``.
        created_at, completed_at: timezone-aware ``datetime`` (no offset means UTC).
        session_protocol, thread_status, thread_title: ``str``; thread_backed: ``bool``.

    ``acp_async.to_json(run)`` gives it back in the API's camelCase JSON form.
    """

    id: str | None = None
    server_id: str | None = None
    thread_id: str | None = None
    title: str | None = None
    input: str | None = None
    output: str | None = None
    mode: RunMode | str | None = None
    status: RunStatus | str | None = None
    error: str | None = None
    # Free-form and mutable, so it stays out of the hash (equality still compares it).
    metadata: dict[str, Any] | None = attrs.field(default=None, hash=False)
    created_at: datetime | None = None
    completed_at: datetime | None = None
    session_protocol: str | None = None
    thread_backed: bool | None = None
    thread_status: str | None = None
    thread_title: str | None = None

    @property
    def is_terminal(self) -> bool:
        """True once the run can no longer change status (completed, failed, cancelled)."""
        return self.status in TERMINAL_STATUSES


@attrs.frozen(weakref_slot=False)
class AgentRunList:
    """One page of a server's runs, as ``runs.list`` returns it.

    Attributes:
        server_id: the server, as the response named it.
        agent_runtime_id: the server's agent runtime.
        object: the response's ``object`` (``"list"``).
        data: the runs, a tuple of ``AgentRun``, newest first: the response's ``data``,
            or its ``runs`` when ``data`` is absent; both merged by ``id``, ``data``
            first, when both are present.

    ``len(page)`` is the number of runs.
    """

    server_id: str | None = None
    agent_runtime_id: str | None = None
    object: str | None = None
    data: tuple[AgentRun, ...] = ()

    def __len__(self) -> int:
        return len(self.data)


@attrs.frozen(weakref_slot=False)
class ServerRuns:
    """The outcome of one server in ``runs.list_many``: ``result`` or ``error``, never both.

    Attributes:
        server_id: the server.
        result: its ``AgentRunList``, or None when it failed.
        error: the ``ACPError`` it failed with (after retries), or None.
    """

    server_id: str
    result: AgentRunList | None = None
    error: ACPError | None = None


@attrs.frozen(weakref_slot=False)
class RunEvent:
    """A change seen by ``runs.watch``: a run created or updated, or an error polling a
    server.

    Attributes:
        kind: ``"created"`` (a run not seen before), ``"updated"`` (a seen run whose
            fields changed) or ``"error"`` (this poll of the server failed).
        server_id: the server.
        run: the run as now (None for an error).
        previous: for ``"updated"``, what the watch remembered of the run before: a
            summary with at least ``.status`` (not the whole previous run).
        error: for ``"error"``, the ``ACPError``.
    """

    kind: Literal["created", "updated", "error"]
    server_id: str
    run: AgentRun | None = None
    previous: AgentRun | None = None
    error: ACPError | None = None
