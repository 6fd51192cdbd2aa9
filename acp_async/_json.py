"""JSON decoding: orjson when the ``speed`` extra is installed, the stdlib otherwise."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

loads: Callable[[bytes], Any]

try:
    import orjson
except ImportError:  # pragma: no cover - exercised when the extra is absent
    loads = json.loads
else:
    loads = orjson.loads

# Both decoders raise ValueError subclasses (UnicodeDecodeError included); the stdlib
# one raises RecursionError on absurd nesting.
DECODE_ERRORS = (ValueError, RecursionError)
