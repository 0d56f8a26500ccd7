"""SQL for badges (cards enrolled to members) and unknown cards (tapped, not enrolled)."""

from __future__ import annotations

from sqlite_utils import Database

from server.store.errors import Conflict, NotFound


def enrol(db: Database, member_id: int, badge_hash: str, label: str | None, now: float) -> int:
    """Enrol a card to a member; return the new badge's id.

    A card already live is a conflict; a revoked one may be handed out again. The card
    leaves the unknown list, since it is now known.
    """
    clash = list(db["badges"].rows_where("badge_hash = ?", [badge_hash]))
    if clash and clash[0]["revoked_at"] is None:
        raise Conflict(f"this card is already enrolled (badge {clash[0]['id']})")
    if clash:  # a revoked card handed out again
        db["badges"].delete(clash[0]["id"])
    db.execute("DELETE FROM unknown_cards WHERE badge_hash = ?", [badge_hash])
    return (
        db["badges"]
        .insert(
            {
                "member_id": member_id,
                "badge_hash": badge_hash,
                "label": label,
                "enrolled_at": now,
                "revoked_at": None,
            }
        )
        .last_pk
    )


def revoke(db: Database, badge_id: int, now: float) -> None:
    """Revoke a badge; revoking twice keeps the first time."""
    db.execute(
        "UPDATE badges SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", [now, badge_id]
    )


def get(db: Database, badge_id: int) -> dict:
    rows = list(db["badges"].rows_where("id = ?", [badge_id]))
    if not rows:
        raise NotFound(f"no badge {badge_id}")
    return rows[0]


def for_member(db: Database, member_id: int) -> list[dict]:
    return list(db["badges"].rows_where("member_id = ?", [member_id], order_by="id"))


def unknown_cards(db: Database, centre_id: str | None = None) -> list[dict]:
    """Cards tapped but not enrolled, most recently seen first."""
    where, args = ("centre_id = ?", [centre_id]) if centre_id else (None, [])
    return list(db["unknown_cards"].rows_where(where, args, order_by="last_seen desc"))


def record_unknown_tap(
    db: Database,
    badge_hash: str | None,
    ts: float,
    device_id: str,
    door: str | None,
    centre_id: str | None,
) -> None:
    """Count a refused tap of an unknown card, whatever order the taps arrive in."""
    db.execute(
        "INSERT INTO unknown_cards AS u (badge_hash, first_seen, last_seen, count, device_id,"
        " door, centre_id) VALUES (?, ?, ?, 1, ?, ?, ?)"
        " ON CONFLICT (badge_hash) DO UPDATE SET count = u.count + 1,"
        " first_seen = min(u.first_seen, excluded.first_seen),"
        # Where it was last seen follows the newest tap, not the last one to arrive.
        " device_id = iif(excluded.last_seen >= u.last_seen, excluded.device_id, u.device_id),"
        " door = iif(excluded.last_seen >= u.last_seen, excluded.door, u.door),"
        " centre_id = iif(excluded.last_seen >= u.last_seen, excluded.centre_id, u.centre_id),"
        " last_seen = max(u.last_seen, excluded.last_seen)",
        [badge_hash, ts, ts, device_id, door, centre_id],
    )
