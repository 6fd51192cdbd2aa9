"""A hand-written constructor with the same checks as our converter: the Python floor.

Benchmark-only: the library itself stays declarative (cattrs-generated functions).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from acp_async import AgentRun, AgentRunList, RunMode, RunStatus

_STATUS = RunStatus._value2member_map_
_MODE = RunMode._value2member_map_


def _str(value: Any) -> str | None:
    if value is None or type(value) is str:
        return value
    raise TypeError(f"expected str, got {type(value).__name__}")


def _when(value: Any) -> datetime | None:
    if value is None:
        return None
    if type(value) is not str:
        raise TypeError("expected an ISO 8601 string")
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _enum(members: dict[Any, Any], value: Any) -> Any:
    if value is None:
        return None
    if type(value) is not str:
        raise TypeError("expected str")
    return members.get(value, value)


def run_from_dict(d: dict[str, Any]) -> AgentRun:
    if type(d) is not dict:
        raise TypeError("expected an object")
    get = d.get
    metadata = get("metadata")
    if metadata is not None and type(metadata) is not dict:
        raise TypeError("expected an object")
    backed = get("threadBacked")
    if backed is not None and type(backed) is not bool:
        raise TypeError("expected bool")
    return AgentRun(
        _str(get("id")),
        _str(get("serverId")),
        _str(get("threadId")),
        _str(get("title")),
        _str(get("input")),
        _str(get("output")),
        _enum(_MODE, get("mode")),
        _enum(_STATUS, get("status")),
        _str(get("error")),
        metadata,
        _when(get("createdAt")),
        _when(get("completedAt")),
        _str(get("sessionProtocol")),
        backed,
        _str(get("threadStatus")),
        _str(get("threadTitle")),
    )


def page_from_dict(body: dict[str, Any]) -> AgentRunList:
    runs = body.get("data") or []
    return AgentRunList(
        _str(body.get("serverId")),
        _str(body.get("agentRuntimeId")),
        _str(body.get("object")),
        tuple(run_from_dict(item) for item in runs),
    )
