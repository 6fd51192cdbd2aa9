"""The one owner of "try again?": which errors are transient, how long to wait, and the
pause a 429 imposes on the whole client.

The client's send loop, ``wait_for`` and the watch all ask ``RetryPolicy.is_transient``;
``RetryPolicy.delay`` is pure, and the caller extends the shared ``CoolDown`` itself.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import attrs

from .errors import ACPError, APIConnectionError, APIStatusError

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


def client_delay(delay: float) -> float:
    """A delay the client chose (not the server), or zero under ``instant_backoff``."""
    return 0.0 if _instant else delay


def jittered(delay: float, spread: float = 0.2) -> float:
    """``delay`` spread by +-``spread`` so many callers drift apart; exact under the switch."""
    return delay if _instant else delay * random.uniform(1 - spread, 1 + spread)


@attrs.frozen
class RetryPolicy:
    """Capped exponential backoff with full jitter; ``Retry-After`` honoured up to a cap."""

    max_retries: int = 2
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = 60.0

    def backoff(self, retry: int) -> float:
        """Delay before retry number ``retry`` (1-based)."""
        # The exponent is capped: a huge max_retries must not overflow a float.
        ceiling = min(self.max_backoff, self.initial_backoff * 2.0 ** min(retry - 1, 32))
        return client_delay(random.uniform(0, ceiling))

    def is_transient(self, exc: BaseException) -> bool:
        """Could the same request succeed if sent again later?

        Connection errors, timeouts and statuses 408, 409, 429, 500, 502-504 could; a
        malformed 2xx body or any other status will not fix itself.
        """
        if isinstance(exc, APIStatusError):
            return exc.status in RETRYABLE_STATUSES
        return isinstance(exc, APIConnectionError)

    def delay(self, exc: ACPError, attempt: int, time_left: float) -> float | None:
        """Seconds to wait before retrying after ``exc`` on attempt ``attempt`` (1-based), or
        None to give up: not transient, out of retries, a ``Retry-After`` beyond the cap, or
        no time left for the wait. It changes nothing: a 429's shared pause is the caller's.
        """
        if attempt > self.max_retries or not self.is_transient(exc):
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

    def remaining(self) -> float:
        return max(0.0, self._until - self._clock())

    def extend(self, seconds: float) -> float:
        """Pause until ``seconds`` from now (if later); returns how much the pause grew."""
        now = self._clock()
        until = now + seconds
        grown = max(0.0, until - max(self._until, now))
        self._until = max(self._until, until)
        return grown
