"""Registered things by name (methods, heads, task types, backbone families), with a close-match suggestion."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Generic, TypeVar

from .errors import VptuneError

T = TypeVar("T")


class Registry(Generic[T]):
    """Instances of registered classes by their `name`, in registration order.

    `register` is a class decorator that stores one instance of the class. Looking up an
    unknown name raises `error` naming the `kind`, the closest names and every name there is.
    """

    def __init__(self, kind: str, error: type[VptuneError] = VptuneError) -> None:
        self.kind = kind
        self.error = error
        self._items: dict[str, T] = {}

    def register(self, cls: type[T]) -> type[T]:
        """Class decorator: register an instance of `cls` under `cls.name`."""
        name = cls.name  # type: ignore[attr-defined]
        if name in self._items:
            raise VptuneError(f"{self.kind} '{name}' is registered twice; give the new one another name")
        self._items[name] = cls()
        return cls

    def get(self, name: str) -> T:
        """The registered object called `name`; `error` with a suggestion otherwise."""
        if name in self._items:
            return self._items[name]
        raise self.unknown(name)

    def unknown(self, name: str) -> VptuneError:
        """The error for a name nothing is registered under: `unknown method 'x'; did you mean y? (available: ...)`."""
        close = difflib.get_close_matches(str(name), list(self._items), n=2)
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        return self.error(f"unknown {self.kind} '{name}'{hint} (available: {', '.join(self.names())})")

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[T]:
        """The registered objects, in registration order."""
        return iter(list(self._items.values()))

    def __len__(self) -> int:
        return len(self._items)
