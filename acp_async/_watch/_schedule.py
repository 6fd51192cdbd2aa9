"""When a server is polled next: busy, quiet and failing cadences, all jittered."""

from __future__ import annotations

from .._retry import jittered
from ._state import ServerState

__all__ = ("ERROR_CAP", "next_delay")

QUIET_BACKOFF = 1.5  # a quiet server's interval grows by this per quiet poll ...
QUIET_CAP = 8  # ... up to this many intervals
ERROR_CAP = 32  # a failing server waits 2, 4, 8 ... up to this many intervals


def next_delay(state: ServerState, interval: float, *, failed: bool, busy: bool) -> float:
    """Seconds until the next poll; updates the state's schedule counters.

    Busy servers (runs queued or running, or a change just seen) keep ``interval``;
    quiet ones back off gradually; failing ones back off exponentially. Jittered, so
    a fleet never polls in lock-step.
    """
    if failed:
        state.errors += 1
        factor = min(2.0 ** min(state.errors, 16), ERROR_CAP)  # weeks of errors: no overflow
    else:
        state.errors = 0
        state.quiet_polls = 0 if busy else state.quiet_polls + 1
        factor = min(QUIET_BACKOFF**state.quiet_polls, QUIET_CAP)
        return jittered(interval * factor)
    # The cap holds after jitter too: a failing server waits at most ERROR_CAP intervals.
    return min(jittered(interval * factor), interval * ERROR_CAP)
