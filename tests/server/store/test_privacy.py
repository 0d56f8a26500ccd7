"""Privacy on a real store: the retention purge and its daily counts, a member's export
and erasure, and the personal values of the audit log kept apart."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlite_utils import Database

from protocol.messages import Event
from server.domain.audit import AuditEvent
from server.store import NotFound, Store
from server.store.records import CentreListState
from server.store.sqlite.migrations import migrations
from server.store.sqlite.writer import connect
from tests.conftest import database_errors, sqlite_file
from tests.server.privacy_support import find_values

PARIS = ZoneInfo("Europe/Paris")
EPOCH = "e" * 32
HASH_A = "a1" * 32
HASH_B = "b2" * 32
HASH_U = "c3" * 32  # a card never enrolled


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=PARIS).timestamp()


NOW = at("2026-06-15 14:00")
OLD_DAY, OLD_NEXT, RECENT = "2026-03-01", "2026-03-02", "2026-06-10"


@pytest.fixture
def store(store_at: Path | str) -> Iterator[Store]:
    s = Store(store_at)
    s.create_centre("boitron", "Boitron")
    s.assign_device("boitron-01", "boitron")
    yield s
    s.close()


class Unit:
    """Events of boitron-01, numbered in order."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.seq = 0

    def send(self, *events: dict, received_at: float | None = None) -> None:
        batch = []
        for given in events:
            fields = dict(given)
            self.seq += 1
            batch.append(
                Event(
                    event_id=str(uuid.uuid4()),
                    device_id="boitron-01",
                    epoch=EPOCH,
                    seq=self.seq,
                    clock_synced=fields.pop("clock_synced", True),
                    **fields,
                )
            )
        arrival = received_at if received_at is not None else max(e.ts for e in batch) + 1
        self.store.ingest("boitron-01", batch, received_at=arrival).result(timeout=10)


def entry(when: str, member_id: int, badge: str, direction: str = "in") -> dict:
    return {
        "kind": "access",
        "ts": at(when),
        "door": "entree",
        "badge_hash": badge,
        "granted": True,
        "reason": "granted",
        "direction": direction,
        "member_id": member_id,
    }


def refusal(when: str, badge: str, reason: str = "unknown_card") -> dict:
    return {
        "kind": "access",
        "ts": at(when),
        "door": "entree",
        "badge_hash": badge,
        "granted": False,
        "reason": reason,
    }


def room(when: str) -> dict:
    return {"kind": "room", "ts": at(when), "room": "visio", "room_state": "occupied"}


def counts(store: Store) -> list[tuple]:
    return [
        (c["centre_id"], c["day"], c["granted"], c["denied"], c["unique_members"])
        for c in store.daily_counts()
    ]


# -- retention ---------------------------------------------------------------------------------


def test_old_events_are_folded_into_daily_counts_then_deleted(store: Store) -> None:
    unit = Unit(store)
    unit.send(
        entry(f"{OLD_DAY} 08:00", 1, HASH_A),
        entry(f"{OLD_DAY} 09:00", 2, HASH_B),
        entry(f"{OLD_DAY} 12:00", 1, HASH_A, direction="out"),
        entry(f"{OLD_DAY} 13:00", 1, HASH_A),  # a second entry: one unique member still
        refusal(f"{OLD_DAY} 13:05", HASH_U),
        room(f"{OLD_DAY} 13:10"),
        entry(f"{OLD_NEXT} 08:00", 1, HASH_A),
        entry(f"{RECENT} 08:00", 2, HASH_B),
        refusal(f"{RECENT} 08:05", "d4" * 32),
    )
    assert len(store.unknown_cards()) == 2
    # Two events per write: days span several writes and their counts stay exact.
    removed = store.purge(event_days=92, visit_days=3653, now=NOW, batch=2)
    assert removed["events"] == 7 and removed["days_counted"] == 2
    assert removed["unknown_cards"] == 1
    assert counts(store) == [("boitron", OLD_DAY, 3, 1, 2), ("boitron", OLD_NEXT, 1, 0, 1)]
    total, left = store.events()
    assert total == 2 and {e["ts"] for e in left} == {at(f"{RECENT} 08:00"), at(f"{RECENT} 08:05")}
    assert [c["badge_hash"] for c in store.unknown_cards()] == ["d4" * 32]
    # Again: nothing more to remove, the counts stay as they are.
    again = store.purge(event_days=92, visit_days=3653, now=NOW)
    assert again["events"] == 0 and again["unknown_cards"] == 0
    assert counts(store) == [("boitron", OLD_DAY, 3, 1, 2), ("boitron", OLD_NEXT, 1, 0, 1)]


def test_the_oldest_kept_day_is_kept_whole(store: Store) -> None:
    unit = Unit(store)
    unit.send(entry("2026-03-14 23:59", 1, HASH_A), entry("2026-03-15 00:01", 1, HASH_A))
    store.purge(event_days=92, visit_days=3653, now=NOW)  # NOW - 92 days = 2026-03-15
    assert [e["ts"] for e in store.events()[1]] == [at("2026-03-15 00:01")]
    assert counts(store) == [("boitron", "2026-03-14", 1, 0, 1)]


def test_events_of_a_wrong_clock_are_kept_and_counted_by_their_arrival(store: Store) -> None:
    unit = Unit(store)
    wrong_clock = {**entry("1970-01-02 08:00", 1, HASH_A), "clock_synced": False}
    unit.send(wrong_clock, received_at=at(f"{RECENT} 08:00"))
    unit.send(wrong_clock, received_at=at(f"{OLD_DAY} 10:00"))
    store.purge(event_days=92, visit_days=3653, now=NOW)
    (kept,) = store.events()[1]
    assert kept["time_suspect"] and kept["received_at"] == at(f"{RECENT} 08:00")
    assert counts(store) == [("boitron", OLD_DAY, 1, 0, 1)]


def test_visits_and_day_credits_keep_their_own_retention(store: Store) -> None:
    unit = Unit(store)
    unit.send(entry(f"{OLD_DAY} 08:00", 1, HASH_A))
    member = store.create_member({"name": "Zoé"})
    ten_years_ago, five_years_ago = at("2016-06-01 09:00"), at("2021-06-01 09:00")

    def rows(db: Database) -> None:
        visits = ((101, ten_years_ago), (102, five_years_ago), (103, at(f"{OLD_DAY} 08:00")))
        for visit_id, when in visits:
            db["visits"].insert(
                {
                    "id": visit_id,
                    "member_id": member["id"],
                    "centre_id": "boitron",
                    "day": "2000-01-01",
                    "check_in": when,
                    "check_out": when + 3600,
                    "stop_reason": "badge_out",
                    "limit_at": when + 3600,
                    "limit_reason": "closing_time",
                    "end_at": when + 3600,
                    "in_event_id": f"in-{visit_id}",
                    "historical": 0,
                }
            )
        for day, when in (("2016-06-01", ten_years_ago), ("2021-06-01", five_years_ago)):
            db["credit_days"].insert(
                {"member_id": member["id"], "day": day, "centre_id": "boitron", "ts": when}
            )

    store.write(rows)
    removed = store.purge(event_days=92, visit_days=3653, now=NOW)
    assert removed["visits"] == 1 and removed["credit_days"] == 1 and removed["events"] == 1
    kept = {v["id"] for v in store.db["visits"].rows}
    assert {102, 103} <= kept and 101 not in kept  # raw events gone, visits kept
    assert [c["day"] for c in store.db["credit_days"].rows] == ["2021-06-01"]
    assert counts(store) == [("boitron", OLD_DAY, 1, 0, 1)]


# -- a member's data ---------------------------------------------------------------------------


@pytest.fixture
def zoe(store: Store) -> dict:
    """A member with a card, a plan, a day credit, events, audit entries and presence."""
    member = store.create_member(
        {"name": "Zoé Roussel", "email": "zoe.roussel@example.fr", "centres": ["boitron"]}
    )
    badge = store.enrol_badge(member["id"], HASH_A, "carte de Zoé Roussel")
    store.audit(
        AuditEvent(
            "admin",
            "member.created",
            "member",
            str(member["id"]),
            NOW,
            after={"name": member["name"], "email": member["email"]},
        )
    )
    store.audit(
        AuditEvent(
            "admin",
            "badge.enrolled",
            "badge",
            str(badge["id"]),
            NOW,
            after={"member_id": member["id"], "label": badge["label"]},
        )
    )

    def plan(db: Database) -> None:
        plan_id = (
            db["plans"]
            .insert({"name": "Carnet 10", "kind": "day_pass", "hours": "opening", "active": 1})
            .last_pk
        )
        plan_row = (
            db["member_plans"]
            .insert(
                {
                    "member_id": member["id"],
                    "plan_id": plan_id,
                    "kind": "day_pass",
                    "hours": "opening",
                    "days": 10,
                    "created_at": NOW,
                }
            )
            .last_pk
        )
        db["credit_days"].insert(
            {
                "member_id": member["id"],
                "day": RECENT,
                "member_plan_id": plan_row,
                "centre_id": "boitron",
                "ts": at(f"{RECENT} 08:00"),
            }
        )
        # A tap of the card before it was enrolled, still listed.
        db["unknown_cards"].insert(
            {"badge_hash": HASH_A, "first_seen": NOW, "last_seen": NOW, "count": 1}
        )

    store.write(plan)
    unit = Unit(store)
    unit.send(
        entry(f"{OLD_DAY} 08:00", member["id"], HASH_A),
        entry(f"{OLD_DAY} 10:00", member["id"], HASH_A),
        refusal(f"{OLD_DAY} 11:00", HASH_A, reason="wrong_centre"),
        entry(f"{RECENT} 08:00", member["id"], HASH_A),
        entry(f"{RECENT} 09:00", 999, HASH_B),  # someone else
    )
    return store.member(member["id"])


NEEDLES = ["Zoé Roussel", "zoe.roussel@example.fr", HASH_A]


def test_the_export_holds_everything_about_the_member(store: Store, zoe: dict) -> None:
    data = store.member_export(zoe["id"])
    assert data["member"]["name"] == "Zoé Roussel" and data["member"]["centres"] == ["boitron"]
    assert [b["badge_hash"] for b in data["badges"]] == [HASH_A]
    assert [p["days"] for p in data["plans"]] == [10]
    # The day recorded by hand, and the one the old entries used (counted at ingest).
    assert [c["day"] for c in data["credit_days"]] == [OLD_DAY, RECENT]
    assert len(data["events"]) == 4  # three entries and the refusal of their card
    assert [c["badge_hash"] for c in data["unknown_cards"]] == [HASH_A]
    # Built from the entries: one stay on the old day (two badge-ins), one on the recent.
    assert [v["day"] for v in data["visits"]] == [OLD_DAY, RECENT]
    assert [p["member_id"] for p in data["presence"]] == [zoe["id"]]
    audit = {e["action"]: e for e in data["audit"]}
    assert audit["member.created"]["after"]["name"] == "Zoé Roussel"
    assert audit["badge.enrolled"]["after"]["label"] == "carte de Zoé Roussel"
    with pytest.raises(NotFound):
        store.member_export(12345)


def test_erasure_leaves_nothing_personal_and_keeps_the_counts(
    store: Store, zoe: dict, tmp_path: Path
) -> None:
    if store.engine == "sqlite":  # the search in the file finds them before
        assert find_values(tmp_path / "t.db", NEEDLES)
    events_before = store.event_count()
    removed = store.erase_member(zoe["id"], now=NOW, forget_lists=False)
    assert removed == {
        "events": 4,
        "badges": 1,
        "plans": 1,
        "credit_days": 2,
        "presence": 1,
        "unknown_cards": 1,
        "visits": 2,
        "first_visits": 1,
        "visit_months": 2,
        "audit_values": 2,
    }
    if store.engine == "sqlite":
        assert find_values(tmp_path / "t.db", NEEDLES) == []
    with pytest.raises(NotFound):
        store.member(zoe["id"])
    assert store.event_count() == events_before  # anonymised, not deleted
    # Visits kept for the counts, under a stand-in that names nobody (the same one for all
    # of the member's visits, so a report still counts one person).
    stand_ins = {v["member_id"] for v in store.db["visits"].rows} - {999}  # someone else
    assert len(stand_ins) == 1 and next(iter(stand_ins)) < 0
    entries = store.audit_entries()[1]
    created = next(e for e in entries if e["action"] == "member.created")
    assert created["after"] == {"name": "[erased]", "email": "[erased]"}
    # The day's counts still see them once, entries and refusal included.
    store.purge(event_days=92, visit_days=3653, now=NOW)
    assert counts(store) == [("boitron", OLD_DAY, 2, 1, 1)]


def test_an_erased_members_id_is_never_given_again(store: Store, zoe: dict) -> None:
    store.erase_member(zoe["id"], now=NOW, forget_lists=False)  # the highest id
    assert store.create_member({"name": "Next"})["id"] == zoe["id"] + 1
    assert store.import_members([{"name": "Imported"}]) == 1
    assert max(m["id"] for m in store.members()[1]) == zoe["id"] + 2


def test_an_event_of_an_erased_member_still_in_a_units_outbox_names_nobody(
    store: Store, zoe: dict
) -> None:
    store.erase_member(zoe["id"], now=NOW, forget_lists=False)
    Unit(store).send(entry("2026-06-15 13:00", zoe["id"], HASH_A))
    newest = store.events(limit=1)[1][0]
    assert newest["ts"] == at("2026-06-15 13:00") and newest["granted"]
    assert "member_id" not in newest and "badge_hash" not in newest
    assert all(c["present"] == 0 for c in store.occupancy(NOW))


def test_erasing_for_the_command_line_drops_the_stored_lists(store: Store, zoe: dict) -> None:
    state = CentreListState("boitron", 1, NOW, [], 1, NOW)
    store.save_list_state(state, snapshot=True)
    removed = store.erase_member(zoe["id"], now=NOW, forget_lists=True)
    assert removed["list_states"] == 1 and store.list_state("boitron") is None


def test_erased_values_leave_the_database_file_and_its_log(
    store: Store, zoe: dict, tmp_path: Path
) -> None:
    db_file = sqlite_file(store)
    store.erase_member(zoe["id"], now=NOW, forget_lists=False)
    for path in (db_file, db_file.with_name(db_file.name + "-wal")):
        if path.exists():
            content = path.read_bytes()
            for needle in NEEDLES[:2]:
                assert needle.encode() not in content, path.name


def test_audit_entries_keep_personal_values_apart_and_stay_append_only(
    store: Store, zoe: dict, tmp_path: Path
) -> None:
    stored = [r[0] for r in store.db.execute("SELECT after FROM audit").fetchall()]
    assert all("Zoé" not in (a or "") for a in stored)
    with pytest.raises(database_errors(), match="append-only"):
        store.write(lambda db: db.execute("UPDATE audit SET after = NULL"))
    with pytest.raises(database_errors(), match="never changed"):
        store.write(lambda db: db.execute("UPDATE audit_personal SET after = NULL"))
    created = next(e for e in store.audit_entries()[1] if e["action"] == "member.created")
    assert created["after"]["name"] == "Zoé Roussel"


def test_entries_written_before_the_migration_have_their_personal_values_moved(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    db = connect(path)
    migrations.apply(db, stop_before="m080_privacy")
    db["audit"].insert(
        {
            "at": 1.0,
            "actor": "admin",
            "action": "member.created",
            "target_kind": "member",
            "target_id": "1",
            "after": '{"name": "Ancien Membre", "active": true}',
        }
    )
    db["audit"].insert(
        {
            "at": 2.0,
            "actor": "admin",
            "action": "centre.created",
            "target_kind": "centre",
            "target_id": "boitron",
            "after": '{"name": "Boitron"}',
        }
    )
    db["members"].insert({"id": 1, "name": "Ancien Membre", "active": 1})
    db.conn.commit()
    db.close()
    store = Store(path)
    try:
        with closing(sqlite3.connect(path)) as conn:
            rows = dict(conn.execute("SELECT action, after FROM audit"))
        assert rows == {
            "member.created": '{"name": "[personal]", "active": true}',
            "centre.created": '{"name": "Boitron"}',  # a centre's name is not personal
        }
        by_action = {e["action"]: e for e in store.audit_entries()[1]}
        assert by_action["member.created"]["after"] == {"name": "Ancien Membre", "active": True}
        store.erase_member(1, now=NOW, forget_lists=False)
        by_action = {e["action"]: e for e in store.audit_entries()[1]}
        assert by_action["member.created"]["after"] == {"name": "[erased]", "active": True}
        assert find_values(path, ["Ancien Membre"]) == []
        with closing(sqlite3.connect(path)) as conn, pytest.raises(sqlite3.IntegrityError):
            conn.execute("DELETE FROM audit")
    finally:
        store.close()
