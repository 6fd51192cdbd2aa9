"""The one place where JSON becomes models.

Two cattrs converters share the same declarative rules: a fast one for good
responses, and a detailed one that only runs to explain a failure with a
``$.path``. Renames come from the field names (snake_case to camelCase); the
only hand-written hooks are per type: strict scalars, datetimes, open enums.
The fast converter's model functions are written by ``_codegen`` from the same
fields and annotations, with those per-type checks inline; the detailed one
keeps cattrs' own generated functions.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from enum import Enum
from typing import Any, TypeVar, get_args

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from ._codegen import enum_members, make_structure_fn, open_enum
from .errors import ResponseValidationError
from .models import AgentRun, AgentRunList

T = TypeVar("T")

_MAX_REPORTED_ERRORS = 5


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


def _strict(kind: type[T]) -> Callable[[Any, Any], T]:
    """JSON scalars pass as they are; cattrs would otherwise coerce ``5`` into ``"5"``."""

    def structure(value: Any, _: Any) -> T:
        if type(value) is not kind:
            raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    return structure


def _strict_or_none(kind: type[T]) -> Callable[[Any, Any], T | None]:
    """``kind | None`` in one call: cattrs' generic Optional hook costs a second call per field."""

    def structure(value: Any, _: Any) -> T | None:
        if value is None or type(value) is kind:
            return value
        raise TypeError(f"expected {kind.__name__}, got {type(value).__name__}")

    return structure


def _structure_datetime(value: Any, _: Any) -> datetime:
    if type(value) is not str:
        raise TypeError(f"expected an ISO 8601 string, got {type(value).__name__}")
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _structure_datetime_or_none(value: Any, _: Any) -> datetime | None:
    return None if value is None else _structure_datetime(value, _)


def _iso_8601(moment: datetime) -> str:
    """As the API writes it: ``Z`` for UTC."""
    text = moment.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _structure_object(value: Any, _: Any) -> dict[str, Any]:
    if type(value) is not dict:
        raise TypeError(f"expected an object, got {type(value).__name__}")
    return value


def _open_enum_hook(tp: Any) -> Callable[[Any, Any], Any]:
    enum = open_enum(tp)
    assert enum is not None  # registered for open enums only
    members = enum_members(enum)
    optional = type(None) in get_args(tp)

    def structure(value: Any, _: Any) -> Any:
        if value is None and optional:
            return None
        if type(value) is not str:
            raise TypeError(f"expected str, got {type(value).__name__}")
        return members.get(value, value)

    return structure


def _enum_value(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def _list_at(body: dict[str, Any], key: str) -> list[Any]:
    items = body.get(key)
    if items is None:
        return []
    if type(items) is not list:
        raise ResponseValidationError(f"$.{key}: expected a list, got {type(items).__name__}")
    return items


def merge_runs(body: Any) -> dict[str, Any]:
    """Fold ``runs`` into ``data`` (``data`` first, merged by id) so each run is structured once.

    Only string ids match; an item without one (or not an object) is always kept.
    """
    if type(body) is not dict:
        raise ResponseValidationError(f"$: expected an object, got {type(body).__name__}")
    data, runs = _list_at(body, "data"), _list_at(body, "runs")
    if runs:
        seen = {i for item in data if type(item) is dict and type(i := item.get("id")) is str}
        data = data + [
            item
            for item in runs
            if type(item) is not dict or type(i := item.get("id")) is not str or i not in seen
        ]
    return body if data is body.get("data") else {**body, "data": data}


def page_items(body: Any) -> list[Any]:
    """A decoded page's runs as decoded JSON, ``data`` and ``runs`` merged by id (``data`` first).

    For the watch, which fingerprints items and structures only new or changed ones
    (one at a time, with ``structure(item, AgentRun)``).
    """
    items: list[Any] = merge_runs(body)["data"]
    return items


def _objects_only(fn: Callable[[Any, Any], T]) -> Callable[[Any, Any], T]:
    """cattrs' functions accept any container; a run must be a JSON object."""

    def structure(value: Any, cls: Any) -> T:
        if type(value) is not dict:
            raise TypeError(f"expected an object, got {type(value).__name__}")
        return fn(value, cls)

    return structure


def _make_converter(*, detailed: bool) -> cattrs.Converter:
    converter = cattrs.Converter(detailed_validation=detailed)
    converter.register_structure_hook(str, _strict(str))
    converter.register_structure_hook(bool, _strict(bool))
    converter.register_structure_hook(datetime, _structure_datetime)
    converter.register_structure_hook_func(lambda t: t == dict[str, Any], _structure_object)
    # The optional forms every model field uses, each one call (same checks as above).
    converter.register_structure_hook(str | None, _strict_or_none(str))
    converter.register_structure_hook(bool | None, _strict_or_none(bool))
    converter.register_structure_hook(dict[str, Any] | None, _strict_or_none(dict))
    converter.register_structure_hook(datetime | None, _structure_datetime_or_none)
    converter.register_structure_hook_factory(lambda t: open_enum(t) is not None, _open_enum_hook)

    def camel_case_fn(cls: type[Any]) -> Callable[[Any, Any], Any]:
        if not detailed:  # straight-line code with the checks above inline
            return make_structure_fn(cls, converter, _camel)
        renames = {a.name: override(rename=_camel(a.name)) for a in attrs.fields(cls)}
        return _objects_only(make_dict_structure_fn(cls, converter, **renames))  # type: ignore[arg-type]

    converter.register_structure_hook_factory(attrs.has, camel_case_fn)
    converter.register_unstructure_hook(datetime, _iso_8601)
    converter.register_unstructure_hook_func(lambda t: open_enum(t) is not None, _enum_value)
    converter.register_unstructure_hook(
        AgentRun,
        make_dict_unstructure_fn(
            AgentRun,
            converter,
            _cattrs_omit_if_default=True,
            **{a.name: override(rename=_camel(a.name)) for a in attrs.fields(AgentRun)},  # type: ignore[arg-type]
        ),
    )
    run_list = camel_case_fn(AgentRunList)
    converter.register_structure_hook(
        AgentRunList, lambda body, cls: run_list(merge_runs(body), cls)
    )
    return converter


_fast = _make_converter(detailed=False)
_detailed = _make_converter(detailed=True)
_fast_run = _fast.get_structure_hook(AgentRun)


def _json_path(message: str) -> str:
    """cattrs names attributes; users read the JSON, so show the camelCase keys."""
    text, sep, path = message.rpartition(" @ ")
    return f"{text}{sep}{'.'.join(_camel(part) for part in path.split('.'))}" if sep else message


def _explained(exc: BaseException, path: str) -> ResponseValidationError:
    """The error for a failed replay: each problem with its JSON path, the first few told."""
    problems = tuple(_json_path(m) for m in cattrs.transform_error(exc, path=path))
    shown = "; ".join(problems[:_MAX_REPORTED_ERRORS])
    more = len(problems) - _MAX_REPORTED_ERRORS
    message = f"{shown}; and {more} more" if more > 0 else shown
    return ResponseValidationError(f"unexpected response shape: {message}", problems=problems)


def to_json(run: AgentRun) -> dict[str, Any]:
    """A run as the API would send it: camelCase keys, ISO 8601 times, absent fields left out.

    Example::

        print(json.dumps(to_json(run)))   # {"id": "run-1", "status": "completed", ...}
    """
    return _fast.unstructure(run)  # type: ignore[no-any-return]


# OverflowError: int(inf) from a cattrs int hook (no model field is an int yet).
_FAILURES = (
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    OverflowError,
    cattrs.BaseValidationError,
)


def _replay(body: Any, cls: type[Any], path: str) -> ResponseValidationError:
    """The fast path cannot say where it failed: cattrs' detailed function can."""
    try:
        _detailed.structure(body, cls)
    except ResponseValidationError as exc:
        return exc
    except _FAILURES as exc:
        return _explained(exc, path)
    return ResponseValidationError("unexpected response shape")  # pragma: no cover


def structure(body: Any, cls: type[T]) -> T:
    """Build ``cls`` from decoded JSON, or raise ResponseValidationError naming the field."""
    try:
        return _fast.structure(body, cls)
    except ResponseValidationError:
        raise
    except _FAILURES:
        pass  # raised outside the except block: no chained fast-path error
    raise _replay(body, cls, "$")


def structure_run(item: Any, path: str = "$") -> AgentRun:
    """One run from its decoded JSON object; errors name ``path`` (say ``$.data[3]``) first."""
    try:
        return _fast_run(item, AgentRun)  # type: ignore[no-any-return]
    except _FAILURES:
        pass
    raise _replay(item, AgentRun, path)
