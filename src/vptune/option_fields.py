"""Option dataclasses of methods and heads, filled from keyword options or from text."""

from __future__ import annotations

import dataclasses
from typing import Any

from .errors import VptuneError
from .values import coerce_fields, json_shaped, non_finite


def typed_options(
    options_cls: type, given: dict[str, Any], kind: str, name: str, error: type[VptuneError], *, text: bool
) -> dict[str, Any]:
    """`given` checked against `options_cls`'s field names and types (`text`: values read from YAML or flags).

    Unknown names and wrong types raise `error`, naming the `kind` (method, head) and its `name`.
    """
    known = {f.name for f in dataclasses.fields(options_cls)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise error(
            f"{kind} '{name}' has no option {', '.join(unknown)}; its options are: {', '.join(sorted(known)) or 'none'}"
        )
    return coerce_fields(options_cls, given, text=text, error=error, label=f"{name} option ")


def fill_options(options_cls: type, given: dict[str, Any], kind: str, name: str, error: type[VptuneError]) -> Any:
    """`options_cls(**given)` after `typed_options`; non-finite numbers raise `error` too."""
    typed = typed_options(options_cls, given, kind, name, error, text=False)
    for option in non_finite(typed):
        raise error(f"{name} option {option} must be a finite number, got {typed[option]}")
    return options_cls(**typed)


def options_dict(options: Any) -> dict[str, Any]:
    """The options as plain JSON-shaped values (tuples become lists), as per-task files store them."""
    return json_shaped(dataclasses.asdict(options))
