"""Retry policy parts: backoff bounds, Retry-After parsing, the shared cool-down."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from acp_async import (
    ACPError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    RateLimitError,
    ResponseValidationError,
)
from acp_async._retry import CoolDown, RetryPolicy, parse_retry_after
from acp_async.testing import instant_backoff

NOW = datetime(2026, 11, 29, 6, 0, 0, tzinfo=UTC)


def test_backoff_is_full_jitter_doubling_to_a_cap() -> None:
    """Retry n waits uniformly in [0, min(8, 0.5 * 2**(n-1))]."""
    policy = RetryPolicy()
    for retry, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (5, 8.0), (10, 8.0)]:
        delays = [policy.backoff(retry) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2  # jittered over the range, not a constant


def test_instant_backoff_makes_delays_zero_and_restores() -> None:
    """The testing switch zeroes backoff inside the block only."""
    policy = RetryPolicy()
    with instant_backoff():
        assert policy.backoff(3) == 0.0
    assert max(policy.backoff(3) for _ in range(50)) > 0


def test_budget_bounds_all_attempts_and_waits() -> None:
    """The overall deadline covers every attempt and every capped wait."""
    assert RetryPolicy(max_retries=2).budget(10.0) == 3 * 10.0 + 2 * 60.0
    assert RetryPolicy(max_retries=0).budget(10.0) == 10.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        (" 0 ", 0.0),
        ("1.5", 1.5),
        ("Sun, 29 Nov 2026 06:00:30 GMT", 30.0),
        ("Sun, 29 Nov 2026 05:59:00 GMT", 0.0),
        ("-1", None),
        ("soon", None),
        ("inf", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_seconds_or_http_date(header: str | None, seconds: float | None) -> None:
    """Retry-After is delta-seconds or an HTTP-date; nonsense is ignored."""
    assert parse_retry_after(header, now=lambda: NOW) == seconds


def test_cool_down_keeps_the_latest_end() -> None:
    """A shorter extension never shortens the pause; time runs it down to zero."""
    now = [0.0]
    cool = CoolDown(clock=lambda: now[0])
    cool.extend(5.0)
    cool.extend(2.0)
    assert cool.remaining() == 5.0
    now[0] = 4.0
    assert cool.remaining() == 1.0
    now[0] = 6.0
    assert cool.remaining() == 0.0


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (APIConnectionError("reset"), True),
        (APITimeoutError("slow"), True),
        (InternalServerError("x", status=503), True),
        (RateLimitError("x", status=429), True),
        (ConflictError("x", status=409), True),
        (APIStatusError("x", status=408), True),
        (InternalServerError("x", status=501), False),
        (NotFoundError("x", status=404), False),
        (AuthenticationError("x", status=401), False),
        (ResponseValidationError("not JSON"), False),
    ],
)
def test_is_transient_is_the_one_answer(error: ACPError, transient: bool) -> None:
    """Connection errors, timeouts and the retryable statuses are transient; nothing else."""
    assert RetryPolicy().is_transient(error) is transient


def test_delay_is_pure_and_gives_up_for_the_right_reasons() -> None:
    """delay() honours Retry-After, refuses past the cap, the budget or the retry count,
    and changes nothing (asking twice gives the same answer for a Retry-After)."""
    policy = RetryPolicy(max_retries=2)
    busy = InternalServerError("x", status=503, retry_after=1.5)
    assert policy.delay(busy, 1, time_left=10) == 1.5
    assert policy.delay(busy, 1, time_left=10) == 1.5
    assert policy.delay(busy, 3, time_left=10) is None  # out of retries
    assert policy.delay(busy, 1, time_left=1.0) is None  # no time left for the wait
    assert policy.delay(NotFoundError("x", status=404), 1, time_left=10) is None
    assert policy.delay(RateLimitError("x", status=429, retry_after=61), 1, time_left=900) is None
    with instant_backoff():
        assert policy.delay(APIConnectionError("reset"), 1, time_left=10) == 0.0


def test_cool_down_reports_how_much_it_grew() -> None:
    """Overlapping 429s add only the wall-clock time they extend the pause by."""
    now = [100.0]
    pause = CoolDown(clock=lambda: now[0])
    assert pause.extend(5.0) == 5.0
    assert pause.extend(3.0) == 0.0  # inside the pause already
    now[0] += 2.0
    assert pause.extend(5.0) == 2.0  # 102 + 5 = 107 ends 2 s after 105
    assert pause.remaining() == 5.0


def test_backoff_of_a_very_late_retry_stays_capped() -> None:
    """Retry 5,000 (max_retries is the caller's) waits within the cap, with no overflow."""
    assert 0 <= RetryPolicy(max_retries=10_000).backoff(5_000) <= 8.0
