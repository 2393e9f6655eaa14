"""The interface every tuning method implements, and the name registry."""

from __future__ import annotations

import dataclasses
import difflib
import re
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from ..errors import MethodError
from ..model import TunedModel
from ..option_fields import fill_options, typed_options

_REGISTRY: dict[str, "Method"] = {}
_NUMBERED = re.compile(r"^(?P<base>[a-z]+)-(?P<k>\d+)$")


@dataclasses.dataclass
class NoOptions:
    """Options of a method that has none."""


class Method(ABC):
    """A tuning method: its options, and which tensors it adds to and trains in a TunedModel.

    Subclasses set `name`, an `Options` dataclass and implement `attach`. A method named
    with `-k` (e.g. `partial-k`) is called as `partial-4`; `k` fills the option `k`.
    """

    name: ClassVar[str]
    Options: ClassVar[type]
    summary: ClassVar[str] = ""

    def parse_options(self, given: dict[str, Any]) -> Any:
        """Options dataclass from keyword options; unknown names, wrong types and bad values raise MethodError."""
        options = fill_options(self.Options, given, "method", self.name, MethodError)
        self.validate(options)
        return options

    def typed_options(self, given: dict[str, Any], *, text: bool) -> dict[str, Any]:
        """`given` checked against the Options field types; `text`: values read from YAML or flags are parsed."""
        return typed_options(self.Options, given, "method", self.name, MethodError, text=text)

    def validate(self, options: Any) -> None:
        """Raise MethodError for option values that cannot work."""

    def require_count(self, option: str, value: Any, minimum: int, example: str = "") -> None:
        """Raise MethodError unless `value` is a whole number >= `minimum`."""
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            hint = f" (e.g. {example})" if example else ""
            raise MethodError(f"{self.name} needs {option} >= {minimum} as a whole number{hint}, got {value!r}")

    @abstractmethod
    def attach(self, model: TunedModel, options: Any) -> None:
        """Add this method's modules to `model` and mark exactly its tensors trainable."""


def register(method_cls: type[Method]) -> type[Method]:
    """Class decorator adding a method to the registry under its name."""
    _REGISTRY[method_cls.name] = method_cls()
    return method_cls


def available_methods() -> list[str]:
    """Registered method names (numbered ones as `name-k`)."""
    return sorted(_REGISTRY)


def options_from_text(method: str, given: dict[str, Any]) -> dict[str, Any]:
    """Options of `method` read from YAML or `--option KEY=VALUE`, typed like its Options fields."""
    return get_method(method)[0].typed_options(given, text=True)


def get_method(name: str) -> tuple[Method, dict[str, Any]]:
    """The method for `name` and the options its name implies (`partial-4` -> k=4)."""
    if name in _REGISTRY:
        return _REGISTRY[name], {}
    numbered = _NUMBERED.match(name)
    if numbered and f"{numbered['base']}-k" in _REGISTRY:
        return _REGISTRY[f"{numbered['base']}-k"], {"k": int(numbered["k"])}
    close = difflib.get_close_matches(name, list(_REGISTRY), n=2)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise MethodError(f"unknown method '{name}'{hint} (available: {', '.join(available_methods())})")
