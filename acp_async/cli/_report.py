"""Errors as one line for people, and results as JSON objects in the API's field names.

Nothing here needs ``rich``: ``--json`` and every error line work without the extra.
"""

from __future__ import annotations

import http
import json
import os
import sys
import unicodedata
from typing import Any

from .. import _converter
from .._config import API_KEY_ENV
from ..errors import (
    ACPError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ResponseValidationError,
)
from ..models import AgentRunList, RunEvent

PROG = "acp-async"


def clean(text: object) -> str:
    """Server-controlled text made safe for a terminal: control characters become spaces.

    A run title with an escape sequence must not recolour, move or clear the screen.
    """
    return "".join(" " if unicodedata.category(c) == "Cc" else c for c in str(text))


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def describe(exc: ACPError) -> str:
    """What went wrong, in one line: status, message, code and request id when known."""
    if isinstance(exc, APIStatusError):
        head = f"HTTP {exc.status} {_phrase(exc.status)}".rstrip()
        text = head if exc.message in (head, _phrase(exc.status)) else f"{head}: {exc.message}"
        extras = [f"code {exc.code}"] if exc.code else []
        if exc.request_id:
            extras.append(f"request id {exc.request_id}")
        if exc.retry_after is not None:
            extras.append(f"retry after {exc.retry_after:g}s")
        return f"{text} ({', '.join(extras)})" if extras else text
    if isinstance(exc, APITimeoutError):
        return f"timed out: {exc}"
    if isinstance(exc, APIConnectionError):
        return f"connection failed: {exc}"
    if isinstance(exc, ResponseValidationError):
        return f"bad response: {exc}"
    return str(exc)


def short(exc: ACPError) -> str:
    """A few words for a table cell; the full story goes to stderr."""
    if isinstance(exc, APIStatusError):
        return f"HTTP {exc.status}"
    if isinstance(exc, APITimeoutError):
        return "timeout"
    if isinstance(exc, APIConnectionError):
        return "connection failed"
    if isinstance(exc, ResponseValidationError):
        return "bad response"
    return type(exc).__name__


def redact(text: str) -> str:
    """The token, should it ever reach a message, replaced by ``***``.

    The client never puts it in one; this is a second line of defence for a CLI
    whose stderr ends up in CI logs and bug reports.
    """
    for name in API_KEY_ENV:
        secret = os.environ.get(name, "").strip()
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def warn(message: str) -> None:
    """One line on stderr, prefixed with the program name."""
    print(f"{PROG}: {redact(clean(message))}", file=sys.stderr, flush=True)


def note(message: str) -> None:
    """A remark for the person at the terminal, on stderr so stdout stays the result."""
    print(redact(clean(message)), file=sys.stderr, flush=True)


def error_line(server_id: str, exc: ACPError, suffix: str = "") -> None:
    warn(f"{server_id}: {describe(exc)}{suffix}")


def error_json(exc: ACPError) -> dict[str, Any]:
    """An error as a JSON object, named like the API's error body."""
    body: dict[str, Any] = {"type": type(exc).__name__, "message": redact(describe(exc))}
    if isinstance(exc, APIStatusError):
        body.update(status=exc.status, message=redact(exc.message))
        if exc.code:
            body["code"] = exc.code
        if exc.request_id:
            body["requestId"] = exc.request_id
    return body


def page_json(server_id: str, page: AgentRunList) -> dict[str, Any]:
    """A page as the API sent it (``data`` only, ``runs`` merged into it)."""
    body: dict[str, Any] = {"serverId": page.server_id or server_id}
    if page.agent_runtime_id is not None:
        body["agentRuntimeId"] = page.agent_runtime_id
    if page.object is not None:
        body["object"] = page.object
    body["data"] = [_converter.to_json(run) for run in page.data]
    return body


def event_json(event: RunEvent) -> dict[str, Any]:
    """A watch event: ``kind``, ``serverId`` and the run (with ``previous``) or ``error``."""
    body: dict[str, Any] = {"kind": event.kind, "serverId": event.server_id}
    if event.run is not None:
        body["run"] = _converter.to_json(event.run)
    if event.previous is not None:
        body["previous"] = _converter.to_json(event.previous)
    if event.error is not None:
        body["error"] = error_json(event.error)
    return body


def emit(obj: dict[str, Any]) -> None:
    """One JSON object per line, flushed, so ``jq`` and pipes see each at once."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")
    sys.stdout.flush()
