"""What a Stainless-style SDK would declare: pydantic v2 models with camelCase aliases."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter
from pydantic.alias_generators import to_camel

from acp_async import RunMode, RunStatus


class _Model(BaseModel):
    # strict: no "5" -> 5 coercion, like our converter; extra keys ignored, like ours.
    model_config = ConfigDict(alias_generator=to_camel, frozen=True, strict=True, extra="ignore")


class Run(_Model):
    id: str | None = None
    server_id: str | None = None
    thread_id: str | None = None
    title: str | None = None
    input: str | None = None
    output: str | None = None
    mode: RunMode | str | None = None
    status: RunStatus | str | None = None
    error: str | None = None
    metadata: dict[str, Any] | None = None
    created_at: datetime | None = None
    completed_at: datetime | None = None
    session_protocol: str | None = None
    thread_backed: bool | None = None
    thread_status: str | None = None
    thread_title: str | None = None


class Page(_Model):
    """As an SDK generated from the OpenAPI spec would have it: both lists, validated."""

    server_id: str | None = None
    agent_runtime_id: str | None = None
    object: str | None = None
    data: list[Run] | None = None
    runs: list[Run] | None = None


RUNS = TypeAdapter(list[Run])
