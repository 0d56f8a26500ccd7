"""Many values in one statement: ``IN (…)`` lists and tables of pairs, a chunk at a time
(a statement takes a bounded number of parameters)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from sqlite_utils import Database

CHUNK = 500  # values per IN (...) list, pairs per VALUES table

T = TypeVar("T")


def chunks(values: Sequence[T], size: int = CHUNK) -> Iterable[Sequence[T]]:
    for i in range(0, len(values), size):
        yield values[i : i + size]


def marks(values: Sequence[Any]) -> str:
    """The ``?, ?, …`` of an ``IN (…)`` list of ``values``."""
    return ", ".join("?" * len(values))


def values_table(rows: Sequence[Sequence[Any]]) -> tuple[str, list[Any]]:
    """``(VALUES (?, ?, …), …)`` and its parameters: a table of ``column1``, ``column2``, …
    (as many as each of the rows, at least one, has values) to JOIN on. A join, not
    ``(a, b) IN (VALUES …)``: SQLite scans the whole table for that."""
    listed, params = values(rows)
    return f"({listed})", params


def values(rows: Sequence[Sequence[Any]]) -> tuple[str, list[Any]]:
    """``VALUES (?, ?, …), …`` for ``rows`` (each as wide as the first) and its parameters:
    many rows in one ``INSERT``."""
    row = f"({marks(rows[0])})"
    return f"VALUES {', '.join([row] * len(rows))}", [x for r in rows for x in r]


def insert_rows(db: Database, head: str, rows: Sequence[Sequence[Any]], tail: str = "") -> None:
    """``head VALUES (…), (…) tail`` for ``rows``, CHUNK rows a statement. ``executemany``
    runs the statement once a row, and lets go of the interpreter's lock each time: while
    paho's thread reads, each of those costs the writer a wait to get it back."""
    for chunk in chunks(rows):
        listed, params = values(chunk)
        db.conn.execute(f"{head} {listed}{tail}", params)
