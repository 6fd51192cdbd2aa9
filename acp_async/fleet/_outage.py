"""Redis away, as a worker or a consumer lives through it: said once, waited out, and
said again when it ends.

The first failure of an outage is a WARNING naming Redis (``host:port/db``, never its
password); each retry after it is INFO on ``acp_async.fleet.retries`` (the CLI shows it
with ``-v``, beside the client's retries); the first answer after it is INFO with how
long it lasted. ``acp_fleet_redis_up`` follows: 1 once Redis answered, 0 while retrying.
"""

from __future__ import annotations

import asyncio

from .._log import fleet_log as log
from .._log import fleet_retry_log
from .._observe import Observer
from .._retry import Backoff
from ._errors import RedisUnavailableError

__all__ = ("REDIS_BACKOFF", "Outage")

# Between tries while Redis is away: full jitter from 0.1 s, doubling, up to 5 s (the
# exponent is capped, so an outage of any length never overflows a float).
REDIS_BACKOFF = Backoff(first=0.1, cap=5.0)


class Outage:
    """One loop's view of Redis: ``answered()`` after each reply, ``wait(error)`` after
    each ``RedisUnavailableError``. ``who`` starts each line (``fleet``, ``fleet events``)."""

    def __init__(self, who: str, observer: Observer) -> None:
        self._who = who
        self._observer = observer
        self._failures = 0  # in a row: the backoff's try number
        self._since = 0.0  # loop time of the outage's first failure
        self._up: bool | None = None  # as last reported (None: not yet)

    def answered(self) -> None:
        """Redis answered: an outage ends (INFO), the gauge says up."""
        if self._failures:
            took = asyncio.get_running_loop().time() - self._since
            log.info(
                "%s: Redis answers again after %.1fs (%d tries)", self._who, took, self._failures
            )
            self._failures = 0
        self._report(up=True)

    async def wait(self, error: RedisUnavailableError) -> None:
        """Redis did not answer: say so (the first time), then wait before the next try."""
        self._failures += 1
        pause = REDIS_BACKOFF.delay(self._failures)
        if self._failures == 1:
            self._since = asyncio.get_running_loop().time()
            log.warning(
                "%s: %s (retrying until it answers, at most %gs apart)",
                self._who,
                error,
                REDIS_BACKOFF.cap,
            )
        else:
            fleet_retry_log.info(
                "%s: %s; retry %d in %.2fs", self._who, error, self._failures, pause
            )
        self._report(up=False)
        await asyncio.sleep(pause)

    def _report(self, *, up: bool) -> None:
        if up is not self._up:
            self._up = up
            self._observer.fleet_redis_up(up)
