"""Typed values from YAML files, `--option KEY=VALUE` and keyword arguments.

One function, `coerce`, checks a value against the type a dataclass field declares. Values
read from text (YAML files, `--option KEY=VALUE`) are converted the way the command line
converts its flags: `lr: 1e-3` (a string to YAML) becomes 1e-3, `epochs: ten` is refused.
Values given in Python must already have the declared type (an int may stand for a float).
"""

from __future__ import annotations

import json
import math
import types
import typing
from typing import Any

from .errors import VptuneError

_TYPE_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}


def coerce_fields(cls: Any, values: dict[str, Any], *, text: bool, error: type[VptuneError] = VptuneError,
                  label: str = "") -> dict[str, Any]:
    """`values` with each one coerced to the type its name has in `cls` (a dataclass's field, a function's argument)."""
    hints = typing.get_type_hints(cls)
    return {name: coerce(value, hints[name], f"{label}{name}", text=text, error=error) if name in hints else value
            for name, value in values.items()}


def coerce(value: Any, annotation: Any, name: str, *, text: bool, error: type[VptuneError] = VptuneError) -> Any:
    """`value` as `annotation` (bool, int, float, str, their `| None`, lists, tuples, dicts).

    `text`: the value was read from text, so numbers written as strings are parsed.
    Raises `error` naming `name`, the expected type and the value given.
    """
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        choices = [a for a in args if a is not type(None)]
        if len(choices) == 1:
            return coerce(value, choices[0], name, text=text, error=error)
        for choice in choices:
            try:
                return coerce(value, choice, name, text=text, error=error)
            except VptuneError:
                pass
        raise error(f"{name} must be {' or '.join(map(_type_word, choices))}, got {value!r}")
    if annotation is Any:
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise error(f"{name} takes a list ({_example(annotation)}), got {value!r}")
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise error(f"{name} takes {len(args)} values ({_example(annotation)}), got {value!r}")
            return tuple(coerce(v, a, name, text=text, error=error) for v, a in zip(value, args))
        items = [coerce(v, args[0], name, text=text, error=error) for v in value] if args else list(value)
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise error(f"{name} takes a mapping of key: value, got {value!r}")
        return dict(value)
    return _scalar(value, annotation, name, text, error)


def _scalar(value: Any, kind: type, name: str, text: bool, error: type[VptuneError]) -> Any:
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if text and isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if text and isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
    elif kind is str:
        if isinstance(value, str):
            return value
        if text and isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # `task: 123` names the folder 123, as the flag would
    elif isinstance(value, kind):
        return value
    raise error(f"{name} must be {_type_word(kind)}, got {value!r}")


def _type_word(kind: Any) -> str:
    origin = typing.get_origin(kind)
    if origin in (list, tuple):
        return "a list"
    if origin is dict:
        return "a mapping"
    return _TYPE_WORDS.get(kind, f"a {getattr(kind, '__name__', kind)}")


def _example(annotation: Any) -> str:
    args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
    if args and all(a is int for a in args):
        return "e.g. [1, 6]"
    return "e.g. [a, b]"


def json_shaped(values: dict[str, Any]) -> dict[str, Any]:
    """`values` as they come back from a JSON or YAML file (tuples become lists), so options round-trip unchanged."""
    return json.loads(json.dumps(values))


def non_finite(values: dict[str, Any]) -> list[str]:
    """Names of the float values (also inside lists and tuples) that are NaN or infinite."""
    bad = []
    for name, value in values.items():
        items = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in items):
            bad.append(name)
    return bad
