"""Log lines: escaped, one line each, and only transitions, at most 20 a minute."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest

from acp_async import ACPClient
from acp_async._log import escape, one_line
from acp_async._watch._transitions import PER_MINUTE, WINDOW, Transitions
from acp_async.cli._logs import LineFormatter
from acp_async.testing import FakeACPServer

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) ")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self) -> list[str]:
        return [record.getMessage() for record in self.records]


@pytest.fixture
def records() -> logging.Logger:
    logger = logging.getLogger(f"test-transitions-{id(object())}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(Records())
    return logger


def _messages(logger: logging.Logger) -> list[str]:
    handler = logger.handlers[0]
    assert isinstance(handler, Records)
    return handler.messages()


def test_escape_writes_control_characters_and_line_breaks_as_escapes() -> None:
    """A newline, an escape sequence, DEL, a C1 character and U+2028 cannot break a line."""
    assert escape("srv\nWARNING forged\x1b[2J\x7f\x9b\u2028end") == (
        "srv\\nWARNING forged\\x1b[2J\\x7f\\x9b\\u2028end"
    )
    assert escape("plain text, é and 日本") == "plain text, é and 日本"


def test_one_line_is_escaped_and_at_most_200_characters() -> None:
    """What the fleet keeps as a server's last error: one line, cut with an ellipsis."""
    kept = one_line("boom\n" * 100)
    assert len(kept) == 200
    assert "\n" not in kept
    assert kept.endswith("\u2026")
    assert one_line("short") == "short"


def _record(message: str, *args: object, exc: BaseException | None = None) -> logging.LogRecord:
    info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("acp_async.fleet", logging.WARNING, __file__, 1, message, args, info)


def test_the_cli_formatter_escapes_the_arguments_into_one_line() -> None:
    """A server id holding a newline does not forge a second log line."""
    line = LineFormatter(tracebacks=False).format(
        _record("fleet: %s is failing: %s", "srv\n2026-01-01 00:00:00,000 INFO forged", "x\x1b")
    )
    assert "\n" not in line
    assert LINE.match(line)
    forged = "srv\\n2026-01-01 00:00:00,000 INFO forged"
    assert line.endswith(f"WARNING fleet: {forged} is failing: x\\x1b")


def test_tracebacks_only_with_verbose() -> None:
    """Without -v an exception is its type and message on the same line; with -v the
    traceback follows, each line escaped."""
    try:
        raise ValueError("bad\nvalue")
    except ValueError as exc:
        error = exc
    short = LineFormatter(tracebacks=False).format(_record("boom", exc=error))
    assert "\n" not in short
    assert short.endswith("WARNING boom (ValueError: bad\\nvalue)")
    long = LineFormatter(tracebacks=True).format(_record("boom", exc=error))
    lines = long.splitlines()
    assert LINE.match(lines[0])
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: bad\\nvalue"


def test_transitions_log_the_first_failure_and_the_recovery(records: logging.Logger) -> None:
    """Failing is a WARNING with the error, escaped; recovered an INFO."""
    transitions = Transitions(records, "fleet", lambda: 1, clock=Clock())
    transitions.failing("srv-1", "404: not found\n")
    transitions.recovered("srv-1")
    handler = records.handlers[0]
    assert isinstance(handler, Records)
    assert [(r.levelname, r.getMessage()) for r in handler.records] == [
        ("WARNING", "fleet: srv-1 is failing: 404: not found\\n"),
        ("INFO", "fleet: srv-1 recovered"),
    ]


def test_at_most_20_lines_a_minute_then_one_summary_a_minute(records: logging.Logger) -> None:
    """An outage: 20 lines, then one summary with the number failing; no more lines or
    summaries within the minute; the next minute lets 20 more through and one summary."""
    clock = Clock()
    failing = [0]
    transitions = Transitions(records, "fleet", lambda: failing[0], clock=clock)
    for i in range(PER_MINUTE + 30):
        failing[0] = i + 1
        transitions.failing(f"srv-{i}", "503")
    messages = _messages(records)
    assert len(messages) == PER_MINUTE + 1
    assert all(" is failing: 503" in m for m in messages[:PER_MINUTE])
    assert messages[-1].startswith(f"fleet: {PER_MINUTE + 1} servers failing;")
    clock.now += WINDOW / 2  # the same minute: still held back, no second summary
    for i in range(10):
        transitions.recovered(f"srv-{i}")
    assert len(_messages(records)) == PER_MINUTE + 1
    assert transitions.held == 30 + 10
    clock.now += WINDOW / 2  # a new minute
    for i in range(PER_MINUTE + 5):
        transitions.failing(f"srv-again-{i}", "503")
    messages = _messages(records)[PER_MINUTE + 1 :]
    assert len(messages) == PER_MINUTE + 1
    assert "servers failing" in messages[-1]
    assert "(41 so far)" in messages[-1]


async def test_the_watch_logs_a_failing_server_once_and_its_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Three failed polls of a server are one WARNING; its next good poll an INFO."""
    async with FakeACPServer(servers=["srv-a", "srv-b"]) as fake:
        fake.fail("status", status=404, server_id="srv-b", times=3)
        async with ACPClient(fake.token, base_url=fake.base_url, max_retries=0) as client:
            caplog.set_level(logging.INFO, logger="acp_async.watch")
            errors = 0
            async with asyncio.timeout(10):
                async for event in client.runs.watch(["srv-a", "srv-b"], interval=0.01):
                    errors += event.kind == "error"
                    recovered = any("recovered" in r.getMessage() for r in caplog.records)
                    if errors == 3 and recovered:
                        break
    lines = [r for r in caplog.records if r.name == "acp_async.watch"]
    assert [(r.levelname, r.getMessage().split(":")[1].strip()) for r in lines] == [
        ("WARNING", "srv-b is failing"),
        ("INFO", "srv-b recovered"),
    ]
