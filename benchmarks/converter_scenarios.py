"""Converter scenarios: pages of runs to typed objects, ours against the alternatives.

Each case is timed over ``pages`` pages of 20 runs (100,000 runs by default), in rounds
that alternate between the cases, so drift on a noisy machine hits them all alike.
Memory per run is what the structured runs keep alive (tracemalloc): the object, its
strings, datetimes and its ``metadata`` dict, against the decoded dict it came from.
"""

from __future__ import annotations

import gc
import importlib.util
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from acp_async import AgentRunList, _converter, _json

from . import handwritten
from .payload import RUNS_PER_PAGE, page_bytes


def _cases() -> dict[str, tuple[Callable[[bytes], Any], Callable[[Any], Any]]]:
    """name -> (from bytes, from decoded dict)."""
    cases: dict[str, tuple[Callable[[bytes], Any], Callable[[Any], Any]]] = {
        "acp_async (generated)": (
            lambda b: _converter.structure(_json.loads(b), AgentRunList),
            lambda d: _converter.structure(d, AgentRunList),
        ),
        "hand-written constructor": (
            lambda b: handwritten.page_from_dict(_json.loads(b)),
            handwritten.page_from_dict,
        ),
    }
    if importlib.util.find_spec("pydantic") is not None:
        from .models_pydantic import Page as PydanticPage  # noqa: PLC0415

        cases["pydantic v2"] = (
            PydanticPage.model_validate_json,
            lambda d: PydanticPage.model_validate(d, strict=False),
        )
    if importlib.util.find_spec("msgspec") is not None:
        import msgspec  # noqa: PLC0415

        from .models_msgspec import PAGE_DECODER  # noqa: PLC0415
        from .models_msgspec import Page as MsgspecPage  # noqa: PLC0415

        cases["msgspec"] = (PAGE_DECODER.decode, lambda d: msgspec.convert(d, MsgspecPage))
    return cases


def _time(fn: Callable[[Any], Any], arg: Any, pages: int) -> float:
    start = time.perf_counter()
    for _ in range(pages):
        fn(arg)
    return time.perf_counter() - start


def throughput(pages: int, rounds: int) -> dict[str, dict[str, list[float]]]:
    """mode ('bytes' / 'dict') -> case -> runs per second, one value per round."""
    body = page_bytes(both=False)
    decoded = _json.loads(body)
    cases = _cases()
    out: dict[str, dict[str, list[float]]] = {"bytes": {}, "dict": {}}
    per_round = max(1, pages // rounds)
    for index in range(rounds):
        names = list(cases)
        names = names[index % len(names) :] + names[: index % len(names)]
        for name in names:
            from_bytes, from_dict = cases[name]
            runs = per_round * RUNS_PER_PAGE
            out["bytes"].setdefault(name, []).append(runs / _time(from_bytes, body, per_round))
            out["dict"].setdefault(name, []).append(runs / _time(from_dict, decoded, per_round))
    return out


def _retained(make: Callable[[], Any], runs: int) -> float:
    """Bytes per run that ``make()``'s result keeps alive."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = make()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del kept
    return (after - before) / runs


def memory(pages: int) -> dict[str, float]:
    """Bytes per run: the decoded dict, and each case's structured run (decoded from bytes)."""
    body = page_bytes(both=False)
    cases = _cases()
    runs = pages * RUNS_PER_PAGE
    out = {"decoded dict": _retained(lambda: [_json.loads(body) for _ in range(pages)], runs)}
    for name, (from_bytes, _) in cases.items():
        out[name] = _retained(lambda f=from_bytes: [f(body) for _ in range(pages)], runs)
    return out
