"""Name -> factory registries, filled with a decorator (the timm pattern).

Models, datasets, pruners and pruning criteria are all looked up through a `Registry`;
nothing in the project branches on a method name.
"""
from __future__ import annotations

from typing import Any, Callable, Generic, Iterator, TypeVar

from harness.errors import UserError

T = TypeVar("T")


class Registry(Generic[T]):
    """A named table of entries. ``kind`` is used in error messages ("model", "pruner", ...)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        """Decorator: ``@REG.register("resnet56", family="cifar_resnet")``."""

        def add(obj: T) -> T:
            if name in self._entries:
                raise UserError(
                    f"duplicate {self.kind} registration: {name!r} is already registered "
                    f"(by {_origin(self._entries[name])}); pick another name"
                )
            self._entries[name] = obj
            self._meta[name] = dict(meta)
            return obj

        return add

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise UserError(
                f"unknown {self.kind} {name!r}; registered: {', '.join(self.names())}"
            )
        return self._entries[name]

    def meta(self, name: str) -> dict[str, Any]:
        self.get(name)
        return self._meta[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def unregister(self, name: str) -> None:
        """For tests and plugin reloads."""
        self._entries.pop(name, None)
        self._meta.pop(name, None)


def _origin(obj: Any) -> str:
    mod = getattr(obj, "__module__", "?")
    qual = getattr(obj, "__qualname__", type(obj).__name__)
    return f"{mod}.{qual}"
