"""Argument checks that run before any request, so bad input never reaches the wire."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from urllib.parse import quote

_CONTROL = re.compile("[\x00-\x1f\x7f]")  # C0 and DEL: never part of an id


def path_segment(server_id: object) -> str:
    """``server_id`` as exactly one percent-encoded path segment: the one check of a
    server id, wherever one comes from (arguments, iterables, the environment, the CLI).

    A control character (C0, DEL) is refused too: such an id would forge log lines
    ("\\n") or drive a terminal ("\\x1b[2J") wherever it is printed.
    """
    if not isinstance(server_id, str):
        raise TypeError(f"server_id must be a str, got {type(server_id).__name__}")
    if server_id in ("", ".", ".."):
        raise ValueError(
            f"server_id must be a non-empty id other than '.' and '..', got {server_id!r}"
        )
    if not server_id.isprintable() and _CONTROL.search(server_id):
        raise ValueError(
            f"server_id must not hold a control character (C0, DEL), got {server_id!r}"
        )
    return quote(server_id, safe="")


def taken_server_id(value: object) -> str:
    """A server id taken from an iterable: any bad one, whatever its type, is a ValueError."""
    try:
        path_segment(value)
    except TypeError as exc:
        raise ValueError(f"server ids must be str, got {type(value).__name__}") from exc
    return value  # type: ignore[return-value]


def int_at_least(name: str, value: object, minimum: int) -> int:
    """An ``int >= minimum``; bools, floats and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def positive_int(name: str, value: object) -> int | None:
    """An ``int >= 1`` or None."""
    return None if value is None else int_at_least(name, value, 1)


def positive_seconds(name: str, value: object) -> float:
    """A finite number of seconds > 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def server_id_iterable(server_ids: Iterable[str]) -> Iterable[str]:
    """An iterable of ids, not one id: a str is an iterable of its characters."""
    if isinstance(server_ids, str | bytes):
        raise TypeError("server_ids must be an iterable of server ids, not a single string")
    return server_ids
