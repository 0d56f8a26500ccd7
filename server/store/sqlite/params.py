"""Many values in one statement: ``IN (…)`` lists and tables of pairs, a chunk at a time
(a statement takes a bounded number of parameters)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

CHUNK = 500  # values per IN (...) list, pairs per VALUES table

T = TypeVar("T")


def chunks(values: Sequence[T], size: int = CHUNK) -> Iterable[Sequence[T]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def marks(values: Sequence[Any]) -> str:
    """The ``?, ?, …`` of an ``IN (…)`` list of ``values``."""
    return ", ".join("?" * len(values))


def pair_table(pairs: Sequence[tuple[Any, Any]]) -> tuple[str, list[Any]]:
    """``(VALUES (?, ?), …)`` and its parameters: a table of ``column1``, ``column2`` to
    JOIN on. A join, not ``(a, b) IN (VALUES …)``: SQLite scans the whole table for that."""
    return f"(VALUES {', '.join(['(?, ?)'] * len(pairs))})", [x for pair in pairs for x in pair]
