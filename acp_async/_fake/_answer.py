"""The API's responses as data: a page of runs, a JSON error, the headers every answer has.

An `Answer` is built before anything is sent, so a fault can send it whole, cut
short or late (see `_faults`).
"""

from __future__ import annotations

import http
import json
from collections.abc import Mapping
from typing import Any, Final, Literal
from urllib.parse import quote

import attrs

from ._world import Server

__all__ = ("RUNS_PATH", "SHAPES", "Answer", "Shape", "dump", "error", "headers", "page", "phrase")

Shape = Literal["data", "runs", "both"]
SHAPES: Final = ("both", "data", "runs")

RUNS_PATH: Final = "/v1/servers/{server_id}/runtime/agent/runs"


@attrs.frozen
class Answer:
    """A response before it is sent."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: Mapping[str, str] = attrs.field(factory=dict)


def page(
    server: Server, *, limit: int, offset: int, shape: Shape, page_size: int | None, prefix: str
) -> Answer:
    """Runs ``offset`` onwards, at most ``limit`` (and ``page_size``) of them.

    The list goes under ``data``, ``runs`` or both, as ``shape`` says; with a
    ``page_size`` and runs left over, a ``Link: <...>; rel="next"`` carries the
    cursor to the next page.
    """
    size = limit if page_size is None else min(limit, page_size)
    items = server.runs[offset : offset + size]
    payload: dict[str, Any] = {
        "serverId": server.id,
        "agentRuntimeId": server.runtime_id,
        "object": "list",
    }
    if shape in {"data", "both"}:
        payload["data"] = items
    if shape in {"runs", "both"}:
        payload["runs"] = items
    links = {}
    following = offset + size
    if page_size is not None and following < len(server.runs):
        path = prefix + RUNS_PATH.format(server_id=quote(server.id, safe=""))
        links["Link"] = f'<{path}?limit={limit}&cursor={following}>; rel="next"'
    return Answer(200, dump(payload), headers=links)


def error(status: int, error: str, message: str, code: str) -> Answer:
    """An error in the API's JSON form."""
    return Answer(status, dump({"error": error, "message": message, "code": code}))


def headers(answer: Answer, request_id: str) -> dict[str, str]:
    return {"Content-Type": answer.content_type, "X-Request-Id": request_id, **answer.headers}


def dump(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Error"
