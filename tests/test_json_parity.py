"""What counts as valid JSON never depends on the `speed` extra: the stdlib path of
`acp_async._json` accepts exactly what orjson accepts, and encodes it to the same bytes.

Differential: every generated document goes through both paths; both accept or both
refuse, and when both accept they give the same value and the same fingerprint bytes.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from acp_async import _json

orjson = pytest.importorskip("orjson")

SOAK = os.environ.get("ACP_SOAK") == "1"
EXAMPLES = 2000 if SOAK else 300

# Strings with lone surrogates now and then, keys too.
texts = st.text(st.characters(codec=None), max_size=8) | st.sampled_from(
    ["\ud800", "a\udfff", "\ud83d\ude00", "😀", "\x00\n\x1b[2J", "e-5", "NaN"]
)
# Encoded, an integer must be within 64 bits: neither decoder gives one beyond (orjson
# reads it as a float, and so does the stdlib path), so the encoders never meet one.
INT64 = st.integers(min_value=-(2**63), max_value=2**64 - 1)
numbers = (
    INT64
    | st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, -(2**63)])
    | st.floats()
    | st.floats(min_value=-1e-3, max_value=1e-3)
    | st.sampled_from([1e-5, -1.5e-5, 1e-7, 1e16, 1e308, 5e-324, -0.0])
)
scalars = st.none() | st.booleans() | numbers | texts
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=20,
)
DEPTHS = [*range(250, 259), *range(1018, 1030)]


def _nest(value: Any, depth: int, kind: str) -> Any:
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


depths = st.just(0) | st.sampled_from(DEPTHS)  # built inside a test: never printed whole
kinds = st.sampled_from(["list", "dict"])


def _serialize(value: Any, ascii_only: bool) -> bytes | None:
    try:
        text = json.dumps(value, ensure_ascii=ascii_only)
    except (RecursionError, ValueError):
        return None
    return text.encode("utf-8", "surrogatepass")  # a lone surrogate encoded raw, too


# Number spellings json.dumps never writes: huge, tiny, long integers and exponents.
raw_numbers = st.builds(
    lambda sign, digits, frac, exp: f"{sign}{digits}{frac}{exp}".encode(),
    st.sampled_from(["", "-"]),
    st.integers(min_value=0, max_value=10**40).map(str) | st.just("9" * 400),
    st.sampled_from(["", ".5", ".0000001", ".12345678901234567890"]),
    st.sampled_from(["", "e5", "e-5", "E+308", "e309", "e-324", "e-400", "e400"]),
)
raw_documents = (
    raw_numbers
    | raw_numbers.map(lambda n: b'{"metadata": [' + n + b"]}")
    | st.sampled_from([b"NaN", b"[Infinity]", b"-Infinity", b'"\\ud800"', b'"\\udc00x"'])
    | st.sampled_from([b'"\\ud800\\udc00"', b'"\xed\xa0\x80"', b"\xef\xbb\xbf[1]", b"[1,]"])
)


def _short(value: Any) -> str:
    try:
        return repr(value)[:120]
    except RecursionError:
        return "(too deep to show)"


def _outcome(call: Any, *args: Any) -> tuple[bool, Any]:
    try:
        return True, call(*args)
    except (*_json.DECODE_ERRORS, *_json.ENCODE_ERRORS) as exc:
        return False, exc


def _same(a: Any, b: Any) -> bool:
    """Equal values of equal types (a float by its bits: -0.0 is not 0.0); iterative, for
    1024 levels."""
    pairs = [(a, b)]
    while pairs:
        x, y = pairs.pop()
        if type(x) is not type(y):
            return False
        if type(x) is float:
            if math.copysign(1.0, x) != math.copysign(1.0, y) or x != y:
                return False
        elif type(x) is list:
            if len(x) != len(y):
                return False
            pairs.extend(zip(x, y, strict=True))
        elif type(x) is dict:
            if x.keys() != y.keys():
                return False
            pairs.extend((x[k], y[k]) for k in x)
        elif x != y:
            return False
    return True


def _fingerprint_bytes(encode: Any, value: Any) -> tuple[bool, Any]:
    return _outcome(encode, [value, "title"])  # a list around it, as fingerprint() has


def _check_document(document: bytes) -> None:
    fast_ok, fast = _outcome(orjson.loads, document)
    std_ok, std = _outcome(_json._std_loads, document)
    assert fast_ok == std_ok, (document[:120], _short(fast), _short(std))
    if not fast_ok:
        return
    assert _same(fast, std), (document[:120], _short(fast), _short(std))
    _check_value(fast)


def _check_value(value: Any) -> None:
    fast_ok, fast = _fingerprint_bytes(
        lambda v: orjson.dumps(v, option=orjson.OPT_SORT_KEYS), value
    )
    std_ok, std = _fingerprint_bytes(_json._std_dumps_sorted, value)
    assert fast_ok == std_ok, (_short(value), _short(fast), _short(std))
    if fast_ok:
        assert fast == std, (_short(value), _short(fast), _short(std))
    plain_ok, plain = _outcome(orjson.dumps, value)
    std_plain_ok, std_plain = _outcome(_json._std_dumps, value)
    assert (plain_ok, plain_ok and plain) == (std_plain_ok, std_plain_ok and std_plain)


@settings(max_examples=EXAMPLES, deadline=None)
@given(value=values, depth=depths, kind=kinds, ascii_only=st.booleans())
@example(value=1, depth=1024, kind="list", ascii_only=False)
@example(value=1, depth=1025, kind="list", ascii_only=False)
@example(value={}, depth=253, kind="dict", ascii_only=False)  # 254 levels: encoded
@example(value={}, depth=254, kind="dict", ascii_only=False)  # 255 levels: refused
@example(value={"a": "\ud800"}, depth=0, kind="list", ascii_only=True)
@example(value=[2**64, -(2**63) - 1, 10**30], depth=0, kind="list", ascii_only=False)
@example(value=[float("nan")], depth=0, kind="list", ascii_only=False)
def test_both_paths_decode_and_fingerprint_alike(
    value: Any, depth: int, kind: str, ascii_only: bool
) -> None:
    """A document json.dumps wrote (deep nesting, NaN, surrogates, big integers): both
    decoders accept or both refuse; accepted, the same value and the same encoded bytes."""
    document = _serialize(_nest(value, depth, kind), ascii_only)
    if document is not None:
        _check_document(document)


@settings(max_examples=EXAMPLES, deadline=None)
@given(document=raw_documents)
@example(document=b"18446744073709551616")
@example(document=b"1e400")
@example(document=b"-" + b"9" * 5000)
def test_both_paths_read_number_spellings_alike(document: bytes) -> None:
    """Numbers no encoder of ours writes (400 digits, 1e400, 1e-400, 2**64): the same
    accept/refuse and the same value from both decoders."""
    _check_document(document)


@settings(max_examples=EXAMPLES, deadline=None)
@given(value=values, depth=depths, kind=kinds)
def test_both_paths_encode_python_values_alike(value: Any, depth: int, kind: str) -> None:
    """Encoding values json never gave (NaN, lone surrogates, integers beyond 64 bits,
    255 levels): both encoders accept or refuse alike, and write the same bytes."""
    _check_value(_nest(value, depth, kind))


def test_the_stdlib_decoder_reads_1024_levels_even_deep_in_a_call_stack() -> None:
    """1024 levels decode however deep the caller already is (CPython 3.11 counts the
    decoder's levels against the recursion limit); 1025 are refused, as by orjson."""

    def deep_call(frames: int, document: bytes) -> Any:
        return deep_call(frames - 1, document) if frames else _json._std_loads(document)

    ok = b"[" * 1024 + b"]" * 1024
    assert _same(deep_call(300, ok), orjson.loads(ok))
    with pytest.raises(ValueError, match="deeper than 1024"):
        deep_call(300, b"[" * 1025 + b"]" * 1025)
