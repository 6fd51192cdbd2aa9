"""JSON decoding and compact encoding: orjson with the ``speed`` extra, the stdlib otherwise."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

loads: Callable[[bytes], Any]
dumps: Callable[[Any], bytes]


def _std_dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


try:
    import orjson
except ImportError:  # pragma: no cover - exercised when the extra is absent
    loads = json.loads
    dumps = _std_dumps
else:
    loads = orjson.loads
    dumps = orjson.dumps

# Both decoders raise ValueError subclasses (UnicodeDecodeError included); the stdlib
# one raises RecursionError on absurd nesting.
DECODE_ERRORS = (ValueError, RecursionError)
