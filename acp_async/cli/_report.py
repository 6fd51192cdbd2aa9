"""Errors as one line for people, and results as JSON objects in the API's field names.

Nothing here needs ``rich``: ``--json`` and every error line work without the extra.
"""

from __future__ import annotations

import http
import json
import re
import sys
from datetime import datetime
from typing import Any

from .. import (
    ACPError,
    AgentRunList,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    ResponseValidationError,
    RunEvent,
    _log,
    to_json,
)
from ._parser import PROG

# The secrets of this process's client and of its Redis, blanked in anything printed
# (see `redact`).
_SECRETS: set[str] = set()


def clean(text: object) -> str:
    """Text from a server or from Redis made safe for a terminal: each control character
    (C0, DEL, C1) escaped as ``\\x1b``, ``\\n``, ``\\r``, ``\\t``.

    The one helper for every value the CLI prints as text (tables, watch lines, errors,
    group names): a run title holding an escape sequence must not recolour, move or
    clear the screen, nor a newline forge a line. ``--json`` output needs none of it.
    """
    return _log.escape(str(text))


# What a 401 says in every command, the one place it is worded.
AUTH_HINT = (
    "the API refused the credentials: check the API key in ACP_API_KEY (or "
    "COMPUTER_AGENTS_API_KEY), or the runtime token in COMPUTER_AGENTS_RUNTIME_TOKEN"
)


def _phrase(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""


def describe(exc: ACPError) -> str:
    """What went wrong, in one line: status, message, code and request id when known.

    A status error names the server's answer; any other error says what failed and the
    URL it was for, once.
    """
    if isinstance(exc, APIStatusError):
        head = f"HTTP {exc.status} {_phrase(exc.status)}".rstrip()
        text = head if exc.message in (head, _phrase(exc.status)) else f"{head}: {exc.message}"
        extras = [f"code {exc.code}"] if exc.code else []
        if exc.request_id:
            extras.append(f"request id {exc.request_id}")
        if exc.retry_after is not None:
            extras.append(f"retry after {exc.retry_after:g}s")
        text = f"{text} ({', '.join(extras)})" if extras else text
        return f"{text}; {AUTH_HINT}" if isinstance(exc, AuthenticationError) else text
    text, url = str(exc), exc.url
    if isinstance(exc, APITimeoutError):
        text = text if text.startswith("timed out") else f"timed out: {text}"
    elif isinstance(exc, APIConnectionError):
        text = f"connection failed: {_connection_reason(text.removeprefix('connection failed: '))}"
    elif isinstance(exc, ResponseValidationError):
        text = f"bad response: {text}"
    return f"{text} ({url})" if url else text


# aiohttp's wording of a failed connect: "Cannot connect to host h:p ssl:default [reason]".
_CANNOT_CONNECT = re.compile(r"Cannot connect to host (?P<host>\S+) ssl:\S+ \[(?P<why>.*)\]$")
# The class name aiohttp's error is quoted with ("ClientConnectorError: ...").
_CLASS_PREFIX = re.compile(r"^(?:[A-Z][A-Za-z]*(?:Error|Exception|Disconnected)): ")
# The address asyncio repeats after its reason: "Connect call failed ('127.0.0.1', 1)".
_ADDRESS_TUPLE = re.compile(r" \(['\"][^()]*\)$")


def _connection_reason(message: str) -> str:
    """The reason a connection failed, in words: no aiohttp class names, no repetition.

    "ClientConnectorError: Cannot connect to host 127.0.0.1:1 ssl:default [Connect call
    failed ('127.0.0.1', 1)]" becomes "connect call failed"; the URL, said after it, names
    the host.
    """
    reason = _CLASS_PREFIX.sub("", message)
    found = _CANNOT_CONNECT.search(reason)
    if found is None:
        return _lower_first(reason)
    why = _ADDRESS_TUPLE.sub("", found["why"]).strip()
    return _lower_first(why) if why else f"cannot connect to {found['host']}"


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


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


def hide(*secrets: str | None) -> None:
    """Blank ``secrets`` (the client's tokens, Redis's passwords) in everything printed
    from now on."""
    _SECRETS.update(secret for secret in secrets if secret and len(secret) >= 4)


def redact(text: str) -> str:
    """The token, should it ever reach a message, replaced by ``***``.

    The client never puts it in one; this is a second line of defence for a CLI
    whose stderr ends up in CI logs and bug reports.
    """
    for secret in _SECRETS:
        text = text.replace(secret, "***")
    return text


def warn(message: str) -> None:
    """One line on stderr, prefixed with the program name."""
    print(f"{PROG}: {redact(clean(message))}", file=sys.stderr, flush=True)


def warning(message: str) -> None:
    """A ``warning: ...`` line: something to know, nothing failed."""
    warn(f"warning: {message}")


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
    body["data"] = [to_json(run) for run in page.data]
    return body


def event_json(event: RunEvent) -> dict[str, Any]:
    """A watch event: ``kind``, ``serverId`` and the run (with ``previous``) or ``error``."""
    body: dict[str, Any] = {"kind": event.kind, "serverId": event.server_id}
    if event.run is not None:
        body["run"] = to_json(event.run)
    if event.previous is not None:
        body["previous"] = to_json(event.previous)
    if event.error is not None:
        body["error"] = error_json(event.error)
    return body


# The status column of a watch line: wide enough for "completed -> cancelled" where there
# is room, else for "completed" alone (a change then pushes the title a little right).
STATUS_WIDTH, NARROW_STATUS_WIDTH = 21, 9
RUN_ID_WIDTH = 16
# What a watch line needs before its title: time, kind, run id and the gaps between them.
EVENT_FIXED_WIDTH = 8 + 2 + 7 + 2 + 2 + RUN_ID_WIDTH + 2 + 2


def event_parts(
    event: RunEvent, id_width: int, status_width: int = STATUS_WIDTH
) -> list[tuple[str, str]]:
    """A watch line as ``(text, what)`` parts, ``what`` naming the part for colour.

    ``09:14:03  updated  srv-0007  run-...  queued -> running  title``: the same columns
    with and without rich (``event_text`` joins them; ``_human`` colours them).
    """
    parts = [
        (datetime.now().strftime("%H:%M:%S"), "time"),
        ("  ", ""),
        (f"{event.kind:<7}", event.kind),
        ("  ", ""),
        (clean(event.server_id).ljust(id_width), ""),
        ("  ", ""),
    ]
    run = event.run
    if run is None:
        return parts
    parts += [(clean(run.id or "-").ljust(RUN_ID_WIDTH), ""), ("  ", "")]
    change: list[tuple[str, str]] = []
    if event.previous is not None and event.previous.status != run.status:
        change += [(_status(event.previous.status), "status"), (" -> ", "arrow")]
    change.append((_status(run.status), "status"))
    padding = status_width - sum(len(text) for text, _ in change)
    parts += [*change, (" " * max(0, padding), ""), ("  ", ""), (clean(run.title or ""), "")]
    return parts


def _status(status: object) -> str:
    return "-" if status is None else clean(status)


def event_text(event: RunEvent, id_width: int) -> str:
    """A watch line as plain text, for a terminal without rich (or a pipe)."""
    return "".join(text for text, _ in event_parts(event, id_width)).rstrip()


def emit(obj: dict[str, Any]) -> None:
    """One JSON object per line, flushed, so ``jq`` and pipes see each at once."""
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")
    sys.stdout.flush()
