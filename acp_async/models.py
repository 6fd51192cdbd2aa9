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
    """One agent run. Every field is None when the server left it out."""

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
    """One page of a server's runs: ``data`` merges the response's ``data`` and ``runs``."""

    server_id: str | None = None
    agent_runtime_id: str | None = None
    object: str | None = None
    data: tuple[AgentRun, ...] = ()

    def __len__(self) -> int:
        return len(self.data)


@attrs.frozen(weakref_slot=False)
class ServerRuns:
    """The outcome of one server in a fan-out: ``result`` or ``error``, never both."""

    server_id: str
    result: AgentRunList | None = None
    error: ACPError | None = None


@attrs.frozen(weakref_slot=False)
class RunEvent:
    """A change seen by ``watch``: a run created or updated, or an error polling a server."""

    kind: Literal["created", "updated", "error"]
    server_id: str
    run: AgentRun | None = None
    previous: AgentRun | None = None
    error: ACPError | None = None
