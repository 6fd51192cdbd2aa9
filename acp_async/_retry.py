"""The one owner of "try again?" and "does this end the loop?".

``decide(exc, context)`` is the table every loop asks (a single call's retry loop,
``watch``, gap closing, ``wait_for``, a fleet worker): retry, mark this server failing,
or end the loop. ``Backoff`` is the one backoff (request retries, a failing server's
cadence, Redis reconnects). ``RetryPolicy.delay`` is pure, and the caller extends the
shared ``CoolDown`` itself.
"""

from __future__ import annotations

import enum
import math
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import attrs

from .errors import (
    ACPError,
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    ResponseValidationError,
    UnprocessableEntityError,
)

__all__ = (
    "LOOP_ENDING",
    "Backoff",
    "Context",
    "CoolDown",
    "Kind",
    "RetryPolicy",
    "Verdict",
    "decide",
    "instant_backoff",
    "jittered",
    "kind_of",
    "parse_retry_after",
)

RETRYABLE_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})

_instant = False


@contextmanager
def instant_backoff() -> Iterator[None]:
    """Zero backoff and exact poll intervals inside the block (``Retry-After`` still holds)."""
    global _instant  # noqa: PLW0603 - a process-wide switch is the point
    previous, _instant = _instant, True
    try:
        yield
    finally:
        _instant = previous


def jittered(delay: float, spread: float = 0.2) -> float:
    """``delay`` spread by +-``spread`` so many callers drift apart; exact under the switch."""
    return delay if _instant else delay * random.uniform(1 - spread, 1 + spread)


@attrs.frozen
class Backoff:
    """Capped exponential backoff with full jitter: before try ``n`` (1-based) after a
    failure, wait a random time in ``[0, min(cap, first * 2**(n-1))]``; zero under
    ``instant_backoff``. Full jitter spreads many waiters over the whole range, so a
    fleet that failed together does not retry together."""

    first: float
    cap: float

    def delay(self, tries: int) -> float:
        if _instant:
            return 0.0
        # The exponent is capped: a failure streak of any length never overflows a float.
        ceiling = min(self.cap, self.first * 2.0 ** min(max(tries - 1, 0), 64))
        return random.uniform(0.0, ceiling)


class Verdict(enum.Enum):
    """What a loop does with an error."""

    RETRY = "retry"  # the same request may succeed later: send it again
    FAILING = "failing"  # this server is failing; every other server goes on
    END = "end"  # no later poll can fix it: the loop ends, raising the error


class Context(enum.Enum):
    """Where the error was met: the columns of ``LOOP_ENDING``."""

    CALL = "single call"  # the send path's retry loop (list, iter, pages, list_many)
    WATCH = "watch poll"  # client.runs.watch, one server's poll
    GAP = "gap closing"  # a larger page asked for after a full page of new runs
    WAIT_FOR = "wait_for"  # client.runs.wait_for, until its deadline
    FLEET = "fleet poll"  # a fleet worker, one claimed server's poll


class Kind(enum.Enum):
    """What went wrong: the rows of ``LOOP_ENDING``."""

    REFUSED_TOKEN = "401: the token was refused"
    REFUSED_REQUEST = "400/422 while no server has answered this request yet"
    REFUSED_FOR_SERVER = "400/422 once a server has answered this request"
    TRANSIENT = "connection error, timeout, 408, 409, 429, 500, 502, 503, 504"
    INVALID = "ResponseValidationError: a body that cannot be decoded, structured or fingerprinted"
    OTHER = "any other ACPError: 402, 403, 404, 413, 501, a redirect off the origin"
    BUG = "any other exception: a bug, ours or a dependency's"


_R, _F, _E = Verdict.RETRY, Verdict.FAILING, Verdict.END

# Which errors end a loop: the one table. In a single call "end" raises to the caller
# (no loop to keep); in gap closing "failing" means the larger page failed and the page
# already read stands (the server did answer), while "end" ends the watch or the worker.
# In a watch or a fleet poll, "failing" is an error event (watch) or the failing set
# (fleet) and the failing cadence; a bug there is caught at that server's boundary,
# logged once with its traceback, and counted as that server failing.
#                        CALL WATCH GAP WAIT_FOR FLEET
LOOP_ENDING: dict[Kind, dict[Context, Verdict]] = {
    kind: dict(zip(Context, row, strict=True))
    for kind, row in {
        Kind.REFUSED_TOKEN:      (_E, _E, _E, _E, _E),
        Kind.REFUSED_REQUEST:    (_E, _E, _F, _E, _F),
        Kind.REFUSED_FOR_SERVER: (_E, _F, _F, _E, _F),
        Kind.TRANSIENT:          (_R, _F, _F, _R, _F),
        Kind.INVALID:            (_E, _F, _F, _R, _F),
        Kind.OTHER:              (_E, _F, _F, _E, _F),
        Kind.BUG:                (_E, _F, _F, _E, _F),
    }.items()
}  # fmt: skip


def kind_of(exc: BaseException, *, answered: bool = False) -> Kind:
    """The row of ``exc``; ``answered``: a server has answered this loop's request."""
    if isinstance(exc, AuthenticationError):
        return Kind.REFUSED_TOKEN
    if isinstance(exc, BadRequestError | UnprocessableEntityError):
        return Kind.REFUSED_FOR_SERVER if answered else Kind.REFUSED_REQUEST
    if isinstance(exc, APIStatusError):
        return Kind.TRANSIENT if exc.status in RETRYABLE_STATUSES else Kind.OTHER
    if isinstance(exc, APIConnectionError):
        return Kind.TRANSIENT
    if isinstance(exc, ResponseValidationError):
        return Kind.INVALID
    return Kind.OTHER if isinstance(exc, ACPError) else Kind.BUG


def decide(exc: BaseException, context: Context, *, answered: bool = False) -> Verdict:
    """Retry, mark this server failing, or end the loop: ``LOOP_ENDING`` for ``exc`` met
    in ``context``. ``answered``: some server has already answered the loop's request
    successfully (it matters only for a 400/422 in a watch)."""
    return LOOP_ENDING[kind_of(exc, answered=answered)][context]


@attrs.frozen
class RetryPolicy:
    """Capped exponential backoff with full jitter; ``Retry-After`` honoured up to a cap."""

    max_retries: int = 2
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 60.0
    _backoff: Backoff = attrs.field(init=False, repr=False)

    @_backoff.default
    def _make_backoff(self) -> Backoff:
        return Backoff(self.initial_backoff, self.max_backoff)

    def backoff(self, retry: int) -> float:
        """Delay before retry number ``retry`` (1-based)."""
        return self._backoff.delay(retry)

    def is_transient(self, exc: BaseException) -> bool:
        """Could the same request succeed if sent again later? ``LOOP_ENDING``'s answer
        for a single call: connection errors, timeouts and statuses 408, 409, 429, 500,
        502-504 could; a malformed 2xx body or any other status will not fix itself.
        """
        return decide(exc, Context.CALL) is Verdict.RETRY

    def delay(self, exc: ACPError, attempt: int, time_left: float) -> float | None:
        """Seconds to wait before retrying after ``exc`` on attempt ``attempt`` (1-based), or
        None to give up: ``LOOP_ENDING`` says not to retry it, out of retries, a
        ``Retry-After`` beyond the cap, or no time left for the wait. It changes nothing: a
        429's shared pause is the caller's.
        """
        if attempt > self.max_retries or decide(exc, Context.CALL) is not Verdict.RETRY:
            return None
        retry_after = exc.retry_after if isinstance(exc, APIStatusError) else None
        if retry_after is not None and retry_after > self.max_retry_after:
            return None
        wait = retry_after if retry_after is not None else self.backoff(attempt)
        return wait if wait < time_left else None

    def budget(self, attempt_timeout: float) -> float:
        """The longest a whole call may take: every attempt plus every capped wait."""
        longest_wait = max(self.max_backoff, self.max_retry_after)
        return (self.max_retries + 1) * attempt_timeout + self.max_retries * longest_wait


def parse_retry_after(
    value: str | None, now: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return max(0.0, (when - now()).total_seconds())
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


class CoolDown:
    """A pause shared by every request of a client after the host said 429."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until = 0.0

    @property
    def started(self) -> bool:
        """Has any 429 ever paused the client? Until then there is no clock to read."""
        return self._until > 0.0

    def remaining(self) -> float:
        return max(0.0, self._until - self._clock())

    def extend(self, seconds: float) -> float:
        """Pause until ``seconds`` from now (if later); returns how much the pause grew."""
        now = self._clock()
        until = now + seconds
        grown = max(0.0, until - max(self._until, now))
        self._until = max(self._until, until)
        return grown
