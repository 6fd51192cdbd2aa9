"""The CLI's pieces in-process: fleet input, shards, error lines, JSON shapes, tables."""

from __future__ import annotations

import argparse
import io
from datetime import UTC, datetime

import pytest
from rich.console import Console

from acp_async import AgentRun, AgentRunList, RunEvent, ServerRuns
from acp_async.cli import _report
from acp_async.cli._human import event_line, poll_table, runs_table
from acp_async.cli._parser import UsageError
from acp_async.cli._report import describe, error_json, event_json, page_json, redact
from acp_async.cli._servers import parse_shard, read_ids, server_ids
from acp_async.errors import (
    APIConnectionError,
    APITimeoutError,
    NotFoundError,
    RateLimitError,
    ResponseValidationError,
)


@pytest.mark.parametrize(("text", "pair"), [("0/1", (0, 1)), ("2/3", (2, 3)), ("9/10", (9, 10))])
def test_parse_shard_accepts_index_over_count(text: str, pair: tuple[int, int]) -> None:
    """`I/N` with 0 <= I < N is worker I of N."""
    assert parse_shard(text) == pair


@pytest.mark.parametrize("text", ["1/1", "-1/3", "3", "a/b", "1/0", "/", "1/2/3"])
def test_parse_shard_refuses_the_rest(text: str) -> None:
    """Anything else is refused with a message showing the expected form."""
    with pytest.raises(argparse.ArgumentTypeError, match="I/N"):
        parse_shard(text)


def test_read_ids_skips_blanks_and_comments_and_names_bad_lines() -> None:
    """Ids are stripped; a bad one is a usage error naming where it was."""
    assert read_ids(["a\n", "\n", "# c\n", " b \n"], "f") == ["a", "b"]
    with pytest.raises(UsageError, match=r"'\.\.' in f, line 2"):
        read_ids(["a", ".."], "f")


def test_server_ids_keep_order_without_repeats() -> None:
    """Arguments keep their order; a repeated id is polled once."""
    assert server_ids(["b", "a", "b"], None, None) == (["b", "a"], 2)


def test_describe_a_status_error_in_one_line() -> None:
    """Status, phrase, message, code, request id and Retry-After, when there are any."""
    exc = NotFoundError(
        "Server 'x' not found", status=404, code="server_not_found", request_id="r1"
    )
    assert describe(exc) == (
        "HTTP 404 Not Found: Server 'x' not found (code server_not_found, request id r1)"
    )
    limited = RateLimitError("Too Many Requests", status=429, retry_after=120.0)
    assert describe(limited) == "HTTP 429 Too Many Requests (retry after 120s)"


def test_describe_the_other_errors() -> None:
    """Timeouts, connection failures and bad bodies say which they are, and the URL once."""
    url = "http://h:1/v1/servers/s/runtime/agent/runs"
    timeout = APITimeoutError("timed out after 2s")
    timeout.url = url
    assert describe(timeout) == f"timed out after 2s ({url})"
    bad = ResponseValidationError("$.data: x")
    assert describe(bad) == "bad response: $.data: x"
    bad.url = url
    assert describe(bad) == f"bad response: $.data: x ({url})"


REFUSED = (
    "connection failed: ClientConnectorError: Cannot connect to host h:1 ssl:default "
    "[Connect call failed ('127.0.0.1', 1)]"
)


def test_a_connection_error_is_said_once_without_aiohttp_internals() -> None:
    """No aiohttp class name, no `ssl:default`, no repeated address: the reason and the URL."""
    url = "http://h:1/v1/servers/s/runtime/agent/runs"
    refused = APIConnectionError(REFUSED)
    refused.url = url
    assert describe(refused) == f"connection failed: connect call failed ({url})"
    reset = APIConnectionError("connection failed: ServerDisconnectedError: Server disconnected")
    assert describe(reset) == "connection failed: server disconnected"


def test_redact_hides_the_clients_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """Should the token ever reach a message, the line shows *** instead."""
    monkeypatch.setattr(_report, "_SECRETS", set())
    _report.hide("tok-123456")
    assert redact("Bearer tok-123456 leaked") == "Bearer *** leaked"


def test_error_json_uses_the_api_field_names() -> None:
    """A status error becomes {type, status, message, code, requestId}."""
    exc = NotFoundError("gone", status=404, code="server_not_found", request_id="r1")
    assert error_json(exc) == {
        "type": "NotFoundError",
        "message": "gone",
        "status": 404,
        "code": "server_not_found",
        "requestId": "r1",
    }


RUN = AgentRun(
    id="run-1",
    server_id="srv-1",
    title="Title",
    status="queued",
    mode="async",
    created_at=datetime(2025, 6, 2, 9, 0, tzinfo=UTC),
)


def test_page_and_event_json_are_camel_case() -> None:
    """Pages and events use the API's names: serverId, createdAt, previous."""
    page = page_json("srv-1", AgentRunList(object="list", data=(RUN,)))
    assert page == {
        "serverId": "srv-1",
        "object": "list",
        "data": [
            {
                "id": "run-1",
                "serverId": "srv-1",
                "title": "Title",
                "mode": "async",
                "status": "queued",
                "createdAt": "2025-06-02T09:00:00Z",
            }
        ],
    }
    done = AgentRun(id="run-1", status="completed")
    event = event_json(RunEvent("updated", "srv-1", run=done, previous=RUN))
    assert event["kind"] == "updated"
    assert event["previous"]["status"] == "queued"
    assert event["run"] == {"id": "run-1", "status": "completed"}


def render(renderable: object) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=200, color_system=None).print(renderable)
    return buffer.getvalue()


def test_runs_table_shows_missing_fields_as_dashes() -> None:
    """A run the server sent half-empty still gets a full row."""
    text = render(runs_table([RUN, AgentRun()]))
    assert "2025-06-02 09:00:00" in text
    assert text.splitlines()[-1].split() == ["-"] * 6


def test_poll_table_counts_and_marks_failures() -> None:
    """A failed server has dashes and its short error; the footer counts failures."""
    ok = ServerRuns("srv-1", result=AgentRunList(data=(RUN,)))
    bad = ServerRuns("srv-2", error=NotFoundError("gone", status=404))
    lines = render(poll_table([ok, bad])).splitlines()
    assert lines[2].split() == ["srv-1", "1", "1", "0", "0", "0", "0"]
    assert lines[3].split() == ["srv-2", *["-"] * 6, "HTTP", "404"]
    assert lines[-1].split() == ["2", "servers", "1", "1", "0", "0", "0", "0", "1", "failed"]


def test_event_line_shows_the_status_change() -> None:
    """An update reads `previous -> current` after the server and run ids."""
    done = AgentRun(id="run-1", status="completed", title="Title")
    line = event_line(RunEvent("updated", "srv-1", run=done, previous=RUN), 8).plain
    assert line.split()[1:] == ["updated", "srv-1", "run-1", "queued", "->", "completed", "Title"]


def test_the_cli_uses_the_public_api() -> None:
    """The CLI imports public names only; `_validate` and `_log` alone, so its argument
    checks are the SDK's own (no public name checks a lone value) and its log lines are
    escaped as the fleet escapes the errors it keeps."""
    import ast
    from pathlib import Path

    import acp_async.cli

    private = set()
    for path in Path(acp_async.cli.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 2:
                names = [node.module] if node.module else [a.name for a in node.names]
                private |= {
                    f"{path.name}: {n}" for n in names if n.startswith("_") and n != "__version__"
                }
    assert {entry.split(": ")[1] for entry in private} == {"_validate", "_log"}, private
