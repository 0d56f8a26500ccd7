"""SQL for operators (people who log in), their sessions and their API tokens."""

from __future__ import annotations

import json
from typing import Any

from sqlite_utils import Database

from server.domain.operators import Operator
from server.store.errors import Conflict, NotFound


def insert(
    db: Database,
    *,
    login: str,
    name: str,
    role: str,
    centres: list[str] | None,
    password_hash: str,
    now: float,
) -> int:
    if db["operators"].count_where("login = ?", [login]):
        raise Conflict(f"operator {login!r} already exists")
    return (
        db["operators"]
        .insert(
            {
                "login": login,
                "name": name,
                "role": role,
                "centres": json.dumps(sorted(centres)) if centres is not None else None,
                "disabled": 0,
                "password_hash": password_hash,
                "created_at": now,
                "updated_at": now,
            }
        )
        .last_pk
    )


def update(db: Database, operator_id: int, fields: dict[str, Any], now: float) -> None:
    row = dict(fields)
    if "disabled" in row:
        row["disabled"] = int(bool(row["disabled"]))
    db["operators"].update(operator_id, {**row, "updated_at": now})


def by_login(db: Database, login: str) -> dict:
    """The operator's row, password hash included (for login only)."""
    rows = list(db["operators"].rows_where("login = ?", [login]))
    if not rows:
        raise NotFound(f"no operator {login!r}")
    return rows[0]


def by_id(db: Database, operator_id: int) -> dict:
    rows = list(db["operators"].rows_where("id = ?", [operator_id]))
    if not rows:
        raise NotFound(f"no operator {operator_id}")
    return rows[0]


def list_all(db: Database) -> list[dict]:
    return list(db["operators"].rows_where(order_by="login"))


def to_operator(row: dict) -> Operator:
    return Operator(
        id=row["id"],
        login=row["login"],
        name=row["name"],
        role=row["role"],
        centres=tuple(json.loads(row["centres"])) if row["centres"] else None,
        disabled=bool(row["disabled"]),
    )


# -- sessions ------------------------------------------------------------------------------


def insert_session(
    db: Database, token_hash: str, operator_id: int, csrf_hash: str, address: str | None, now: float
) -> None:
    db["sessions"].insert(
        {
            "token_hash": token_hash,
            "operator_id": operator_id,
            "csrf_hash": csrf_hash,
            "created_at": now,
            "last_seen": now,
            "address": address,
        }
    )


def session(db: Database, token_hash: str) -> dict | None:
    rows = list(db["sessions"].rows_where("token_hash = ?", [token_hash]))
    return rows[0] if rows else None


def touch_session(db: Database, token_hash: str, now: float) -> None:
    db.execute("UPDATE sessions SET last_seen = ? WHERE token_hash = ?", [now, token_hash])


def delete_session(db: Database, token_hash: str) -> None:
    db.execute("DELETE FROM sessions WHERE token_hash = ?", [token_hash])


def delete_sessions(db: Database, operator_id: int, keep: str | None = None) -> None:
    """End an operator's sessions, all but ``keep`` (a token hash) if given."""
    db.execute(
        "DELETE FROM sessions WHERE operator_id = ? AND token_hash IS NOT ?", [operator_id, keep]
    )


def delete_expired_sessions(db: Database, idle_before: float, created_before: float) -> None:
    db.execute(
        "DELETE FROM sessions WHERE last_seen < ? OR created_at < ?", [idle_before, created_before]
    )


# -- API tokens ----------------------------------------------------------------------------


def insert_token(
    db: Database, operator_id: int, name: str, token_hash: str, expires_at: float, now: float
) -> int:
    return (
        db["api_tokens"]
        .insert(
            {
                "operator_id": operator_id,
                "name": name,
                "token_hash": token_hash,
                "created_at": now,
                "expires_at": expires_at,
                "revoked_at": None,
            }
        )
        .last_pk
    )


def token_by_hash(db: Database, token_hash: str) -> dict | None:
    rows = list(db["api_tokens"].rows_where("token_hash = ?", [token_hash]))
    return rows[0] if rows else None


def token(db: Database, token_id: int) -> dict:
    rows = list(db["api_tokens"].rows_where("id = ?", [token_id]))
    if not rows:
        raise NotFound(f"no token {token_id}")
    return _public_token(rows[0])


def tokens_of(db: Database, operator_id: int) -> list[dict]:
    rows = db["api_tokens"].rows_where("operator_id = ?", [operator_id], order_by="id")
    return [_public_token(r) for r in rows]


def revoke_token(db: Database, token_id: int, now: float) -> None:
    db.execute(
        "UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", [now, token_id]
    )


def _public_token(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "token_hash"}
