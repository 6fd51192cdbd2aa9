"""When a server is polled next: busy, quiet and failing cadences, all jittered."""

from __future__ import annotations

from .._retry import Backoff, jittered
from ._state import ServerState

__all__ = ("ERROR_CAP", "next_delay")

QUIET_BACKOFF = 1.5  # a quiet server's interval grows by this per quiet poll ...
QUIET_CAP = 8  # ... up to this many intervals
ERROR_CAP = 32  # a failing server waits at most this many intervals
# A failing server waits one interval plus this backoff (in intervals): never sooner than
# a healthy server, and 1 + U(0, 1), 1 + U(0, 2), 1 + U(0, 4) ... up to ERROR_CAP intervals.
FAILING = Backoff(first=1.0, cap=ERROR_CAP - 1)


def next_delay(
    state: ServerState, interval: float, *, failed: bool, busy: bool
) -> tuple[float, ServerState]:
    """Seconds until the next poll, and the state with its schedule counters moved on (a
    copy: ``state`` is left as it is).

    Busy servers (runs queued or running, or a change just seen) keep ``interval``;
    quiet ones back off gradually; failing ones back off exponentially (``FAILING``, full
    jitter). Jittered, so a fleet never polls in lock-step.
    """
    if failed:
        errors = state.errors + 1
        delay = interval * (1.0 + FAILING.delay(errors))
        return delay, state.rescheduled(quiet_polls=state.quiet_polls, errors=errors)
    quiet = 0 if busy else state.quiet_polls + 1
    factor = min(QUIET_BACKOFF**quiet, QUIET_CAP)
    return jittered(interval * factor), state.rescheduled(quiet_polls=quiet, errors=0)
