"""The events consumer: a consumer group's events from the fleet's stream, at least once.

A consumer first walks its own pending events once (after a restart: those it read and
did not acknowledge), then takes those another consumer has held for too long, then
reads new ones. Entries that cannot be events are acknowledged and logged (a WARNING
naming the entry id, counted in ``acp_fleet_dropped_entries_total{kind="stream"}``), and
the good entries of the same batch are still yielded, so one bad entry never wedges a
group. Redis going away is waited out with backoff (``_outage``); an error no retry can
fix (``FleetRedisError``) ends the loop; a group that was deleted is made again.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable

from .. import _converter, _json
from .._log import log
from .._observe import Observer
from ..errors import ResponseValidationError
from ..models import AgentRun, RunStatus
from ._errors import RedisUnavailableError
from ._outage import Outage
from ._store import Entry, GroupMissing, RedisStore, stop_if_cancelled
from .models import FleetEvent

__all__ = ("consume",)

_STATUSES = {status.value: status for status in RunStatus}


async def consume(  # noqa: PLR0917 - one private caller, RedisFleet.events
    opened: Callable[[], RedisStore],
    group: str,
    consumer: str,
    block_ms: int,
    idle_ms: int,
    observer: Observer,
) -> AsyncGenerator[FleetEvent, None]:
    """Events for ``consumer`` of ``group``, until the loop is closed. ``opened`` gives the
    fleet's store each time one is needed (it raises once the fleet is closed)."""
    outage = Outage("fleet events", observer)
    ready = False
    # This consumer's own unacked events come first (a restart), walked once: the
    # cursor moves past each batch, so an event the caller leaves unacked is not read
    # again and again; it comes again at the next restart (at least once).
    cursor: str | None = "0"
    while True:
        stop_if_cancelled()
        store = opened()
        try:
            if not ready:
                await store.create_group(group)
                ready = True
            if cursor is not None:
                entries = await store.read(group, consumer, cursor, None)
                cursor = entries[-1].id if entries else None
            else:
                entries = await store.claim_idle(group, consumer, idle_ms)
                if not entries:
                    entries = await store.read(group, consumer, ">", block_ms)
        except GroupMissing:
            ready = False  # the stream or group was deleted: make it again
            continue
        except RedisUnavailableError as exc:
            await outage.wait(exc)
            continue
        outage.answered()
        batch, unusable = _events(entries, observer)
        if unusable:
            await _set_aside(store, group, unusable)
        for event in batch:
            yield event
            # The consumer's await between two events (an ack, say) may have lost a
            # cancellation: it still ends the loop.
            stop_if_cancelled()


async def _set_aside(store: RedisStore, group: str, entry_ids: list[str]) -> None:
    """Acknowledge entries that cannot be events, so they cannot wedge the group. Redis
    unavailable: they stay pending and are set aside when they come again."""
    try:
        await store.ack(group, *entry_ids)
    except RedisUnavailableError as exc:
        log.warning("fleet events: could not acknowledge unreadable entries yet (%s)", exc)


def _events(entries: list[Entry], observer: Observer) -> tuple[list[FleetEvent], list[str]]:
    """Stream entries as events, and the ids of those that cannot be: trimmed ones (no
    fields left) and malformed ones (logged, counted). One bad entry spoils only itself."""
    events: list[FleetEvent] = []
    unusable: list[str] = []
    for entry in entries:
        if not entry.fields:
            unusable.append(entry.id)
            continue
        try:
            events.append(_event(entry))
        except ResponseValidationError as exc:
            log.warning("fleet events: skipping (and acknowledging) %s", exc)
            observer.fleet_dropped("stream")
            unusable.append(entry.id)
    return events, unusable


def _event(entry: Entry) -> FleetEvent:
    fields = entry.fields
    try:
        run = _converter.structure(_json.loads(fields[b"run"]), AgentRun)
        kind = fields[b"kind"].decode()
        previous = fields[b"previous"].decode() or None
        if kind not in ("created", "updated"):
            raise ValueError(f"unknown kind {kind!r}")
        return FleetEvent(
            id=entry.id,
            key=fields[b"key"].decode(),
            kind=kind,  # type: ignore[arg-type]
            server_id=fields[b"server"].decode(),
            run=run,
            previous_status=None if previous is None else _STATUSES.get(previous, previous),
        )
    except (KeyError, ValueError, ResponseValidationError) as exc:
        raise ResponseValidationError(
            f"fleet stream entry {entry.id} is malformed: {exc}"
        ) from None
