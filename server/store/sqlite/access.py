"""SQL for access: one card's record for an online answer, the badge rows a centre's list
is compiled from, the published state of each centre's list, and bulk member imports."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec
from sqlite_utils import Database

from protocol.messages import CentreHours, ListEntry
from server.domain.access import GRANTED, BadgeRecord, decide
from server.domain.lists import compile_entries
from server.store.errors import NotFound
from server.store.records import CentreListState
from server.store.sqlite import members, plans

IMPORT_BATCH = 10_000


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


# One row whatever is missing: the unit's centre (NULL when it is not in the registry), the
# card with its member (NULLs when the card was never enrolled) and whether the member holds
# plans (their plans are read only then).
_ASKED = (
    "SELECT d.centre_id, b.badge_hash, m.id, b.revoked_at, m.active, m.valid_from,"
    " m.valid_until, m.centres, m.lockdown_exempt,"
    " EXISTS (SELECT 1 FROM member_plans mp WHERE mp.member_id = m.id)"
    " FROM (SELECT 1) AS one LEFT JOIN devices d ON d.device_id = ?"
    " LEFT JOIN badges b ON b.badge_hash = ? LEFT JOIN members m ON m.id = b.member_id"
)


def asked_card(
    db: Database, device_id: str, badge_hash: str, now: float
) -> tuple[str | None, BadgeRecord | None, ListEntry | None]:
    """What an online answer reads, in one query and, for a card the rules admit, the
    member's plans: (the unit's centre, the card's record, the entry the centre's list
    would hold for it; None when the rules refuse the card or the list would leave it out).
    """
    centre_id, *row, holds_plans = db.execute(_ASKED, [device_id, badge_hash]).fetchone()
    if row[1] is None:  # no such card (or a badge row without its member)
        return centre_id, None, None
    _, member_id, revoked_at, active, valid_from, valid_until, centres, _ = row
    record = BadgeRecord(
        member_id=member_id,
        revoked=revoked_at is not None,
        active=bool(active),
        valid_from=valid_from,
        valid_until=valid_until,
        centres=members.centres_of(centres),
    )
    if centre_id is None or decide(record, centre_id, now) != GRANTED:
        return centre_id, record, None
    member_plans = plans.for_lists(db, now, [member_id]) if holds_plans else None
    entries = compile_entries(
        centre_id, [tuple(row)], now, centres_of=members.centres_of, plans=member_plans
    )
    return centre_id, record, entries.get(bytes.fromhex(badge_hash))


# -- compiling a centre's list ----------------------------------------------------------------

# The centre filter is a substring test on the stored JSON array: centre ids are
# [a-z0-9-] only, so '"<id>"' matches exactly one element (json_each costs twice as much).
# No ORDER BY: sorting by badge in SQL walks the badge index and triples the time; the
# snapshot is sorted once in Python when it is cut.
_CENTRE_ROWS = (
    "SELECT b.badge_hash, m.id, b.revoked_at, m.active, m.valid_from, m.valid_until, m.centres,"
    " m.lockdown_exempt FROM members m JOIN badges b ON b.member_id = m.id"
    " WHERE (m.valid_until IS NULL OR m.valid_until > ?)"
    " AND (m.centres IS NULL OR instr(m.centres, '\"' || ? || '\"') > 0)"
)


def badge_rows_for_centre(db: Database, centre_id: str, now: float) -> list[tuple]:
    """Every badge of a member allowed at ``centre_id`` and not expired, in one query.

    Rows are ``server.domain.lists.BadgeRow`` tuples with ``centres`` still the stored JSON
    text (``members.centres_of`` decodes it; the domain does so once per distinct value).
    """
    return db.execute(_CENTRE_ROWS, [now, centre_id]).fetchall()


_MEMBER_ROWS = (
    "SELECT b.badge_hash, m.id, b.revoked_at, m.active, m.valid_from, m.valid_until, m.centres,"
    " m.lockdown_exempt FROM members m JOIN badges b ON b.member_id = m.id WHERE m.id IN ({})"
)


def member_entries(
    db: Database, centre_id: str, member_ids: Iterable[int], now: float
) -> tuple[dict[bytes, ListEntry], set[bytes]]:
    """(the entries of these members in ``centre_id``'s list, every badge they hold).

    A revocation touches one member: compiling their few badges instead of the whole
    centre keeps it within milliseconds at 250,000 badges.
    """
    ids = sorted(set(member_ids))
    rows: list[tuple] = []
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        rows += db.execute(_MEMBER_ROWS.format(",".join("?" * len(chunk))), chunk).fetchall()
    held = {bytes.fromhex(r[0]) for r in rows}
    member_plans = plans.for_lists(db, now, ids)
    entries = compile_entries(
        centre_id, rows, now, centres_of=members.centres_of, plans=member_plans
    )
    return entries, held


def list_entries(db: Database, centre_id: str, now: float) -> dict[bytes, ListEntry]:
    """The entries of ``centre_id``'s list now (``server.domain.lists.compile_entries``)."""
    rows = badge_rows_for_centre(db, centre_id, now)
    member_plans = plans.for_lists(db, now)
    return compile_entries(centre_id, rows, now, centres_of=members.centres_of, plans=member_plans)


# -- the published state of each centre's list ------------------------------------------------


class _Delta(msgspec.Struct, array_like=True):
    upsert: list[ListEntry]
    remove: list[bytes]


_encoder = msgspec.msgpack.Encoder()
_entries_decoder = msgspec.msgpack.Decoder(list[ListEntry])
_delta_decoder = msgspec.msgpack.Decoder(_Delta)
_calendar_decoder = msgspec.msgpack.Decoder(CentreHours)


def list_state(db: Database, centre_id: str) -> CentreListState | None:
    """What was last published (or is being published) for ``centre_id``; None if nothing."""
    row = db.execute(
        "SELECT snapshot_version, snapshot_issued_at, snapshot, version, issued_at, delta,"
        " calendar FROM list_state WHERE centre_id = ?",
        [centre_id],
    ).fetchone()
    if row is None:
        return None
    snapshot_version, snapshot_issued_at, snapshot, version, issued_at, delta, cal = row
    changes = _delta_decoder.decode(delta) if delta else _Delta([], [])
    return CentreListState(
        centre_id=centre_id,
        snapshot_version=snapshot_version,
        snapshot_issued_at=snapshot_issued_at,
        snapshot=_entries_decoder.decode(snapshot),
        version=version,
        issued_at=issued_at,
        upsert=changes.upsert,
        remove=changes.remove,
        calendar=_calendar_decoder.decode(cal) if cal else None,
    )


def list_state_centres(db: Database) -> list[str]:
    """The centres that have a list state."""
    return [r[0] for r in db.execute("SELECT centre_id FROM list_state ORDER BY centre_id")]


def save_list_state(db: Database, state: CentreListState, *, snapshot: bool, now: float) -> None:
    """Store ``state``: the whole row for a new snapshot, only the delta's columns else."""
    delta = _encoder.encode(_Delta(state.upsert, state.remove))
    if not snapshot:
        cursor = db.execute(
            "UPDATE list_state SET version = ?, issued_at = ?, delta = ?, updated_at = ?"
            " WHERE centre_id = ? AND snapshot_version = ?",
            [state.version, state.issued_at, delta, now, state.centre_id, state.snapshot_version],
        )
        if cursor.rowcount != 1:
            raise NotFound(
                f"no list snapshot v{state.snapshot_version} of centre {state.centre_id!r}"
            )
        return
    db["list_state"].insert(
        {
            "centre_id": state.centre_id,
            "snapshot_version": state.snapshot_version,
            "snapshot_issued_at": state.snapshot_issued_at,
            "segments": state.segments,
            "entries": len(state.snapshot),
            "snapshot": _encoder.encode(state.snapshot),
            "version": state.version,
            "issued_at": state.issued_at,
            "delta": delta,
            "updated_at": now,
            "calendar": _encoder.encode(state.calendar) if state.calendar else None,
        },
        pk="centre_id",
        replace=True,
    )


# -- bulk import ------------------------------------------------------------------------------


def import_members(
    db: Database, rows: Iterable[dict[str, Any]], now: float, batch_size: int = IMPORT_BATCH
) -> int:
    """Insert many members, each with an optional ``badge_hash`` (and ``label``); return how
    many members. One transaction of batched inserts. A card already enrolled fails the
    whole import (the badges' unique index)."""
    first = members.next_id(db)
    member_rows: list[dict[str, Any]] = []
    badge_rows: list[dict[str, Any]] = []
    centres_json: dict[tuple[str, ...], str] = {}
    for member_id, fields in enumerate(rows, start=first):
        centres = fields.get("centres")
        if centres is not None:
            key = tuple(centres)
            raw = centres_json.get(key)
            if raw is None:
                raw = centres_json[key] = members.to_row({"centres": centres})["centres"]
            centres = raw
        member_rows.append(
            {
                "id": member_id,
                "name": fields["name"],
                "email": fields.get("email"),
                "active": int(bool(fields.get("active", True))),
                "valid_from": fields.get("valid_from"),
                "valid_until": fields.get("valid_until"),
                "centres": centres,
                "created_at": now,
            }
        )
        if fields.get("badge_hash"):
            badge_rows.append(
                {
                    "member_id": member_id,
                    "badge_hash": fields["badge_hash"],
                    "label": fields.get("label"),
                    "enrolled_at": now,
                }
            )
    # executemany, not insert_all: sqlite-utils caps a statement at 999 variables (~140
    # rows), which made 250,000 members and badges take 14 s instead of a few.
    for table, rows_ in (("members", member_rows), ("badges", badge_rows)):
        if not rows_:
            continue
        columns = list(rows_[0])
        sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
        for i in range(0, len(rows_), batch_size):
            db.conn.executemany(
                sql, [tuple(r[c] for c in columns) for r in rows_[i : i + batch_size]]
            )
    if badge_rows:
        db.execute(
            # Per unknown card (a few), not per imported badge (many): the unique index.
            "DELETE FROM unknown_cards WHERE EXISTS (SELECT 1 FROM badges b"
            " WHERE b.badge_hash = unknown_cards.badge_hash AND b.member_id >= ?)",
            [first],
        )
    return len(member_rows)


def member_id_by_badge_hash(db: Database, badge_hash: str) -> int:
    row = db.execute("SELECT member_id FROM badges WHERE badge_hash = ?", [badge_hash]).fetchone()
    if row is None:
        raise NotFound("no badge with this hash")
    return row[0]
