"""SQL for the broker credentials of the units and of the server workers beyond the first:
only the mosquitto-format hash of each password."""

from __future__ import annotations

from sqlite_utils import Database


def set_hash(db: Database, device_id: str, password_hash: str, now: float) -> None:
    db["device_credentials"].upsert(
        {"device_id": device_id, "password_hash": password_hash, "created_at": now},
        pk="device_id",
    )


def remove(db: Database, device_id: str) -> bool:
    """Forget the unit's password; False when it had none."""
    cursor = db.execute("DELETE FROM device_credentials WHERE device_id = ?", [device_id])
    return cursor.rowcount > 0


def list_all(db: Database) -> list[dict]:
    """Every unit with a broker account: device id, centre, hash, when it was made."""
    return [
        dict(row)
        for row in db.query(
            "SELECT c.device_id, d.centre_id, c.password_hash, c.created_at"
            " FROM device_credentials c JOIN devices d ON d.device_id = c.device_id"
            " ORDER BY c.device_id"
        )
    ]


def set_server_hash(db: Database, username: str, password_hash: str, now: float) -> None:
    db["server_accounts"].upsert(
        {"username": username, "password_hash": password_hash, "created_at": now},
        pk="username",
    )


def remove_server(db: Database, username: str) -> bool:
    """Forget a server worker's account; False when there was none."""
    cursor = db.execute("DELETE FROM server_accounts WHERE username = ?", [username])
    return cursor.rowcount > 0


def list_servers(db: Database) -> list[dict]:
    """Every server worker account beyond the first: user name, hash, when it was made."""
    return [
        dict(row)
        for row in db.query(
            "SELECT username, password_hash, created_at FROM server_accounts ORDER BY username"
        )
    ]
