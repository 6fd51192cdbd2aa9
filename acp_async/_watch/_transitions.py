"""Which servers' health changes get a log line: the first failure, the recovery.

A watch or a fleet worker logs only transitions (a server that starts failing: WARNING
with its id and error; one that recovers: INFO), never each repeated failure. When many
servers fail at once (an API outage), ``Transitions`` lets ``PER_MINUTE`` such lines
through a minute, then writes one WARNING summary with the number of servers failing, at
most once a minute, so the log stays readable. The clock is injected: the limit is tested
without sleeping.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from .._log import one_line

__all__ = ("PER_MINUTE", "WINDOW", "Transitions")

PER_MINUTE = 20  # failing/recovered lines a window lets through
WINDOW = 60.0  # seconds: the window, and the least time between two summaries


class Transitions:
    """Logs servers that start failing or recover on ``logger``, rate-limited.

    ``where`` starts each line (``"fleet"``, ``"watch"``); ``failing_count`` is the number
    of servers failing as its owner sees it, for the summary line.
    """

    def __init__(
        self,
        logger: logging.Logger,
        where: str,
        failing_count: Callable[[], int],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._log = logger
        self._where = where
        self._failing_count = failing_count
        self._clock = clock
        self._window_start: float | None = None
        self._lines = 0  # lines written in this window
        self.held = 0  # lines held back since the last summary
        self._summarized: float | None = None  # when the last summary was written

    def failing(self, server_id: str, error: str) -> None:
        """``server_id``'s poll failed, its last one had not: WARNING, with the error."""
        self._line(
            logging.WARNING, "%s: %s is failing: %s", self._where, server_id, one_line(error)
        )

    def recovered(self, server_id: str) -> None:
        """``server_id``'s poll succeeded, its last one had failed: INFO."""
        self._line(logging.INFO, "%s: %s recovered", self._where, server_id)

    def _line(self, level: int, message: str, *args: object) -> None:
        now = self._clock()
        if self._window_start is None or now - self._window_start >= WINDOW:
            self._window_start, self._lines = now, 0
        if self._lines < PER_MINUTE:
            self._lines += 1
            self._log.log(level, message, *args)
            return
        self.held += 1
        if self._summarized is None or now - self._summarized >= WINDOW:
            self._summarized = now
            self._log.warning(
                "%s: %d servers failing; more than %d servers failed or recovered within a "
                "minute, so their lines are held back (%d so far)",
                self._where,
                self._failing_count(),
                PER_MINUTE,
                self.held,
            )
