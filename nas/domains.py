"""Search domains attached to config fields.

A field of a component's parameters declares the values a search may give it, e.g.
``expand_ratio: float = param(4.0, Choice(2.0, 3.0, 4.0, 6.0))``. Search spaces are derived
from these declarations, so the config types are the single description of what exists.
This module knows nothing of Optuna: spaces translate domains into suggestions.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Choice:
    """One of a fixed set of values (ints, floats, strings or bools)."""

    values: tuple

    def __init__(self, *values: Any):
        if not values:
            raise ValueError("Choice needs at least one value")
        object.__setattr__(self, "values", tuple(values))

    def contains(self, value: Any) -> bool:
        # bools are ints in Python; keep True from matching 1
        return any(type(v) is type(value) and v == value for v in self.values) or (
            isinstance(value, float) and any(isinstance(v, float) and v == value for v in self.values)
        )

    def describe(self) -> str:
        return "{" + ", ".join(map(repr, self.values)) + "}"


@dataclass(frozen=True)
class IntRange:
    """An integer in [low, high] on a grid of ``step`` starting at ``low``; ``log``: sampled
    log-uniformly (small values as likely as large ones in ratio, e.g. depths), step 1 only."""

    low: int
    high: int
    step: int = 1
    log: bool = False

    def __post_init__(self) -> None:
        if self.log and (self.step != 1 or self.low < 1):
            raise ValueError(f"a log-uniform IntRange needs step 1 and low >= 1, got [{self.low}, {self.high}] "
                             f"step {self.step}")

    def contains(self, value: Any) -> bool:
        return (isinstance(value, int) and not isinstance(value, bool)
                and self.low <= value <= self.high and (value - self.low) % self.step == 0)

    def describe(self) -> str:
        return (f"int in [{self.low}, {self.high}]" + (f" step {self.step}" if self.step > 1 else "")
                + (" log-uniform" if self.log else ""))


@dataclass(frozen=True)
class Seq:
    """A tuple whose length lies in [min_len, max_len] and whose items lie in ``item``."""

    item: Any
    min_len: int
    max_len: int

    def contains(self, value: Any) -> bool:
        return (isinstance(value, tuple) and self.min_len <= len(value) <= self.max_len
                and all(self.item.contains(v) for v in value))

    def describe(self) -> str:
        return f"tuple of {self.min_len}..{self.max_len} items, each {self.item.describe()}"


@dataclass(frozen=True)
class Fixed:
    """A single value: the dimension exists but is not searched."""

    value: Any

    def contains(self, value: Any) -> bool:
        return value == self.value and type(value) is type(self.value)

    def describe(self) -> str:
        return f"fixed {self.value!r}"


@dataclass(frozen=True)
class Same:
    """Tied to another dimension: takes the value already chosen for ``label`` (e.g. the first
    stage's width equals the stem width when nothing between them changes width)."""

    label: str

    def contains(self, value: Any) -> bool:
        return True  # checked against the referenced value by the space's walk

    def describe(self) -> str:
        return f"same as {self.label}"


Domain = Choice | IntRange | Seq | Fixed | Same


def param(default: Any, domain: Domain, doc: str = "") -> Any:
    """A dataclass field with a search domain (and an optional one-line description)."""
    if not domain.contains(default):
        raise ValueError(f"default {default!r} lies outside its own domain {domain.describe()}")
    return dataclasses.field(default=default, metadata={"domain": domain, "doc": doc})


def domain_of(f: dataclasses.Field) -> Domain:
    try:
        return f.metadata["domain"]
    except KeyError:
        raise TypeError(f"field {f.name!r} has no search domain; declare it with nas.domains.param") from None
