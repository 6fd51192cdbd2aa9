"""Small helpers: medians of per-repetition ratios, and formatting."""

from __future__ import annotations

import statistics
from collections.abc import Sequence


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """min, median, max."""
    return min(values), statistics.median(values), max(values)


def fmt(value: float, digits: int = 3) -> str:
    """``value`` with ``digits`` significant digits, thousands separated when large."""
    if value >= 10 ** (digits - 1):
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def fmt_spread(values: Sequence[float]) -> str:
    low, mid, high = spread(values)
    return f"{fmt(mid)} ({fmt(low)} - {fmt(high)})"


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"
