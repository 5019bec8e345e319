"""A dict of keys to one value or several, as the probers find their targets by address.

Most addresses are probed by one target, so a key holds its one value itself and a list only
once a second value comes (several slices probing one address): at 10,000 targets a list per
key would be 10,000 lists for nothing.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class OneOrMany(Generic[K, V]):
    """Values by key, each key holding one value or a list of them (in the order added)."""

    __slots__ = ("_values",)

    def __init__(self) -> None:
        self._values: dict[K, V | list[V]] = {}

    def add(self, key: K, value: V) -> None:
        found = self._values.get(key)
        if found is None:
            self._values[key] = value
        elif isinstance(found, list):
            found.append(value)
        else:
            self._values[key] = [found, value]

    def remove(self, key: K, value: V) -> None:
        """Forget `value` under `key` (which must hold it)."""
        found = self._values[key]
        if isinstance(found, list):
            found.remove(value)
            if len(found) == 1:
                self._values[key] = found[0]
        else:
            del self._values[key]

    def get(self, key: K) -> Sequence[V]:
        """Every value under `key`, none if it has none."""
        found = self._values.get(key)
        if found is None:
            return ()
        return found if isinstance(found, list) else (found,)
