"""One poll of one server: a page (closing a gap with larger pages), or the error."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from .. import _converter
from .._retry import RetryPolicy
from ..errors import ACPError, AuthenticationError, BadRequestError, UnprocessableEntityError
from ._diff import is_gap
from ._state import ServerState

__all__ = ("FetchPage", "ends_watch", "poll")

log = logging.getLogger("acp_async")

FetchPage = Callable[[str, int], Awaitable[Any]]
"""``fetch_page(server_id, limit)``: the decoded JSON body of one page, or raises ACPError."""

GAP_CAP = 16  # gap closing doubles limit up to this many times the watch's limit


def ends_watch(exc: ACPError, policy: RetryPolicy | None) -> bool:
    """No later poll can fix it: a refused token, or the host refusing our own request.
    Anything the retry policy calls transient never ends it (a 403/404 server neither:
    access may be granted later)."""
    if policy is not None and policy.is_transient(exc):
        return False
    return isinstance(exc, AuthenticationError | BadRequestError | UnprocessableEntityError)


async def poll(
    fetch: FetchPage, sid: str, limit: int, known: ServerState, policy: RetryPolicy | None = None
) -> list[Any] | ACPError:
    """The newest runs of ``sid`` as decoded items, or the error of a poll that failed.

    An error that ends the watch (``ends_watch``) is raised. If every run of a full page
    is new, re-polls with doubled ``limit`` (up to ``GAP_CAP`` times) before answering;
    an error while closing the gap (say the host refuses a larger page) reports the last
    page, except a refused token.
    """
    try:
        items = _converter.page_items(await fetch(sid, limit))
    except ACPError as exc:
        if ends_watch(exc, policy):
            raise
        return exc
    size = limit
    while size < limit * GAP_CAP and is_gap(items, known, size):
        size = min(size * 2, limit * GAP_CAP)
        try:
            items = _converter.page_items(await fetch(sid, size))
        except AuthenticationError:
            raise
        except ACPError as exc:
            log.info("watch: closing a gap on %s with limit=%d failed: %s", sid, size, exc)
            break
    return items
