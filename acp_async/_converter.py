"""The one place where JSON becomes models.

Two cattrs converters share the same declarative rules: a fast one for good
responses, and a detailed one that only runs to explain a failure with a
``$.path``. Renames come from the field names (snake_case to camelCase); the
only hand-written hooks are per type: strict scalars, datetimes, open enums.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from datetime import UTC, datetime
from enum import Enum
from typing import Any, TypeVar, Union, get_args, get_origin

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

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


def _open_enum(tp: Any) -> type[Enum] | None:
    """The enum of an ``Enum | str`` union: known values become members, others stay str."""
    if get_origin(tp) not in (Union, types.UnionType):
        return None
    args = set(get_args(tp)) - {type(None)}
    enums = [a for a in args if isinstance(a, type) and issubclass(a, Enum)]
    if len(enums) == 1 and args == {enums[0], str}:
        return enums[0]
    return None


def _open_enum_hook(tp: Any) -> Callable[[Any, Any], Any]:
    members = _open_enum(tp)._value2member_map_  # type: ignore[union-attr]

    def structure(value: Any, _: Any) -> Any:
        if value is None:
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


def _run_id(item: Any) -> str | None:
    run_id = item.get("id") if type(item) is dict else None
    return run_id if type(run_id) is str else None


def _merge_runs(body: Any) -> dict[str, Any]:
    """Fold ``runs`` into ``data`` (``data`` first, merged by id) so each run is structured once."""
    if type(body) is not dict:
        raise ResponseValidationError(f"$: expected an object, got {type(body).__name__}")
    data, runs = _list_at(body, "data"), _list_at(body, "runs")
    if runs:
        seen = {_run_id(item) for item in data} - {None}
        data = data + [item for item in runs if _run_id(item) not in seen]
    return body if data is body.get("data") else {**body, "data": data}


def page_items(body: Any) -> list[Any]:
    """A decoded page's runs as decoded JSON, ``data`` and ``runs`` merged by id (``data`` first).

    For the watch, which fingerprints items and structures only new or changed ones
    (one at a time, with ``structure(item, AgentRun)``).
    """
    items: list[Any] = _merge_runs(body)["data"]
    return items


def _objects_only(fn: Callable[[Any, Any], T]) -> Callable[[Any, Any], T]:
    """Generated structure functions accept any container; a run must be a JSON object."""

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
    converter.register_structure_hook_factory(lambda t: _open_enum(t) is not None, _open_enum_hook)

    def camel_case_fn(cls: type[Any]) -> Callable[[Any, Any], Any]:
        renames = {a.name: override(rename=_camel(a.name)) for a in attrs.fields(cls)}
        return make_dict_structure_fn(cls, converter, **renames)  # type: ignore[arg-type]

    converter.register_structure_hook(AgentRun, _objects_only(camel_case_fn(AgentRun)))
    converter.register_unstructure_hook(datetime, _iso_8601)
    converter.register_unstructure_hook_func(lambda t: _open_enum(t) is not None, _enum_value)
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
        AgentRunList, lambda body, cls: run_list(_merge_runs(body), cls)
    )
    return converter


_fast = _make_converter(detailed=False)
_detailed = _make_converter(detailed=True)


def _json_path(message: str) -> str:
    """cattrs names attributes; users read the JSON, so show the camelCase keys."""
    text, sep, path = message.rpartition(" @ ")
    return f"{text}{sep}{'.'.join(_camel(part) for part in path.split('.'))}" if sep else message


def _explain(exc: BaseException) -> str:
    messages = [_json_path(m) for m in cattrs.transform_error(exc, path="$")]
    shown = "; ".join(messages[:_MAX_REPORTED_ERRORS])
    more = len(messages) - _MAX_REPORTED_ERRORS
    return f"{shown}; and {more} more" if more > 0 else shown


def to_json(run: AgentRun) -> dict[str, Any]:
    """A run as the API would send it: camelCase keys, ISO 8601 times, absent fields left out."""
    return _fast.unstructure(run)  # type: ignore[no-any-return]


def structure(body: Any, cls: type[T]) -> T:
    """Build ``cls`` from decoded JSON, or raise ResponseValidationError naming the field."""
    try:
        return _fast.structure(body, cls)
    except ResponseValidationError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, cattrs.BaseValidationError):
        pass  # the fast path cannot say where; replay in detail below
    try:
        _detailed.structure(body, cls)
    except ResponseValidationError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, cattrs.BaseValidationError) as exc:
        raise ResponseValidationError(f"unexpected response shape: {_explain(exc)}") from None
    raise ResponseValidationError("unexpected response shape")  # pragma: no cover
