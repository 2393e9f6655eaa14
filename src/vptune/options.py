"""Option dataclasses filled from keyword options, shared by methods and heads."""

from __future__ import annotations

import dataclasses
from typing import Any

from .errors import VptuneError


def fill_options(options_cls: type, given: dict[str, Any], owner: str, error: type[VptuneError]) -> Any:
    """`options_cls(**given)`; names it lacks raise `error` listing the ones it has."""
    known = {f.name for f in dataclasses.fields(options_cls)}
    unknown = sorted(set(given) - known)
    if unknown:
        raise error(
            f"{owner} has no option {', '.join(unknown)}; its options are: {', '.join(sorted(known)) or 'none'}"
        )
    return options_cls(**given)


def options_dict(options: Any) -> dict[str, Any]:
    """The options as plain JSON-shaped values (tuples become lists), as per-task files store them."""
    import json

    return json.loads(json.dumps(dataclasses.asdict(options)))
