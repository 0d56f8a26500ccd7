"""SQLite statements rewritten for PostgreSQL, and the SQLite functions they call.

The resource modules write SQLite's SQL; PostgreSQL accepts nearly all of it. What differs
is rewritten here once per statement text (cached): ``?`` becomes ``%s`` (and a literal
``%`` is doubled), ``[name]`` becomes ``"name"``, ``rowid`` becomes ``ctid``, ``INSERT OR
IGNORE`` becomes ``INSERT … ON CONFLICT DO NOTHING``, ``WHERE 1`` becomes ``WHERE TRUE``,
``IS ?`` becomes ``IS NOT DISTINCT FROM ?``; SQLite's index hints (``INDEXED BY``) and
``PRAGMA`` statements (its own settings) are dropped. String literals are left untouched.
"""

from __future__ import annotations

import re
from functools import lru_cache

# SQLite functions the resource SQL uses, as PostgreSQL functions of the same name and
# meaning. IMMUTABLE so that an index may use them (alarms_one_open uses ifnull).
FUNCTIONS = """
CREATE OR REPLACE FUNCTION ifnull(a anycompatible, b anycompatible) RETURNS anycompatible
    LANGUAGE sql IMMUTABLE AS 'SELECT coalesce(a, b)';
CREATE OR REPLACE FUNCTION iif(c boolean, a anycompatible, b anycompatible)
    RETURNS anycompatible LANGUAGE sql IMMUTABLE AS 'SELECT CASE WHEN c THEN a ELSE b END';
CREATE OR REPLACE FUNCTION instr(s text, part text) RETURNS integer
    LANGUAGE sql IMMUTABLE AS 'SELECT strpos(s, part)';
CREATE OR REPLACE FUNCTION max(a anycompatible, b anycompatible) RETURNS anycompatible
    LANGUAGE sql IMMUTABLE AS 'SELECT CASE WHEN a IS NULL OR b IS NULL THEN NULL
                                          ELSE greatest(a, b) END';
CREATE OR REPLACE FUNCTION min(a anycompatible, b anycompatible) RETURNS anycompatible
    LANGUAGE sql IMMUTABLE AS 'SELECT CASE WHEN a IS NULL OR b IS NULL THEN NULL
                                          ELSE least(a, b) END';
CREATE OR REPLACE FUNCTION json_each(doc text) RETURNS TABLE (key text, value text)
    LANGUAGE sql IMMUTABLE AS
    'SELECT e.key::text, e.value FROM json_array_elements_text(doc::json)
         WITH ORDINALITY AS e(value, key)';
CREATE OR REPLACE VIEW sqlite_master AS
    SELECT 'table'::text AS type, table_name::text AS name, table_name::text AS tbl_name
    FROM information_schema.tables
    WHERE table_schema = current_schema() AND table_type = 'BASE TABLE';
"""

# A string literal, or one of the pieces that differ (outside literals).
_TOKENS = re.compile(r"'(?:[^']|'')*'|\?|%|\[(\w+)\]|\browid\b", re.IGNORECASE)
_INSERT_OR_IGNORE = re.compile(r"^\s*INSERT\s+OR\s+IGNORE\s+INTO\b", re.IGNORECASE)
_WHERE_1 = re.compile(r"\b(WHERE|AND|OR)\s+1\b(?!\s*[=<>!+*/-])", re.IGNORECASE)
_IS_NOT_VALUE = re.compile(r"\bIS\s+NOT\s+%s", re.IGNORECASE)
_IS_VALUE = re.compile(r"\bIS\s+%s", re.IGNORECASE)
_INDEXED_BY = re.compile(r"\s+(INDEXED\s+BY\s+\w+|NOT\s+INDEXED)\b", re.IGNORECASE)
_RETURNING = re.compile(r"\bRETURNING\b", re.IGNORECASE)


def _token(match: re.Match[str]) -> str:
    text = match.group(0)
    if text.startswith("'"):
        return text.replace("%", "%%")  # psycopg reads every % of the statement
    if text == "?":
        return "%s"
    if text == "%":
        return "%%"
    if match.group(1) is not None:
        return f'"{match.group(1)}"'
    return "ctid"


@lru_cache(maxsize=1024)
def translate(sql: str) -> str | None:
    """The statement for PostgreSQL; None for one with no meaning there (a PRAGMA)."""
    if sql.lstrip()[:6].upper() == "PRAGMA":
        return None
    out = _WHERE_1.sub(r"\1 TRUE", _TOKENS.sub(_token, sql))
    out = _INDEXED_BY.sub("", out)
    out = _IS_VALUE.sub("IS NOT DISTINCT FROM %s", _IS_NOT_VALUE.sub("IS DISTINCT FROM %s", out))
    if _INSERT_OR_IGNORE.match(out):
        out = _INSERT_OR_IGNORE.sub("INSERT INTO", out, count=1)
        returning = _RETURNING.search(out)
        if returning:
            cut = returning.start()
            out = f"{out[:cut]} ON CONFLICT DO NOTHING {out[cut:]}"
        else:
            out = out.rstrip().rstrip(";") + " ON CONFLICT DO NOTHING"
    return out


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'
