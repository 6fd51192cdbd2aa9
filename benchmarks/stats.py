"""Small helpers: medians of per-repetition ratios, and formatting."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from pathlib import Path


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


def replace_section(path: Path, section: str, start: str, end: str) -> None:
    """Replace the section between ``start`` and ``end`` in ``path``, or append it."""
    text = path.read_text() if path.exists() else ""
    if start in text and end in text:
        head, rest = text.split(start, 1)
        tail = rest.split(end, 1)[1].lstrip("\n")
        text = head + section + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section if text else section
    path.write_text(text)


def write_section(path: Path, section: str, name: str, command: str = "") -> None:
    """Replace the section ``name`` of ``path`` (between its markers), or append it; the
    main report rewrites the file, and each scenario run after it adds its own section."""
    command = command or f"python -m benchmarks.{name}"
    start, end = f"<!-- {name}: written by {command} -->", f"<!-- /{name} -->"
    replace_section(path, f"{start}\n{section.strip()}\n{end}\n", start, end)
