"""SQL for commands sent to units (remote unlock) and the result each unit gave."""

from __future__ import annotations

from sqlite_utils import Database

from protocol.messages import Command, CommandResult
from server.store.errors import NotFound


def insert(db: Database, command: Command) -> None:
    db["commands"].insert(
        {
            "command_id": command.command_id,
            "device_id": command.device_id,
            "door": command.door,
            "action": command.action,
            "issued_at": command.issued_at,
            "expires_at": command.expires_at,
            "requested_by": command.requested_by,
            "reason": command.reason,
        }
    )


def record_result(db: Database, device_id: str, result: CommandResult, answered_at: float) -> bool:
    """Store a unit's answer; False when no such command was sent to that unit.

    The first answer wins: a unit answers once, and a replayed result changes nothing.
    """
    cur = db.execute(
        "UPDATE commands SET result = ?, result_reason = ?, answered_at = ?"
        " WHERE command_id = ? AND device_id = ? AND result IS NULL",
        [result.result, result.reason, answered_at, result.command_id, device_id],
    )
    if cur.rowcount == 1:
        return True
    found = db.execute(
        "SELECT 1 FROM commands WHERE command_id = ? AND device_id = ?",
        [result.command_id, device_id],
    ).fetchone()
    return found is not None


def get(db: Database, command_id: str) -> dict:
    rows = list(db["commands"].rows_where("command_id = ?", [command_id]))
    if not rows:
        raise NotFound(f"no command {command_id!r}")
    return {k: v for k, v in rows[0].items() if v is not None}
