"""SQL for centres: the telecentres units are assigned to."""

from __future__ import annotations

from sqlite_utils import Database

from server.store.errors import Conflict, NotFound


def create(db: Database, centre_id: str, name: str, commune: str | None, now: float) -> None:
    """Insert a new centre; an existing id is a conflict, never overwritten."""
    if db["centres"].count_where("id = ?", [centre_id]):
        raise Conflict(f"centre {centre_id!r} already exists")
    db["centres"].insert({"id": centre_id, "name": name, "commune": commune, "created_at": now})


def get(db: Database, centre_id: str) -> dict:
    rows = list(db["centres"].rows_where("id = ?", [centre_id]))
    if not rows:
        raise NotFound(f"no centre {centre_id!r}")
    return rows[0]


def list_all(db: Database) -> list[dict]:
    return list(db["centres"].rows_where(order_by="name"))
