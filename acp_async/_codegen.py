"""Straight-line structure functions for attrs models, generated from their fields.

cattrs' own generator calls one hook per field. For the few JSON shapes our models use
(strict ``str``/``bool``, ``X | None``, open enums ``Enum | str``, datetimes,
``dict[str, Any]``, tuples of models) the check is written inline instead, so a run costs
one function call plus its constructor. Any other annotation falls back to the
converter's hook for it, and a class this generator cannot express (a field with a
validator, a converter, a default factory taking ``self``) gets cattrs' own function.
The inline checks must agree with the hooks of the detailed converter that explains
failures: a Hypothesis differential test (``tests/test_codegen.py``) holds them together.
"""

from __future__ import annotations

import keyword
import linecache
import types
from collections.abc import Callable
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Union, get_args, get_origin

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, override

__all__ = ("enum_members", "make_structure_fn", "open_enum")

_NONE = type(None)
_MISSING = object()
# Exactly the strict scalar hooks ``_converter`` registers: bool is not an int here.
_EXACT = {str: "str", bool: "bool"}


def open_enum(tp: Any) -> type[Enum] | None:
    """The enum of an ``Enum | str`` union (None allowed): known values become members."""
    if get_origin(tp) not in (Union, types.UnionType):
        return None
    args = set(get_args(tp)) - {_NONE}
    enums = [a for a in args if isinstance(a, type) and issubclass(a, Enum)]
    if len(enums) == 1 and args == {enums[0], str}:
        return enums[0]
    return None


def enum_members(enum: type[Enum]) -> dict[str, Enum]:
    """``enum``'s members by value: what a known value becomes."""
    return {member.value: member for member in enum}


def _wrong(expected: str, value: Any) -> TypeError:
    return TypeError(f"expected {expected}, got {type(value).__name__}")


class _Unsupported(Exception):
    """A field this generator does not write code for: use cattrs' own function."""


class _Writer:
    """Collects the source lines and the names they refer to."""

    def __init__(self, converter: cattrs.Converter) -> None:
        self.converter = converter
        self.lines: list[str] = []
        self.globals: dict[str, Any] = {
            "_wrong": _wrong,
            "_fromiso": datetime.fromisoformat,
            "_UTC": UTC,
            "_MISSING": _MISSING,
        }

    def name(self, prefix: str, value: Any) -> str:
        key = f"_{prefix}{len(self.globals)}"
        self.globals[key] = value
        return key

    def line(self, indent: int, text: str) -> None:
        self.lines.append("    " * indent + text)


def _split_optional(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (tp, False)."""
    if get_origin(tp) in (Union, types.UnionType) and _NONE in get_args(tp):
        rest = tuple(a for a in get_args(tp) if a is not _NONE)
        return (rest[0] if len(rest) == 1 else Union[rest]), True  # noqa: UP007
    return tp, False


def _write_value(out: _Writer, var: str, tp: Any, indent: int) -> None:
    """Lines that check ``var`` against ``tp`` (not None) and rebind it to the result."""
    exact = _exact(tp)
    if exact is not None:
        kind, expected = exact
        out.line(indent, f"if type({var}) is not {kind}: raise _wrong({expected!r}, {var})")
        return
    if tp is datetime:
        out.line(indent, f"if type({var}) is not str: raise _wrong('an ISO 8601 string', {var})")
        out.line(indent, f"{var} = _fromiso({var})")
        out.line(indent, f"if {var}.tzinfo is None: {var} = {var}.replace(tzinfo=_UTC)")
        return
    enum = open_enum(tp)
    if enum is not None:
        members = out.name("members", enum_members(enum))
        out.line(indent, f"if type({var}) is not str: raise _wrong('str', {var})")
        out.line(indent, f"{var} = {members}.get({var}, {var})")
        return
    hook = out.name("hook", out.converter.get_structure_hook(tp))
    annotation = out.name("type", tp)
    args = get_args(tp)
    if get_origin(tp) is tuple and len(args) == 2 and args[1] is Ellipsis:
        item = out.name("hook", out.converter.get_structure_hook(args[0]))
        item_type = out.name("type", args[0])
        # The common case inline; anything but a list takes cattrs' own path (same result).
        out.line(indent, f"if type({var}) is list:")
        out.line(indent + 1, f"{var} = tuple([{item}(i, {item_type}) for i in {var}])")
        out.line(indent, "else:")
        out.line(indent + 1, f"{var} = {hook}({var}, {annotation})")
        return
    out.line(indent, f"{var} = {hook}({var}, {annotation})")


def _exact(tp: Any) -> tuple[str, str] | None:
    """(type name, what the error expects) when ``tp`` is checked by exact type."""
    if isinstance(tp, type) and tp in _EXACT:
        return tp.__name__, _EXACT[tp]
    if get_origin(tp) is dict and get_args(tp) == (str, Any):
        return "dict", "an object"
    return None


def _write_field(out: _Writer, var: str, field: attrs.Attribute[Any], key: str) -> None:
    if field.validator is not None or field.converter is not None:
        raise _Unsupported(field.name)
    base, optional = _split_optional(field.type)
    if field.default is attrs.NOTHING:
        out.line(1, f"{var} = o[{key!r}]")
    elif field.default is None and optional:
        out.line(1, f"{var} = get({key!r})")
    else:
        default: Any = field.default
        if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
            if default.takes_self:
                raise _Unsupported(field.name)
            value = out.name("factory", default.factory) + "()"
        else:
            value = out.name("default", default)
        out.line(1, f"{var} = get({key!r}, _MISSING)")
        out.line(1, f"if {var} is _MISSING: {var} = {value}")
        out.line(1, "else:")
        _write_checked(out, var, base, optional, indent=2)
        return
    _write_checked(out, var, base, optional, indent=1)


def _write_checked(out: _Writer, var: str, base: Any, optional: bool, indent: int) -> None:
    exact = _exact(base)
    if optional and exact is not None:  # the type test first: most values are not None
        kind, expected = exact
        check = f"type({var}) is not {kind} and {var} is not None"
        out.line(indent, f"if {check}: raise _wrong({expected!r}, {var})")
    elif optional:
        out.line(indent, f"if {var} is not None:")
        _write_value(out, var, base, indent + 1)
    else:
        _write_value(out, var, base, indent)


def _plain_slots(cls: type[Any], fields: list[attrs.Attribute[Any]]) -> bool:
    """True when ``__init__`` would only store each argument in its slot, nothing else."""
    every = attrs.fields(cls)
    return (
        cls.__bases__ == (object,)
        and "__slots__" in cls.__dict__
        and len(fields) == len(every)
        and not any(hasattr(cls, hook) for hook in ("__attrs_pre_init__", "__attrs_post_init__"))
        and "__attrs_cached_hash__" not in cls.__slots__
        and all(f.name.isidentifier() and not keyword.iskeyword(f.name) for f in every)
        and all(type(cls.__dict__.get(f.name)).__name__ == "member_descriptor" for f in every)
    )


def _slot_twin(cls: type[Any]) -> type[Any] | None:
    """A plain class with ``cls``'s slots, whose instances can become ``cls`` instances.

    A frozen class overrides ``__setattr__``, which keeps CPython from specialising slot
    stores; the twin has no ``__setattr__``, so ``twin.field = value`` is one fast
    store. Assigning ``__class__`` then makes the instance a ``cls`` (allowed between
    identical layouts). None when the interpreter refuses that assignment.
    """
    twin = type(f"_{cls.__name__}Slots", (), {"__slots__": cls.__slots__})
    trial: Any = object.__new__(twin)
    try:
        trial.__class__ = cls
    except TypeError:
        return None
    return twin


def _construct(out: _Writer, cls: type[Any], fields: list[attrs.Attribute[Any]]) -> list[str]:
    """The lines building the instance: its slots filled directly when that is all
    ``__init__`` would do (a third of a run's cost otherwise), else a call to the class."""
    twin = _slot_twin(cls) if _plain_slots(cls, fields) else None
    if twin is None:
        args = [f"{f.alias}=a{i}" if f.kw_only else f"a{i}" for i, f in enumerate(fields)]
        return [f"    return {out.name('cls', cls)}({', '.join(args)})"]
    out.globals["_new"] = object.__new__
    lines = [f"    self = _new({out.name('twin', twin)})"]
    lines += [f"    self.{field.name} = a{index}" for index, field in enumerate(fields)]
    return [*lines, f"    self.__class__ = {out.name('cls', cls)}", "    return self"]


def make_structure_fn(
    cls: type[Any], converter: cattrs.Converter, rename: Callable[[str], str]
) -> Callable[[Any, Any], Any]:
    """A ``(value, cls) -> instance`` function for ``cls`` whose JSON keys are ``rename(field)``."""
    attrs.resolve_types(cls)
    fields = [f for f in attrs.fields(cls) if f.init]
    out = _Writer(converter)
    try:
        for index, field in enumerate(fields):
            _write_field(out, f"a{index}", field, rename(field.name))
    except _Unsupported:
        renames = {a.name: override(rename=rename(a.name)) for a in attrs.fields(cls)}
        return make_dict_structure_fn(cls, converter, **renames)  # type: ignore[arg-type]
    name = f"structure_{cls.__name__}"
    source = "\n".join(
        [
            f"def {name}(o, _=None):",
            "    if type(o) is not dict: raise _wrong('an object', o)",
            "    get = o.get",
            *out.lines,
            *_construct(out, cls, fields),
        ]
    )
    filename = f"<acp_async generated structure {cls.__module__}.{cls.__qualname__}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = dict(out.globals)
    exec(compile(source, filename, "exec"), namespace)
    return namespace[name]  # type: ignore[no-any-return]
