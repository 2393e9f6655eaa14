"""Option dataclasses of methods and heads: typed fields whose metadata declares help, limits and text parsing.

An option is a dataclass field; its `metadata` may hold
- `help`: what the option does;
- `min` / `max`: inclusive bounds, `below`: an exclusive upper bound (numbers, or every item of a list);
- `choices`: the values allowed;
- `parse`: a function reading the option from text (YAML, flags), e.g. `1-6` for a block range.
`fill_options` checks names, types and these limits once, for every method and head.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .errors import VptuneError
from .values import coerce_fields, json_shaped, non_finite


@dataclasses.dataclass
class NoOptions:
    """Options of a method or head that has none."""


def typed_options(
    options_cls: type, given: dict[str, Any], kind: str, name: str, error: type[VptuneError], *, text: bool
) -> dict[str, Any]:
    """`given` checked against `options_cls`'s field names and types (`text`: values read from YAML or flags).

    Unknown names and wrong types raise `error`, naming the `kind` (method, head) and its `name`.
    Text values of a field with a `parse` function are read by it first.
    """
    fields = {f.name: f for f in dataclasses.fields(options_cls)}
    unknown = sorted(set(given) - set(fields))
    if unknown:
        raise error(
            f"{kind} '{name}' has no option {', '.join(unknown)}; its options are: {', '.join(sorted(fields)) or 'none'}"
        )
    if text:
        given = {key: _parsed(fields[key], value) for key, value in given.items()}
    return coerce_fields(options_cls, given, text=text, error=error, label=f"{name} option ")


def fill_options(options_cls: type, given: dict[str, Any], kind: str, name: str, error: type[VptuneError]) -> Any:
    """`options_cls(**given)` after `typed_options`; non-finite numbers and values outside a field's limits raise `error`."""
    typed = typed_options(options_cls, given, kind, name, error, text=False)
    for option in non_finite(typed):
        raise error(f"{name} option {option} must be a finite number, got {typed[option]}")
    fields = {f.name: f for f in dataclasses.fields(options_cls)}
    for option, value in typed.items():
        problem = limit_problem(fields[option], value)
        if problem:
            raise error(f"{name} {problem}")
    return options_cls(**typed)


def limit_problem(field: dataclasses.Field, value: Any) -> str | None:
    """What is wrong with `value` by the limits `field` declares (`needs k >= 1, got 0`), or None."""
    meta = field.metadata
    choices = meta.get("choices")
    if choices is not None and value is not None and value not in choices:
        return f"option {field.name} '{value}' is not one of: {', '.join(map(str, choices))}"
    low, high, below = meta.get("min"), meta.get("max"), meta.get("below")
    if low is None and high is None and below is None:
        return None
    items = value if isinstance(value, (list, tuple)) else [value]
    for item in items:
        if item is None:
            continue
        if (low is not None and item < low) or (high is not None and item > high) or (below is not None and item >= below):
            return f"needs {field.name} {_range(low, high, below)}, got {value!r}"
    return None


def option_help(field: dataclasses.Field) -> str:
    """The field's `help` text, with its limits (`>= 1`, `in [0, 1)`, `one of: a, b`) when it declares any."""
    meta = field.metadata
    parts = [meta.get("help", "")]
    if "choices" in meta:
        parts.append(f"one of: {', '.join(map(str, meta['choices']))}")
    elif any(key in meta for key in ("min", "max", "below")):
        parts.append(_range(meta.get("min"), meta.get("max"), meta.get("below")))
    return "; ".join(part for part in parts if part)


def options_dict(options: Any) -> dict[str, Any]:
    """The options as plain JSON-shaped values (tuples become lists), as per-task files store them."""
    return json_shaped(dataclasses.asdict(options))


def _parsed(field: dataclasses.Field, value: Any) -> Any:
    parse = field.metadata.get("parse")
    return parse(value) if parse is not None and isinstance(value, str) else value


def _range(low: Any, high: Any, below: Any) -> str:
    if low is not None and below is not None:
        return f"in [{low}, {below})"
    if low is not None and high is not None:
        return f"in [{low}, {high}]"
    if low is not None:
        return f">= {low}"
    return f"< {below}" if below is not None else f"<= {high}"
