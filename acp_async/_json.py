"""JSON decoding and compact encoding: orjson with the ``speed`` extra, the stdlib otherwise.

orjson is imported on first use, not at import time, so ``import acp_async`` loads no
optional package; from then on each name is orjson's own function (or the stdlib's),
with no wrapper in between.

What counts as valid JSON never depends on the extra: the stdlib path accepts exactly
what orjson accepts, and encodes what both accept to the same bytes (fingerprints are
compared across the workers of one fleet, with and without the extra). orjson refuses
to decode NaN/Infinity, a number that is infinite as a double, a lone surrogate (escaped
or encoded), a UTF-8 BOM or non-UTF-8 bytes, and a document nested deeper than 1024
levels; it reads an integer beyond 64 bits as a float; it refuses to encode a value
nested deeper than 254 levels, a lone surrogate or an integer beyond 64 bits; and it
writes a float below 1e-4 its own way (``0.00001``, ``1.5e-7``), NaN and infinities as
``null``. The stdlib path does the same (integers aside when encoding: neither decoder
gives one beyond 64 bits, so neither encoder meets one), paying mostly where a document
holds such things: tests/test_json_parity.py checks it against orjson.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Callable
from itertools import accumulate
from typing import Any

__all__ = ("DECODE_ERRORS", "ENCODE_ERRORS", "dumps", "dumps_sorted", "fast", "loads")

# Both decoders raise ValueError subclasses (UnicodeDecodeError included); the stdlib
# one is kept from raising RecursionError, which stays here for safety.
DECODE_ERRORS = (ValueError, RecursionError)
# What the encoders raise for a value they refuse: orjson's JSONEncodeError is a
# TypeError, the stdlib path raises ValueError (UnicodeEncodeError included).
ENCODE_ERRORS = (TypeError, ValueError)

LOADS_DEPTH = 1024  # orjson refuses to decode a document nested deeper
DUMPS_DEPTH = 254  # orjson refuses to encode a value nested deeper
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # orjson reads an integer outside as a float

loads: Callable[[bytes], Any]
dumps: Callable[[Any], bytes]
dumps_sorted: Callable[[Any], bytes]
_fast: bool | None = None


def fast() -> bool:
    """True when orjson does the work."""
    if _fast is None:
        _choose()
    return bool(_fast)


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"number is infinite as a double: {text[:20]}")
    return number


def _int(text: str) -> int | float:
    if len(text) < 19:  # |n| < 10**18: within 64 bits
        return int(text)
    number = int(text)  # ValueError beyond 4300 digits: infinite as a double anyway
    return number if _INT_MIN <= number <= _INT_MAX else _finite_float(text)


def _no_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


_decoder = json.JSONDecoder(parse_float=_finite_float, parse_int=_int, parse_constant=_no_constant)


def _encoders(*, sort_keys: bool) -> tuple[json.JSONEncoder, json.JSONEncoder]:
    """The compact encoder, and its twin for a value holding NaN or an infinity."""
    options: dict[str, Any] = {"ensure_ascii": False, "check_circular": False}
    options.update(sort_keys=sort_keys, separators=(",", ":"))
    return json.JSONEncoder(allow_nan=False, **options), json.JSONEncoder(**options)


_ENCODERS, _SORTED_ENCODERS = _encoders(sort_keys=False), _encoders(sort_keys=True)
# Outside strings (matched whole, and kept): what orjson writes differently.
_REWRITE = re.compile(r'"(?:[^"\\]|\\.)*+"|(-?Infinity|NaN|-?\d+(?:\.\d+)?e-\d+)')
# Strings, and any run of characters that are not brackets: what a depth count skips.
_NOT_BRACKETS = re.compile(r'"(?:[^"\\]|\\.)*+"|[^\[\]{}"]++')
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # may spell one: then look


def _std_loads(document: bytes) -> Any:
    """``json.loads`` refusing what orjson refuses, and reading big integers as it does."""
    text = document.decode()  # strict UTF-8: no BOM trick, no encoded surrogate
    try:
        value = _decoder.decode(text)
    except RecursionError:
        value = _decode_deep(text)
    else:
        # On 3.11 each level counts against the recursion limit: one no higher than
        # LOADS_DEPTH already kept the document from nesting deeper.
        bounded = sys.version_info < (3, 12) and sys.getrecursionlimit() <= LOADS_DEPTH
        if not bounded and _deeper_than(LOADS_DEPTH, text):
            raise ValueError(f"nested deeper than {LOADS_DEPTH} levels")
    if _SURROGATE_ESCAPE.search(document) and _has_surrogate(value):
        raise ValueError("a lone surrogate in a string")
    return value


def _decode_deep(text: str) -> Any:
    """CPython 3.11 counts each level the decoder enters against the recursion limit
    (1000, less the caller's frames): a document orjson reads is retried with room for
    its 1024 levels. Anything deeper still raises, as a ValueError. The limit is the
    process's: it is only ever raised above the caller's, for this one decode (a rare
    document: only one nested hundreds of levels deep gets here)."""
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(limit + LOADS_DEPTH + 64)
    try:
        value = _decoder.decode(text)
    except RecursionError:
        raise ValueError(f"nested deeper than {LOADS_DEPTH} levels") from None
    finally:
        sys.setrecursionlimit(limit)
    if _deeper_than(LOADS_DEPTH, text):
        raise ValueError(f"nested deeper than {LOADS_DEPTH} levels")
    return value


def _deeper_than(limit: int, text: str) -> bool:
    """Whether valid JSON ``text`` nests deeper than ``limit``: a linear scan, run only
    when its brackets are many enough that it might."""
    if text.count("[") + text.count("{") <= limit:
        return False
    brackets = _NOT_BRACKETS.sub("", text)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > limit


def _has_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) is str:
            if _SURROGATE.search(item):
                return True
        elif type(item) is list:
            stack.extend(item)
        elif type(item) is dict:
            stack.extend(item)
            stack.extend(item.values())
    return False


def _std_dumps(value: Any) -> bytes:
    return _as_orjson(_ENCODERS, value)


def _std_dumps_sorted(value: Any) -> bytes:
    return _as_orjson(_SORTED_ENCODERS, value)


def _as_orjson(encoders: tuple[json.JSONEncoder, json.JSONEncoder], value: Any) -> bytes:
    """The stdlib's compact JSON as orjson writes it: refused where orjson refuses (too
    deep; UnicodeEncodeError for a lone surrogate), small floats, NaN and infinities
    spelled its way. Integers are not range-checked: the decoders never give one beyond
    64 bits, so neither encoder is handed one."""
    strict, lenient = encoders
    try:
        text = strict.encode(value)
        rewrite = "e-" in text
    except ValueError:  # NaN or an infinity: null to orjson
        text, rewrite = lenient.encode(value), True
    except RecursionError:
        raise ValueError(f"nested deeper than {DUMPS_DEPTH} levels") from None
    if _deeper_than(DUMPS_DEPTH, text):
        raise ValueError(f"nested deeper than {DUMPS_DEPTH} levels")
    if rewrite:
        text = _REWRITE.sub(_orjson_number, text)
    return text.encode()


def _orjson_number(match: re.Match[str]) -> str:
    number = match[1]
    if number is None:
        return match[0]  # a string
    if number[-1] in "Ny":
        return "null"
    mantissa, exponent = number.split("e-")
    if exponent != "05":
        return f"{mantissa}e-{int(exponent)}"  # 1.5e-07 -> 1.5e-7
    sign = "-" if mantissa[0] == "-" else ""
    return f"{sign}0.0000{mantissa.lstrip('-').replace('.', '')}"  # 1.5e-05 -> 0.000015


def _choose() -> None:
    global loads, dumps, dumps_sorted, _fast
    try:
        import orjson  # noqa: PLC0415
    except ImportError:  # pragma: no cover - exercised when the extra is absent
        loads, dumps, dumps_sorted, _fast = _std_loads, _std_dumps, _std_dumps_sorted, False
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
