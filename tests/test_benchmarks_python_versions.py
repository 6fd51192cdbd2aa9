"""The Python-versions benchmark runs at tiny sizes and keeps to its own section."""

from __future__ import annotations

import sys

from benchmarks import metrics_cost, python_versions, report


def test_children_measure_and_the_section_renders() -> None:
    """Two children per turn (this interpreter twice) time (b) and (c); the section has a
    row each and the cross ratio, between its markers."""
    results = python_versions.measure([sys.executable, sys.executable], dict(python_versions.SMOKE))
    [runs] = results["children"].values()  # one key: the same interpreter twice
    assert len(runs) == 2
    assert all(len(run["rates"]["b"]) == len(run["rates"]["c"]) == 2 for run in runs)
    text = python_versions.markdown(
        {**results, "children": {"first": runs[:1], "second": runs[1:]}}
    )
    assert text.startswith(python_versions.START)
    assert text.rstrip().endswith(python_versions.END)
    assert text.count(f"| {runs[0]['python']} |") == 2
    assert "per turn" in text


def test_the_main_report_keeps_the_other_scripts_sections() -> None:
    """Rewriting the main report keeps every marked section, once, after it."""
    metrics = f"{metrics_cost.START}\nmetrics\n{metrics_cost.END}\n"
    versions = f"{python_versions.START}\nversions\n{python_versions.END}\n"
    old = f"# old report\n\n{metrics}\n{versions}"
    new = report.keep_sections(old, "# new report\n")
    assert new == f"# new report\n\n{metrics}\n{versions}"
    assert report.keep_sections(new, "# newer\n").count("versions\n") == 1
