"""The PostgreSQL engine of the store: the same ``Store`` facade and the same resource SQL
modules (``server.store.sqlite.<resource>``) as SQLite, run through a small dialect layer.

Why not a second set of resource modules: about 4,500 lines of SQL would then exist twice
and drift apart with every feature. Instead:

- ``dialect``: each statement is rewritten once (cached) for PostgreSQL: ``?`` placeholders,
  ``INSERT OR IGNORE``, ``[name]`` quoting, ``rowid``; the few SQLite functions the SQL uses
  (``ifnull``, ``iif``, ``instr``, two-argument ``min``/``max``, ``json_each`` over a text
  column) exist in the database as small SQL functions, so the SQL itself stays one text.
- ``database``: a connection shaped like the part of sqlite-utils' ``Database`` the resource
  modules use (``execute``, ``query``, ``db[table].insert/upsert/update/rows_where/…``,
  ``atomic``), on psycopg 3.
- ``schema``: the tables, indexes and triggers are derived from the SQLite migrations (applied
  to an in-memory SQLite database and translated), so a new migration is written once.
- ``leader``: which of several server workers publishes the access lists, chosen through a
  PostgreSQL advisory lock; changes made on another worker reach it by LISTEN/NOTIFY.
- ``cluster``: a private PostgreSQL on loopback for tests and benchmarks.

Every write transaction takes one advisory transaction lock, so writes from several server
processes are serialised as SQLite's single writer serialises them: the resource modules'
read-then-write steps stay correct without being rewritten for concurrency. The one
exception is ingest, the load that grows with the units: it takes that lock shared, then a
lock for each unit, member, unknown card and room its events name
(``server.store.sqlite.events.lock_keys``), so workers write the events of different units
at the same time and still wait for each other on a shared member.
"""

URL_SCHEMES = ("postgresql://", "postgres://")


def is_url(location: object) -> bool:
    """Whether a store location names a PostgreSQL database rather than a SQLite file."""
    return isinstance(location, str) and location.startswith(URL_SCHEMES)
