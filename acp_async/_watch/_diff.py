"""A page against what is remembered: fingerprint every run, structure only the changed."""

from __future__ import annotations

from typing import Any, Literal

import attrs

from .. import _converter
from ..errors import ResponseValidationError
from ..models import AgentRun
from ._state import Seen, ServerState, fingerprint, id_digest

__all__ = ("Change", "diff", "is_gap")


@attrs.frozen
class Change:
    """A run new or changed since the last poll; ``previous`` is None for a new one."""

    run: AgentRun
    run_id: str
    previous: Seen | None
    number: int  # this run's change count so far: 1 when created
    fingerprint: bytes  # of the run's fields as seen now

    @property
    def kind(self) -> Literal["created", "updated"]:
        return "created" if self.previous is None else "updated"


def _structure(item: Any, index: int) -> AgentRun:
    try:
        return _converter.structure(item, AgentRun)
    except ResponseValidationError as exc:
        raise ResponseValidationError(f"run {index} of the page: {exc}") from None


def diff(items: list[Any], known: ServerState) -> tuple[ServerState, list[Change]]:
    """The server's new state (its runs oldest first), and the changes, oldest first.

    Each run is fingerprinted and only runs whose fingerprint is new are structured (a
    malformed one raises ResponseValidationError). An identical page never gets here: see
    ``_poll.poll``. The schedule counters are left to the caller.
    """
    latest: dict[bytes, Seen] = {}
    changes = []
    for index in range(len(items) - 1, -1, -1):  # pages are newest first
        item = items[index]
        run_id = item.get("id") if type(item) is dict else None
        if type(run_id) is not str:
            _structure(item, index)  # a run without an id is checked, then skipped
            continue
        digest = id_digest(run_id)
        if digest in latest:
            continue
        try:
            fields = fingerprint(item)
        except ResponseValidationError as exc:  # too deep for the encoder: that server's data
            raise ResponseValidationError(f"run {index} of the page: {exc}") from None
        old = known.runs.get(digest)
        if old is not None and old.fingerprint == fields:
            latest[digest] = old
            continue
        run = _structure(item, index)
        number = 1 if old is None else old.changes + 1
        latest[digest] = Seen(fields, run.status, number)
        changes.append(Change(run, run_id, old, number, fields))
    return ServerState(latest, polled=True, quiet_polls=known.quiet_polls), changes


def is_gap(items: list[Any], known: ServerState, limit: int) -> bool:
    """Every run of a full page is new: more may have arrived than one page holds."""
    if not known.polled or len(items) < limit:
        return False
    for item in items:
        run_id = item.get("id") if type(item) is dict else None
        if type(run_id) is str and id_digest(run_id) in known.runs:
            return False
    return True


def summary(run_id: str, seen: Seen) -> AgentRun:
    """The previous state of a run as events carry it: its id and status."""
    return AgentRun(id=run_id, status=seen.status)
