"""Retry policy parts: backoff bounds, Retry-After parsing, the shared cool-down, and the
LOOP_ENDING table (which errors end a loop), row by row."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from acp_async import (
    ACPError,
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    ResponseValidationError,
    UnprocessableEntityError,
)
from acp_async._retry import (
    LOOP_ENDING,
    Backoff,
    Context,
    CoolDown,
    Kind,
    RetryPolicy,
    Verdict,
    decide,
    kind_of,
    parse_retry_after,
)
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


def test_backoff_is_one_formula_with_full_jitter_a_cap_and_the_switch() -> None:
    """Try n waits uniformly in [0, min(cap, first * 2**(n-1))], zero under the testing
    switch, within the cap for a streak of any length; request retries, the failing
    cadence and Redis reconnects all use it."""
    from acp_async._watch._schedule import FAILING
    from acp_async.fleet._outage import REDIS_BACKOFF

    backoff = Backoff(first=0.1, cap=5.0)
    for tries, ceiling in [(1, 0.1), (2, 0.2), (4, 0.8), (7, 5.0), (10**6, 5.0)]:
        delays = [backoff.delay(tries) for _ in range(300)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2  # full jitter: spread over the range
        assert min(delays) < ceiling / 2
    with instant_backoff():
        assert backoff.delay(5) == 0.0
    assert RetryPolicy(initial_backoff=0.5, max_backoff=8.0)._backoff == Backoff(0.5, 8.0)
    assert Backoff(first=1.0, cap=31.0) == FAILING  # in intervals, on top of one interval
    # Redis away for hours: still within 5 s (2**failures once overflowed a float after
    # about 1,100 tries, which killed a worker).
    assert backoff == REDIS_BACKOFF


def test_next_delay_changes_nothing_it_is_given() -> None:
    """The schedule returns a new state with its counters moved on; the given one is as it
    was (next_delay once incremented the caller's counters in place)."""
    from acp_async._watch._schedule import next_delay
    from acp_async._watch._state import ServerState

    state = ServerState(polled=True, quiet_polls=3, errors=2)
    before = state.pack()
    _, failed = next_delay(state, 1.0, failed=True, busy=False)
    _, quiet = next_delay(state, 1.0, failed=False, busy=False)
    _, busy = next_delay(state, 1.0, failed=False, busy=True)
    assert state.pack() == before
    assert (failed.quiet_polls, failed.errors) == (3, 3)
    assert (quiet.quiet_polls, quiet.errors) == (4, 0)
    assert (busy.quiet_polls, busy.errors) == (0, 0)


# -- which errors end a loop: LOOP_ENDING, row by row -------------------------------------

# Each row of the contract, spelled out again here: r retry, f failing, e end, for the
# contexts in this order: single call, watch poll, gap closing, wait_for, fleet poll.
ROWS = [
    (Kind.REFUSED_TOKEN, "e e e e e", [AuthenticationError("x", status=401)]),
    (
        Kind.REFUSED_REQUEST,
        "e e f e f",
        [BadRequestError("x", status=400), UnprocessableEntityError("x", status=422)],
    ),
    (
        Kind.REFUSED_FOR_SERVER,
        "e f f e f",
        [BadRequestError("x", status=400), UnprocessableEntityError("x", status=422)],
    ),
    (
        Kind.TRANSIENT,
        "r f f r f",
        [
            APIConnectionError("reset"),
            APITimeoutError("slow"),
            *(APIStatusError("x", status=s) for s in (408, 500, 502, 503, 504)),
            ConflictError("x", status=409),
            RateLimitError("x", status=429, retry_after=1.0),
        ],
    ),
    (Kind.INVALID, "e f f r f", [ResponseValidationError("not JSON")]),
    (
        Kind.OTHER,
        "e f f e f",
        [
            PaymentRequiredError("x", status=402),
            PermissionDeniedError("x", status=403),
            NotFoundError("x", status=404),
            APIStatusError("x", status=413),
            InternalServerError("x", status=501),
            ACPError("internal error: TypeError: what a boundary makes of a bug"),
        ],
    ),
    (
        Kind.BUG,
        "e f f e f",
        [TypeError("Recursion limit reached"), KeyError("id"), RecursionError(), ValueError()],
    ),
]
_VERDICTS = {"r": Verdict.RETRY, "f": Verdict.FAILING, "e": Verdict.END}


@pytest.mark.parametrize(
    ("kind", "row", "errors"), ROWS, ids=[kind.name.lower() for kind, _, _ in ROWS]
)
def test_loop_ending_row(kind: Kind, row: str, errors: list[Exception]) -> None:
    """Each kind of error gets the contract's verdict in every context: a 401 ends every
    loop; a 400/422 ends a watch only while no server has answered its request, never
    while closing a gap, never a fleet; wait_for retries an invalid body; a bug ends
    nothing but the one server's poll (or is raised to a single call's caller)."""
    answered = kind is Kind.REFUSED_FOR_SERVER
    expected = dict(zip(Context, (_VERDICTS[v] for v in row.split()), strict=True))
    for error in errors:
        assert kind_of(error, answered=answered) is kind, error
        assert {c: decide(error, c, answered=answered) for c in Context} == expected, error
        assert LOOP_ENDING[kind] == expected


def test_loop_ending_answers_every_kind_in_every_context() -> None:
    """The table has no hole: every row names a verdict for every context, and the rows
    tested above are all of them."""
    assert set(LOOP_ENDING) == set(Kind) == {kind for kind, _, _ in ROWS}
    assert all(set(row) == set(Context) for row in LOOP_ENDING.values())


def test_a_single_call_retries_exactly_what_the_table_says() -> None:
    """RetryPolicy asks the table: it retries what LOOP_ENDING retries for a single call,
    and nothing else (a bug is never retried as a connection error)."""
    policy = RetryPolicy(max_retries=2)
    for _, _, errors in ROWS:
        for error in errors:
            retried = decide(error, Context.CALL) is Verdict.RETRY
            assert policy.is_transient(error) is retried
            if isinstance(error, ACPError):
                assert (policy.delay(error, 1, time_left=100.0) is not None) is retried
