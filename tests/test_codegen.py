"""The generated structure functions against cattrs' own: same runs, or both fail."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acp_async import AgentRun, AgentRunList, ResponseValidationError, RunMode, RunStatus
from acp_async._codegen import make_structure_fn
from acp_async._converter import _FAILURES, _camel, _detailed, _fast, structure_run

# What the converter treats as a failed structure, and the data/runs merge's own error.
FAILURES = (*_FAILURES, ResponseValidationError)

json_leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    json_leaf,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=12,
)
timestamps = st.datetimes(timezones=st.none() | st.timezones()).map(datetime.isoformat)
VALID: dict[str, st.SearchStrategy[Any]] = {
    "mode": st.sampled_from([*RunMode, "batch"]).map(str),
    "status": st.sampled_from([*RunStatus, "paused", ""]).map(str),
    "metadata": st.dictionaries(st.text(max_size=5), json_values, max_size=3),
    "createdAt": timestamps | st.sampled_from(["2026-11-29", "yesterday", "2026-13-01T00:00"]),
    "completedAt": timestamps,
    "threadBacked": st.booleans(),
}
RUN_KEYS = [_camel(f.name) for f in attrs.fields(AgentRun)]


def field_value(key: str) -> st.SearchStrategy[Any]:
    """Mostly well-typed values for ``key``, and sometimes anything JSON can hold."""
    return VALID.get(key, st.text(max_size=10)) | st.none() | json_leaf | json_values


run_items = st.fixed_dictionaries(
    {},
    optional={
        **{key: field_value(key) for key in RUN_KEYS},
        "extra": json_values,
        "ID": json_values,  # keys are case-sensitive
    },
)
valid_runs = st.fixed_dictionaries(
    {}, optional={key: VALID.get(key, st.text(max_size=10)) | st.none() for key in RUN_KEYS}
)


def outcome(fn: Any, value: Any, cls: type[Any]) -> tuple[str, Any]:
    try:
        return "ok", fn(value, cls)
    except FAILURES as exc:
        return "failed", type(exc)


def assert_same(value: Any, cls: type[Any], fast: Any) -> Any:
    """``fast`` and the detailed converter agree on ``value``: equal result (field types
    included: ``RunStatus.RUNNING == "running"``), or both fail."""
    ours = outcome(fast, value, cls)
    theirs = outcome(_detailed.structure, value, cls)
    assert ours[0] == theirs[0], (value, ours, theirs)
    if ours[0] == "ok":
        assert ours[1] == theirs[1]
        assert _types(ours[1]) == _types(theirs[1])
    return ours[1]


def _types(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_types(item) for item in value]
    if not attrs.has(type(value)):
        return type(value)
    return [(f.name, _types(getattr(value, f.name))) for f in attrs.fields(type(value))]


@settings(max_examples=600, deadline=None)
@given(run_items | json_values)
def test_a_run_structures_alike_or_fails_alike(item: Any) -> None:
    """Any JSON value as a run: the generated function and cattrs' agree."""
    assert_same(item, AgentRun, _fast.structure)


@settings(max_examples=200, deadline=None)
@given(valid_runs)
def test_well_typed_runs_always_structure(item: dict[str, Any]) -> None:
    """The success side of the differential test is exercised: well-typed runs pass."""
    assume_parsable = all(
        value is None or _parses(value) for key, value in item.items() if key.endswith("At")
    )
    run = assert_same(item, AgentRun, _fast.structure)
    assert isinstance(run, AgentRun) == assume_parsable


def _parses(text: str) -> bool:
    try:
        datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "data": st.lists(run_items | json_leaf, max_size=4) | json_values,
            "runs": st.lists(run_items, max_size=4) | json_values,
            "serverId": st.text(max_size=5) | json_values,
            "agentRuntimeId": st.text(max_size=5) | st.none(),
            "object": st.just("list") | json_leaf,
            "extra": json_values,
        },
    )
)
def test_a_page_structures_alike_or_fails_alike(body: dict[str, Any]) -> None:
    """Whole pages (data/runs merge included) agree with cattrs' detailed converter."""
    assert_same(body, AgentRunList, _fast.structure)


def test_structure_run_explains_failures_under_the_given_path() -> None:
    """One run at a time (the watch engine's call): errors name the JSON path."""
    assert structure_run({"id": "r", "status": "running"}) == AgentRun(
        id="r", status=RunStatus.RUNNING
    )
    with pytest.raises(ResponseValidationError, match=r"\$\.data\[3\]\.threadBacked"):
        structure_run({"threadBacked": "yes"}, "$.data[3]")
    with pytest.raises(ResponseValidationError, match=r"\$\.createdAt"):
        structure_run({"createdAt": "soon"})
    with pytest.raises(ResponseValidationError, match=r"expected an object, got list\) @ \$"):
        structure_run(["r"])


class Colour(StrEnum):
    RED = "red"


@attrs.frozen
class Inner:
    name: str


@attrs.frozen
class Shapes:
    """Shapes our models do not use yet: the generator must agree with cattrs on them too."""

    required: str
    count: int = 0
    ratio: float | None = None
    tags: tuple[str, ...] = ()
    colour: Colour | str = "none"
    inner: Inner | None = None
    items: list[Inner] = attrs.Factory(list)
    labels: dict[str, Any] = attrs.Factory(dict)
    when: datetime | None = None
    flag: bool = attrs.field(default=False, kw_only=True)


@attrs.define
class WithPostInit:
    """Not plain slots: the generated function must call the class."""

    value: str | None = None
    seen: list[str] = attrs.field(factory=list, init=False)

    def __attrs_post_init__(self) -> None:
        self.seen.append("init")


@attrs.frozen
class WithValidator:
    value: str = attrs.field(validator=attrs.validators.min_len(2))


shapes_items = st.fixed_dictionaries(
    {},
    optional={
        "required": st.text(max_size=4) | json_leaf,
        "count": st.integers() | json_leaf,
        "ratio": st.floats(allow_nan=False) | json_leaf,
        "tags": st.lists(st.text(max_size=3), max_size=3) | json_values,
        "colour": st.sampled_from(["red", "blue"]) | json_leaf,
        "inner": st.fixed_dictionaries({"name": st.text(max_size=3) | json_leaf}) | json_values,
        "items": st.lists(st.fixed_dictionaries({"name": st.text(max_size=3)}), max_size=2)
        | json_values,
        "labels": st.dictionaries(st.text(max_size=3), json_values, max_size=2) | json_values,
        "when": timestamps | json_leaf,
        "flag": st.booleans() | json_leaf,
    },
)


@settings(max_examples=400, deadline=None)
@given(shapes_items | json_values)
def test_other_field_shapes_agree_with_cattrs(item: Any) -> None:
    """Required fields, non-None defaults, factories, kw_only, nested and fallback types."""
    assert_same(item, Shapes, make_structure_fn(Shapes, _fast, _camel))


def test_classes_it_cannot_write_fall_back_to_the_class_or_cattrs() -> None:
    """__attrs_post_init__ runs (the class is called); validators get cattrs' function."""
    made = make_structure_fn(WithPostInit, _fast, _camel)({"value": "x"}, WithPostInit)
    assert made.seen == ["init"]
    check = make_structure_fn(WithValidator, _fast, _camel)
    assert check({"value": "ok"}, WithValidator) == WithValidator("ok")
    with pytest.raises(ValueError, match="Length"):
        check({"value": "x"}, WithValidator)


def test_structured_runs_are_ordinary_instances() -> None:
    """Filled through a slot twin, a run is still exactly an AgentRun: frozen, hashable,
    picklable, evolvable, equal to one made by its constructor."""
    import pickle

    item = {"id": "r", "status": "running", "metadata": {"a": 1}, "threadBacked": True}
    run = structure_run(item)
    made = AgentRun(id="r", status=RunStatus.RUNNING, metadata={"a": 1}, thread_backed=True)
    assert type(run) is AgentRun
    assert run == made
    assert hash(run) == hash(made)
    assert pickle.loads(pickle.dumps(run)) == made
    assert attrs.evolve(run, title="t") == attrs.evolve(made, title="t")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        run.id = "other"  # type: ignore[misc]
