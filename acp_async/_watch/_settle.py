"""A finished poll, settled the same way by both stores; and one server's boundary.

``settle`` turns a poll's outcome into what a store writes: the server's new state (its
schedule counters moved on), when to poll it next, and the changes to report. The
in-process watch (``_memory``) and a fleet worker (``_worker``) both call it; neither
writes that step itself.

``contained`` is the isolation boundary around one server: an exception that is not an
``ACPError`` (a bug, ours or a dependency's) met while handling that server is logged
once, with its traceback, and becomes that server's failure, so every other server goes
on and the bug stays visible.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from .._log import log
from .._retry import Context, Verdict, decide
from ..errors import ACPError
from ._diff import Change
from ._poll import Polled
from ._schedule import next_delay
from ._state import ServerState

__all__ = ("Settled", "contained", "settle")


class Settled(NamedTuple):
    """One server's poll, settled: what to remember, when to poll next, what to report.

    A named tuple, not an attrs class: one is made every poll, and a frozen attrs class
    took 1.1 us to make (0.5 us this way) against about 10 us for a whole unchanged poll."""

    state: ServerState  # the runs of this poll (or the known ones) and the new counters
    delay: float  # seconds until the server's next poll
    changes: Sequence[Change]  # oldest first; none for a failed poll
    against: ServerState  # what the changes were found against
    error: ACPError | None = None  # the poll's error: the server is failing

    @property
    def failed(self) -> bool:
        return self.error is not None


def settle(known: ServerState, outcome: Polled | ACPError, interval: float) -> Settled:
    """The outcome of one poll of a server that was known as ``known``.

    A failed poll keeps the known runs and moves the server to the failing cadence; a
    good one keeps the page's runs, at the busy cadence when a run changed or is not yet
    terminal, else the quiet one. Changes no argument and has no other effect (the only
    thing that differs between two calls is the schedule's jitter).
    """
    if isinstance(outcome, ACPError):
        delay, state = next_delay(known, interval, failed=True, busy=False)
        return Settled(state, delay, (), known, outcome)
    fresh, changes = outcome.fresh, outcome.changes
    busy = bool(changes) or fresh.busy()
    delay, state = next_delay(fresh, interval, failed=False, busy=busy)
    return Settled(state, delay, changes, outcome.against)


def contained(exc: Exception, server_id: str, context: Context) -> ACPError:
    """``exc``, raised while handling server ``server_id`` in a watch or fleet poll, as
    that server's failure: logged here at ERROR with its traceback (and nowhere else),
    and returned as an ``ACPError`` ("internal error: ...", ``exc`` its ``__cause__``)
    that the store settles like any failed poll. Never retried as a connection error.

    An error ``LOOP_ENDING`` says ends the loop (a refused token) is raised again.
    """
    if decide(exc, context) is Verdict.END:
        raise exc
    if isinstance(exc, ACPError):
        return exc
    where = "watch" if context is Context.WATCH else "fleet"
    log.error(
        "%s: internal error while handling server %s; it counts as failing",
        where,
        server_id,
        exc_info=exc,
    )
    error = ACPError(f"internal error: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error
