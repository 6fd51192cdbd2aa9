"""One poll of one server: a page (closing a gap with larger pages), or the error."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import attrs

from .. import _converter
from .._log import log
from .._retry import Context, Verdict, decide
from ..errors import ACPError
from ._diff import Change, diff, is_gap
from ._state import ServerState, UnreadableState, body_digest

__all__ = ("FetchPage", "Polled", "poll")


T = TypeVar("T")


class FetchPage(Protocol):
    """``fetch_page(server_id, limit, parse, peek)``: one page's decoded JSON body through
    ``parse``, inside the request (so what ``parse`` refuses is an invalid response with
    the request's ``.url``), or raises ACPError. ``peek`` sees the body's bytes first;
    what it returns (not None) is the result, and the body is not decoded."""

    def __call__(
        self,
        server_id: str,
        limit: int,
        parse: Callable[[Any], T],
        peek: Callable[[bytes], T | None] | None = None,
    ) -> Awaitable[T]: ...


@attrs.frozen
class Polled:
    """A page diffed against what was known: its items, the new state, and the changes."""

    items: list[Any]
    fresh: ServerState
    changes: list[Change]
    against: ServerState  # what was known (empty if the known state could not be read)
    # Why the known state's runs could not be read ("": they could), found when a changed
    # page was diffed: the page was diffed against an empty state instead. The caller
    # says so (the in-process watch goes on afresh; a fleet worker fails the poll).
    unreadable: str = ""


GAP_CAP = 16  # gap closing doubles limit up to this many times the watch's limit


async def poll(fetch: FetchPage, sid: str, limit: int, known: ServerState) -> Polled | ACPError:
    """The newest runs of ``sid`` diffed against ``known``, or the error of a failed poll
    (whether it ends the loop is the caller's question to ``_retry.decide``).

    If every run of a full page is new, re-polls with doubled ``limit`` (up to
    ``GAP_CAP`` times) before answering; an error while closing the gap (say the host
    refuses a larger page) reports the last page, unless ``decide`` says it ends the
    loop (a refused token): then that error is the outcome.
    """

    digest = b""  # of the page being read: peek sees its bytes, parse its JSON

    def peek(body: bytes) -> Polled | None:
        """An identical page: nothing to decode, structure or diff (the known state is the
        new one as it is, runs unread; nothing changes a state in place)."""
        nonlocal digest
        digest = body_digest(body)
        if not digest or not known.polled or digest != known.page:
            return None
        return Polled([], known, [], known)

    def parse(body: Any) -> Polled:
        nonlocal known
        items = _converter.page_items(body)
        unreadable = ""
        try:
            fresh, changes = diff(items, known)
        except UnreadableState as exc:  # its runs, read now for a changed page
            unreadable = str(exc)
            known = ServerState(quiet_polls=known.quiet_polls)
            fresh, changes = diff(items, known)
        fresh.page = digest
        return Polled(items, fresh, changes, known, unreadable)

    try:
        polled = await fetch(sid, limit, parse, peek)
    except ACPError as exc:
        return exc
    size = limit
    while size < limit * GAP_CAP and is_gap(polled.items, known, size):
        size = min(size * 2, limit * GAP_CAP)
        try:
            polled = await fetch(sid, size, parse, peek)
        except ACPError as exc:
            if decide(exc, Context.GAP) is Verdict.END:
                return exc
            log.info("watch: closing a gap on %s with limit=%d failed: %s", sid, size, exc)
            break
    return polled
