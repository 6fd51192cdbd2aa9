"""The metrics-cost benchmark runs at tiny sizes and keeps to its own section (no timings)."""

from __future__ import annotations

from pathlib import Path

from benchmarks import metrics_cost


def test_the_scenario_runs_and_renders() -> None:
    """Every mode measures every round, the hooks are timed, and the section renders."""
    results = metrics_cost.measure(dict(metrics_cost.SMOKE))
    rounds = metrics_cost.SMOKE["rounds"]
    assert {mode: len(values) for mode, values in results["cpu"].items()} == dict.fromkeys(
        metrics_cost.MODES, rounds
    )
    assert all(value > 0 for values in results["cpu"].values() for value in values)
    assert set(results["hooks"]) == {"off", "on"}
    text = metrics_cost.markdown(results)
    assert text.startswith(metrics_cost.START)
    assert text.rstrip().endswith(metrics_cost.END)


def test_write_section_replaces_only_its_own_section(tmp_path: Path) -> None:
    """Written twice into a report, the section appears once and the rest stays."""
    out = tmp_path / "RESULTS.md"
    out.write_text("# report\n\nmain table\n")
    first = f"{metrics_cost.START}\nfirst\n{metrics_cost.END}\n"
    second = f"{metrics_cost.START}\nsecond\n{metrics_cost.END}\n"
    metrics_cost.write_section(out, first)
    out.write_text(out.read_text() + "\n## after\n")
    metrics_cost.write_section(out, second)
    text = out.read_text()
    assert text.count(metrics_cost.START) == 1
    assert "first" not in text
    assert text.startswith("# report\n\nmain table\n")
    assert "second" in text
    assert text.rstrip().endswith("## after")
