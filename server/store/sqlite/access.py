"""SQL for access: the grants a centre's units may hold, one card's record for an online
answer, and the version of the list each unit was sent."""

from __future__ import annotations

from sqlite_utils import Database

from protocol.messages import BadgeGrant
from server.domain.access import GRANTED, BadgeRecord, admits_centre, decide
from server.store.sqlite import members


def grants_for_centre(db: Database, centre_id: str | None, now: float) -> list[BadgeGrant]:
    """Every badge that may open a door of ``centre_id`` now or later."""
    if centre_id is None:
        return []
    rows = db.query(
        "SELECT b.badge_hash, m.id AS member_id, m.valid_from, m.valid_until, m.centres"
        " FROM badges b JOIN members m ON m.id = b.member_id"
        " WHERE b.revoked_at IS NULL AND m.active = 1"
        " AND (m.valid_until IS NULL OR m.valid_until > ?) ORDER BY b.badge_hash",
        [now],
    )
    return [
        BadgeGrant(r["badge_hash"], r["member_id"], r["valid_from"], r["valid_until"])
        for r in rows
        if admits_centre(members.centres_of(r["centres"]), centre_id)
    ]


def badge_record(db: Database, badge_hash: str) -> BadgeRecord | None:
    """What the access rules need to know about one card, or None if it was never enrolled."""
    rows = list(
        db.query(
            "SELECT b.revoked_at, m.id, m.active, m.valid_from, m.valid_until, m.centres"
            " FROM badges b JOIN members m ON m.id = b.member_id WHERE b.badge_hash = ?",
            [badge_hash],
        )
    )
    if not rows:
        return None
    r = rows[0]
    return BadgeRecord(
        member_id=r["id"],
        revoked=r["revoked_at"] is not None,
        active=bool(r["active"]),
        valid_from=r["valid_from"],
        valid_until=r["valid_until"],
        centres=members.centres_of(r["centres"]),
    )


def lookup_grant(
    db: Database, badge_hash: str, centre_id: str | None, now: float
) -> tuple[BadgeGrant | None, str]:
    """The online answer for a card the unit's list did not know: (grant, reason)."""
    badge = badge_record(db, badge_hash)
    reason = decide(badge, centre_id, now)
    if badge is None or reason != GRANTED:
        return None, reason
    return BadgeGrant(badge_hash, badge.member_id, badge.valid_from, badge.valid_until), reason


def next_list_version(db: Database, device_id: str, grants: int, now: float) -> int:
    """A version above every one the unit saw, even after the database was rebuilt."""
    rows = list(db["access_lists"].rows_where("device_id = ?", [device_id]))
    version = max(rows[0]["version"] + 1 if rows else 1, int(now * 1000))
    db["access_lists"].upsert(
        {"device_id": device_id, "version": version, "issued_at": now, "grants": grants},
        pk="device_id",
    )
    return version
