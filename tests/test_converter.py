"""The converter: camelCase JSON in, frozen models out, or a ResponseValidationError with a path."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from acp_async import AgentRun, AgentRunList, ResponseValidationError, RunMode, RunStatus
from acp_async._converter import structure

FULL_RUN = {
    "id": "run-1",
    "serverId": "srv-1",
    "threadId": "th-1",
    "title": "Summarise",
    "input": "in",
    "output": "out",
    "mode": "async",
    "status": "completed",
    "error": None,
    "metadata": {"source": "ci", "tags": ["a"]},
    "createdAt": "2026-11-29T06:00:00.123Z",
    "completedAt": "2026-11-29T06:01:00+02:00",
    "sessionProtocol": "acp/1",
    "threadBacked": True,
    "threadStatus": "idle",
    "threadTitle": "Thread",
}


def page(**body: Any) -> AgentRunList:
    return structure(body, AgentRunList)


def test_every_field_is_structured_with_derived_renames() -> None:
    """Each camelCase key lands on its snake_case field with the right type."""
    run = page(data=[FULL_RUN]).data[0]
    assert run == AgentRun(
        id="run-1",
        server_id="srv-1",
        thread_id="th-1",
        title="Summarise",
        input="in",
        output="out",
        mode=RunMode.ASYNC,
        status=RunStatus.COMPLETED,
        error=None,
        metadata={"source": "ci", "tags": ["a"]},
        created_at=datetime(2026, 11, 29, 6, 0, 0, 123000, tzinfo=UTC),
        completed_at=datetime(2026, 11, 29, 6, 1, tzinfo=timezone(timedelta(hours=2))),
        session_protocol="acp/1",
        thread_backed=True,
        thread_status="idle",
        thread_title="Thread",
    )
    assert run.is_terminal


def test_models_are_frozen_and_slotted() -> None:
    """Runs cannot be mutated and carry no per-instance dict."""
    run = AgentRun(id="x")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        run.id = "y"  # type: ignore[misc]
    assert not hasattr(run, "__dict__")
    assert hash(AgentRun(id="x", metadata={"a": 1})) == hash(AgentRun(id="x", metadata={"b": 2}))


def test_absent_and_null_fields_are_none() -> None:
    """A run with nothing but an id is valid; null is the same as absent."""
    run = page(data=[{"id": "r", "title": None, "metadata": None}]).data[0]
    assert run == AgentRun(id="r")
    assert not run.is_terminal


def test_list_envelope_fields() -> None:
    """serverId, agentRuntimeId and object are read; unknown keys are ignored."""
    runs = page(serverId="s", agentRuntimeId="rt", object="list", data=[], future={"x": 1})
    assert runs == AgentRunList(server_id="s", agent_runtime_id="rt", object="list", data=())
    assert len(runs) == 0


def test_empty_body_and_null_lists_are_empty_pages() -> None:
    """Every field of the body is optional: `{}` and null lists are an empty page."""
    assert page().data == ()
    assert page(data=None, runs=None).data == ()


def test_runs_are_used_when_data_is_absent() -> None:
    """`runs` items are the page when there is no `data`."""
    assert [r.id for r in page(runs=[{"id": "a"}, {"id": "b"}]).data] == ["a", "b"]


def test_data_and_runs_merge_by_id_data_first() -> None:
    """Both present: data first, then runs items whose id data does not have."""
    body = page(
        data=[{"id": "a", "title": "from data"}, {"id": "b"}],
        runs=[{"id": "a", "title": "from runs"}, {"id": "c"}],
    )
    assert [r.id for r in body.data] == ["a", "b", "c"]
    assert body.data[0].title == "from data"


def test_unknown_enum_values_stay_plain_strings() -> None:
    """A status or mode the server adds later is kept as str, not rejected."""
    run = page(data=[{"status": "paused", "mode": "batch"}]).data[0]
    assert run.status == "paused"
    assert type(run.status) is str
    assert type(run.mode) is str
    assert not run.is_terminal
    known = page(data=[{"status": "running", "mode": "sync"}]).data[0]
    assert known.status is RunStatus.RUNNING
    assert known.mode is RunMode.SYNC


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-29T06:00:00Z", datetime(2026, 11, 29, 6, tzinfo=UTC)),
        ("2026-11-29T06:00:00", datetime(2026, 11, 29, 6, tzinfo=UTC)),
        ("2026-11-29T06:00:00.5+00:00", datetime(2026, 11, 29, 6, 0, 0, 500000, tzinfo=UTC)),
        ("2026-11-29T06:00:00.123456789Z", datetime(2026, 11, 29, 6, 0, 0, 123456, tzinfo=UTC)),
    ],
)
def test_timestamps_are_timezone_aware(text: str, expected: datetime) -> None:
    """`Z`, offsets and fractions parse; a timestamp without offset is UTC."""
    created = page(data=[{"createdAt": text}]).data[0].created_at
    assert created == expected
    assert created is not None
    assert created.tzinfo is not None


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"data": [{"id": 5}]}, "$.data[0].id"),
        ({"data": [{"id": "ok"}, {"title": ["x"]}]}, "$.data[1].title"),
        ({"data": [{"createdAt": "yesterday"}]}, "$.data[0].createdAt"),
        ({"data": [{"createdAt": 1700000000}]}, "$.data[0].createdAt"),
        ({"data": [{"threadBacked": "yes"}]}, "$.data[0].threadBacked"),
        ({"data": [{"threadBacked": 1}]}, "$.data[0].threadBacked"),
        ({"data": [{"status": 3}]}, "$.data[0].status"),
        ({"data": [{"metadata": [1, 2]}]}, "$.data[0].metadata"),
        ({"data": ["run"]}, "$.data[0]"),
        ({"data": [None]}, "$.data[0]"),
        ({"data": "runs"}, "$.data"),
        ({"runs": {"id": "x"}}, "$.runs"),
        ({"serverId": 7}, "$.serverId"),
        ([{"id": "x"}], "$"),
        ("text", "$"),
    ],
)
def test_wrong_types_name_the_json_path(body: Any, path: str) -> None:
    """Wrong types raise ResponseValidationError naming the camelCase field path."""
    with pytest.raises(ResponseValidationError) as info:
        structure(body, AgentRunList)
    assert path in str(info.value)


def test_unhashable_ids_do_not_break_the_merge() -> None:
    """An id that is a list is a validation error, not a TypeError from the merge."""
    with pytest.raises(ResponseValidationError, match=r"\$\.data\[0\]\.id"):
        page(data=[{"id": ["a"]}], runs=[{"id": ["a"]}])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=30,
)
run_keys = st.sampled_from([*FULL_RUN, "other"])
run_like = st.dictionaries(run_keys, json_values, max_size=8)
body_like = st.dictionaries(
    st.sampled_from(["data", "runs", "serverId", "agentRuntimeId", "object", "x"]),
    json_values | st.lists(run_like | json_values, max_size=4),
    max_size=5,
)


@settings(max_examples=400, deadline=None)
@given(json_values | body_like)
def test_arbitrary_json_is_a_page_or_a_validation_error(body: Any) -> None:
    """Any JSON body either structures or raises ResponseValidationError; nothing else."""
    json.dumps(body)  # the strategy only makes JSON values
    try:
        result = structure(body, AgentRunList)
    except ResponseValidationError:
        return
    assert isinstance(result, AgentRunList)
    assert all(isinstance(run, AgentRun) for run in result.data)


def test_to_json_round_trips_in_the_api_field_names() -> None:
    """to_json gives camelCase keys and ISO times, and structures back to the same run."""
    from acp_async import to_json

    run = page(data=[FULL_RUN]).data[0]
    as_json = to_json(run)
    assert as_json["serverId"] == "srv-1"
    assert as_json["status"] == "completed"
    assert as_json["createdAt"] == "2026-11-29T06:00:00.123000Z"
    assert "error" not in as_json  # absent stays absent
    json.dumps(as_json)
    assert page(data=[as_json]).data[0] == run


def test_runs_are_not_weak_referenceable() -> None:
    """Models carry no __weakref__ slot (memory per run); weakref.ref says so plainly."""
    import weakref

    with pytest.raises(TypeError):
        weakref.ref(AgentRun(id="x"))
