"""The Python versions the package claims are the ones `make test-matrix` tests."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[1]


def _matrix() -> list[str]:
    found = re.search(r"^MATRIX_PYTHONS := (.+)$", (ROOT / "Makefile").read_text(), re.M)
    assert found is not None, "no MATRIX_PYTHONS in the Makefile"
    return found.group(1).split()


def test_classifiers_name_exactly_the_tested_pythons() -> None:
    """The `Programming Language :: Python :: 3.X` classifiers are the matrix's versions,
    requires-python starts at its first, and only CPython is claimed."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    classifiers = project["classifiers"]
    versions = [
        c.rsplit(" :: ", 1)[1]
        for c in classifiers
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    ]
    matrix = _matrix()
    assert versions == matrix
    assert project["requires-python"] == f">={matrix[0]}"
    implementations = [c for c in classifiers if ":: Implementation ::" in c]
    assert implementations == ["Programming Language :: Python :: Implementation :: CPython"]
