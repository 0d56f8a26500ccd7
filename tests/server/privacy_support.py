"""Looking for a person's values anywhere in a database: every column of every table."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path


def find_values(path: Path, needles: list[str]) -> list[str]:
    """``table.column`` of every stored value holding one of ``needles``: text as text
    (case-insensitive), blobs as UTF-8 or, for hex strings, as the raw bytes."""
    texts = [n.lower() for n in needles]
    raw = [n.encode() for n in needles]
    raw += [bytes.fromhex(n) for n in needles if _is_hex(n)]
    found = []
    with closing(sqlite3.connect(path)) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        for table in tables:
            columns = [r[1] for r in conn.execute(f"PRAGMA table_info([{table}])")]
            for column in columns:
                for (value,) in conn.execute(f"SELECT [{column}] FROM [{table}]"):
                    if _holds(value, texts, raw):
                        found.append(f"{table}.{column}")
    return sorted(set(found))


def _is_hex(text: str) -> bool:
    try:
        return len(text) % 2 == 0 and bool(bytes.fromhex(text))
    except ValueError:
        return False


def _holds(value: object, texts: list[str], raw: list[bytes]) -> bool:
    if isinstance(value, str):
        return any(t in value.lower() for t in texts)
    if isinstance(value, bytes):
        return any(r in value for r in raw)
    return False
