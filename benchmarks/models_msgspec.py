"""msgspec Structs for the same shape: the typed-decode speed limit in Python today."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class Run(msgspec.Struct, rename="camel", frozen=True):
    id: str | None = None
    server_id: str | None = None
    thread_id: str | None = None
    title: str | None = None
    input: str | None = None
    output: str | None = None
    # msgspec cannot express "a known enum member, else the plain str": both stay str.
    mode: str | None = None
    status: str | None = None
    error: str | None = None
    metadata: dict[str, Any] | None = None
    created_at: datetime | None = None
    completed_at: datetime | None = None
    session_protocol: str | None = None
    thread_backed: bool | None = None
    thread_status: str | None = None
    thread_title: str | None = None


class Page(msgspec.Struct, rename="camel", frozen=True):
    server_id: str | None = None
    agent_runtime_id: str | None = None
    object: str | None = None
    data: tuple[Run, ...] = ()


PAGE_DECODER = msgspec.json.Decoder(Page)
RUNS_DECODER = msgspec.json.Decoder(tuple[Run, ...])
