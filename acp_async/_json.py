"""JSON decoding and compact encoding: orjson with the ``speed`` extra, the stdlib otherwise.

orjson is imported on first use, not at import time, so ``import acp_async`` loads no
optional package; from then on each name is orjson's own function (or the stdlib's),
with no wrapper in between.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ("DECODE_ERRORS", "dumps", "dumps_sorted", "fast", "loads")

# Both decoders raise ValueError subclasses (UnicodeDecodeError included); the stdlib
# one raises RecursionError on absurd nesting.
DECODE_ERRORS = (ValueError, RecursionError)

loads: Callable[[bytes], Any]
dumps: Callable[[Any], bytes]
dumps_sorted: Callable[[Any], bytes]
_fast: bool | None = None


def fast() -> bool:
    """True when orjson does the work."""
    if _fast is None:
        _choose()
    return bool(_fast)


def _std_dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _std_dumps_sorted(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _choose() -> None:
    global loads, dumps, dumps_sorted, _fast
    try:
        import orjson  # noqa: PLC0415
    except ImportError:  # pragma: no cover - exercised when the extra is absent
        loads, dumps, dumps_sorted, _fast = json.loads, _std_dumps, _std_dumps_sorted, False
        return
    sort_keys = orjson.OPT_SORT_KEYS

    def orjson_dumps_sorted(value: Any) -> bytes:
        return orjson.dumps(value, option=sort_keys)

    loads, dumps, dumps_sorted, _fast = orjson.loads, orjson.dumps, orjson_dumps_sorted, True


def __getattr__(name: str) -> Any:
    """``loads``/``dumps``/``dumps_sorted`` before the first use: choose, then answer.

    Afterwards they are plain module globals, so this runs once."""
    if name in ("loads", "dumps", "dumps_sorted"):
        _choose()
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
