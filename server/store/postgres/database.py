"""A PostgreSQL connection shaped like the part of sqlite-utils' ``Database`` that the
resource modules use, so that one text of SQL serves both engines.

Statements go through ``dialect.translate``; values are bound on the client side
(``psycopg.ClientCursor``), which types them as literals the way SQLite's loose typing
expects (a text literal compares with any column; no "could not determine the type of
parameter $1"). Rows read through ``query`` and ``db[table]`` are dicts, through
``execute`` tuples, as with sqlite-utils.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.adapt import Loader
from psycopg.rows import dict_row
from sqlite_utils.db import NotFoundError

from server.store.postgres.dialect import quote, translate

# Every write transaction takes this advisory transaction lock first: the writes of every
# server process on the database are serialised, as SQLite's one writer serialises them;
# a write that declares its keys (``Database.lock_next``) takes it shared, then its keys.
WRITE_LOCK_KEY = 0x7E1EC0DE
COPY_FROM_ROWS = 50  # from how many rows a plain INSERT goes through COPY
_PLAIN_INSERT = re.compile(r"INSERT INTO (\w+) \(([\w, ]+)\) VALUES \((?:%s, )*%s\)", re.IGNORECASE)


class _Number(Loader):
    """``numeric`` (what sum() and avg() of integers give) read as int or float, as SQLite
    gives them, never as Decimal."""

    def load(self, data: Any) -> int | float:
        text = bytes(data).decode()
        try:
            return int(text)
        except ValueError:
            return float(text)


def _value(v: Any) -> Any:
    if isinstance(v, bool):
        return int(v)
    return v


def _params(params: Sequence[Any] | None) -> list[Any]:
    return [_value(v) for v in (params or ())]


def _stored(v: Any) -> Any:
    """A value as sqlite-utils stores it: dicts, lists and tuples as JSON text."""
    if isinstance(v, dict | list | tuple):
        return json.dumps(v, default=repr)
    return _value(v)


class _NoRows:
    """What a statement that has no meaning on PostgreSQL (a PRAGMA) returns."""

    rowcount = 0

    def fetchone(self) -> None:
        return None

    def fetchall(self) -> list[Any]:
        return []

    def __iter__(self) -> Iterator[Any]:
        return iter(())


class Connection:
    """``db.conn``: ``execute``/``executemany``/``close`` as on a ``sqlite3.Connection``."""

    def __init__(self, raw: psycopg.Connection) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        statement = translate(sql)
        if statement is None:
            return _NoRows()
        return self.raw.execute(statement, _params(params))

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any:
        """A plain ``INSERT … VALUES`` of many rows goes through COPY (bulk imports: 10x
        faster than statements); anything else, and a few rows (COPY costs more round trips
        than it saves there), is bound on the server in one pipeline."""
        statement = translate(sql)
        cur = psycopg.Cursor(self.raw)
        if statement is None:
            return cur
        rows = list(rows)
        if not rows:
            return cur
        plain = _PLAIN_INSERT.fullmatch(statement.strip())
        if plain is None or len(rows) < COPY_FROM_ROWS:
            cur.executemany(statement, [_params(r) for r in rows])
            return cur
        with cur.copy(f"COPY {plain.group(1)} ({plain.group(2)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(_params(row))
        return cur

    def close(self) -> None:
        self.raw.close()


def lock_id(key: str) -> int:
    """A lock key as a PostgreSQL advisory lock id (64 bits; two keys sharing one only
    wait for each other)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big", signed=True)


def connect(url: str) -> Database:
    """A connection in autocommit mode: reads see the newest commit, writes use ``atomic``.

    ``synchronous_commit=on`` whatever the server's default: an ack lets a unit delete its
    copy of an event, so a commit must be on disk before it returns (as SQLite's FULL)."""
    raw = psycopg.connect(
        url,
        autocommit=True,
        cursor_factory=psycopg.ClientCursor,
        options="-c synchronous_commit=on",
    )
    raw.adapters.register_loader("numeric", _Number)
    return Database(raw)


class Database:
    """One PostgreSQL connection, used the way the resource modules use sqlite-utils."""

    def __init__(self, raw: psycopg.Connection) -> None:
        self.conn = Connection(raw)
        self._depth = 0
        self._next_keys: frozenset[str] | None = None
        self._keys: dict[str, tuple[list[str], str | None]] = {}

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        return self.conn.execute(sql, params)

    def query(self, sql: str, params: Sequence[Any] | None = None) -> Iterator[dict]:
        statement = translate(sql)
        if statement is None:
            return
        with self.conn.raw.cursor(row_factory=dict_row) as cur:
            cur.execute(statement, _params(params))
            if cur.description is not None:
                yield from cur

    def close(self) -> None:
        self.conn.close()

    def lock_next(self, keys: frozenset[str] | None) -> None:
        """What the next transaction locks: None, every write (the write lock, exclusive);
        keys (``"member:12"``, ``"device:boitron-01"``…), only writes that name one of them
        or declare none: the write lock shared, then one advisory lock per key, in one order
        (no two transactions wait on each other). Writes of ingest declare their keys, so
        the events of units in different centres are written side by side."""
        self._next_keys = keys

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """A transaction (a savepoint when nested); the outermost takes the write lock."""
        with self.conn.raw.transaction():
            self._depth += 1
            try:
                if self._depth == 1:
                    keys, self._next_keys = self._next_keys, None
                    self._lock(keys)
                yield
            finally:
                self._depth -= 1

    def _lock(self, keys: frozenset[str] | None) -> None:
        raw = self.conn.raw
        if keys is None:
            raw.execute("SELECT pg_advisory_xact_lock(%s)", [WRITE_LOCK_KEY])
            return
        raw.execute("SELECT pg_advisory_xact_lock_shared(%s)", [WRITE_LOCK_KEY])
        if keys:
            # Taken one row at a time from the sorted list: always in the same order.
            raw.execute(
                "SELECT count(pg_advisory_xact_lock(k)) FROM"
                " (SELECT k FROM unnest(%s::bigint[]) AS k ORDER BY k) AS ordered",
                [sorted({lock_id(key) for key in keys})],
            )

    def __getitem__(self, name: str) -> Table:
        return Table(self, name)

    def table_names(self) -> list[str]:
        return [r["name"] for r in self.query("SELECT name FROM sqlite_master")]

    def keys(self, table: str) -> tuple[list[str], str | None]:
        """(the table's primary key columns, its identity column if any), from the catalog."""
        found = self._keys.get(table)
        if found is None:
            pks = [
                r[0]
                for r in self.conn.raw.execute(
                    "SELECT a.attname FROM pg_index i JOIN pg_attribute a"
                    " ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
                    " WHERE i.indrelid = %s::regclass AND i.indisprimary"
                    " ORDER BY array_position(i.indkey, a.attnum)",
                    [quote(table)],
                )
            ]
            identity = self.conn.raw.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass"
                " AND attidentity <> ''",
                [quote(table)],
            ).fetchone()
            found = self._keys[table] = (pks, identity[0] if identity else None)
        return found


class Table:
    """``db[name]``: the sqlite-utils table calls the resource modules make."""

    def __init__(self, db: Database, name: str) -> None:
        self.db = db
        self.name = name
        self.last_pk: Any = None

    @property
    def pks(self) -> list[str]:
        return self.db.keys(self.name)[0]

    def _where_pk(self, pk_values: Any) -> tuple[str, list[Any]]:
        values = list(pk_values) if isinstance(pk_values, list | tuple) else [pk_values]
        return " AND ".join(f"{quote(c)} = ?" for c in self.pks), values

    def insert(
        self,
        record: dict[str, Any],
        *,
        pk: Any = None,
        replace: bool = False,
        ignore: bool = False,
        **_: Any,
    ) -> Table:
        self._insert(record, pk, "replace" if replace else "ignore" if ignore else None)
        return self

    def upsert(self, record: dict[str, Any], *, pk: Any = None, **_: Any) -> Table:
        self._insert(record, pk, "upsert")
        return self

    def insert_all(self, records: Iterable[dict[str, Any]], **kwargs: Any) -> Table:
        for record in records:
            self.insert(record, **kwargs)
        return self

    def _insert(self, record: dict[str, Any], pk: Any, conflict: str | None) -> None:
        pks, identity = self.db.keys(self.name)
        if pk is not None:
            pks = [pk] if isinstance(pk, str) else list(pk)
        cols = list(record)
        sql = (
            f"INSERT INTO {quote(self.name)} ({', '.join(map(quote, cols))})"
            f" VALUES ({', '.join('?' for _ in cols)})"
        )
        others = [c for c in cols if c not in pks]
        if conflict in ("replace", "upsert") and others:
            sets = ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in others)
            sql += f" ON CONFLICT ({', '.join(map(quote, pks))}) DO UPDATE SET {sets}"
        elif conflict is not None:
            sql += " ON CONFLICT DO NOTHING"
        if pks:
            sql += f" RETURNING {', '.join(map(quote, pks))}"
        row = self.db.execute(sql, [_stored(record[c]) for c in cols]).fetchone()
        if row is None:  # ignored: the key asked for
            row = [record.get(c) for c in pks]
        self.last_pk = row[0] if len(pks) == 1 else tuple(row) if pks else None
        if identity is not None and record.get(identity) is not None:
            # An explicit id: the identity's sequence must not hand it out again.
            self.db.conn.raw.execute(
                "SELECT setval(pg_get_serial_sequence(%s, %s), greatest(%s,"
                f" (SELECT coalesce(max({quote(identity)}), 1) FROM {quote(self.name)})))",
                [quote(self.name), identity, record[identity]],
            )

    def update(self, pk_values: Any, updates: dict[str, Any] | None = None, **_: Any) -> Table:
        where, args = self._where_pk(pk_values)
        if not updates:
            self.get(pk_values)
            return self
        sets = ", ".join(f"{quote(c)} = ?" for c in updates)
        cur = self.db.execute(
            f"UPDATE {quote(self.name)} SET {sets} WHERE {where}",
            [*(_stored(v) for v in updates.values()), *args],
        )
        if cur.rowcount == 0:
            raise NotFoundError(pk_values)
        self.last_pk = pk_values
        return self

    def get(self, pk_values: Any) -> dict:
        where, args = self._where_pk(pk_values)
        rows = list(self.rows_where(where, args))
        if not rows:
            raise NotFoundError(pk_values)
        return rows[0]

    def delete(self, pk_values: Any) -> Table:
        where, args = self._where_pk(pk_values)
        self.db.execute(f"DELETE FROM {quote(self.name)} WHERE {where}", args)
        return self

    def delete_where(self, where: str | None = None, where_args: Sequence[Any] = ()) -> Table:
        self.db.execute(
            f"DELETE FROM {quote(self.name)}" + (f" WHERE {where}" if where else ""), where_args
        )
        return self

    def rows_where(
        self,
        where: str | None = None,
        where_args: Sequence[Any] | None = None,
        order_by: str | None = None,
        select: str = "*",
        limit: int | None = None,
        offset: int | None = None,
    ) -> Iterator[dict]:
        sql = f"SELECT {select} FROM {quote(self.name)}"
        if where is not None:
            sql += f" WHERE {where}"
        if order_by is not None:
            sql += f" ORDER BY {order_by}"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        if offset is not None:
            sql += f" OFFSET {int(offset)}"
        return self.db.query(sql, where_args)

    @property
    def rows(self) -> Iterator[dict]:
        return self.rows_where()

    def count_where(self, where: str | None = None, where_args: Sequence[Any] | None = None) -> int:
        sql = f"SELECT count(*) FROM {quote(self.name)}"
        if where is not None:
            sql += f" WHERE {where}"
        return self.db.execute(sql, where_args).fetchone()[0]

    @property
    def count(self) -> int:
        return self.count_where()

    def exists(self) -> bool:
        return self.name in self.db.table_names()
