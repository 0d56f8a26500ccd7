"""Privacy rules: retention in whole local days, daily counts, the first entry of a day,
and the personal values of audit entries."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from server.domain import privacy
from server.domain.audit import AuditEvent
from server.domain.privacy import ERASED_MARK, PERSONAL_MARK, EventRow

PARIS = ZoneInfo("Europe/Paris")


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=PARIS).timestamp()


def test_the_boundary_is_local_midnight_of_the_oldest_kept_day() -> None:
    now = at("2026-06-15 14:37")
    assert privacy.boundary(now, 92, PARIS) == at("2026-03-15 00:00")
    assert privacy.boundary(at("2026-06-15 00:00"), 1, PARIS) == at("2026-06-14 00:00")
    # Across the spring DST change, still local midnight.
    assert privacy.boundary(at("2026-03-30 08:00"), 1, PARIS) == at("2026-03-29 00:00")


def test_local_days_and_their_bounds_follow_daylight_saving() -> None:
    assert privacy.local_day(at("2026-03-29 23:59"), PARIS) == "2026-03-29"
    start, end = privacy.day_bounds("2026-03-29", PARIS)  # 23 hours
    assert (end - start) / 3600 == 23
    start, end = privacy.day_bounds("2026-10-25", PARIS)  # 25 hours
    assert (end - start) / 3600 == 25


def test_a_retention_of_less_than_a_day_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="event_retention_days: must be at least 1 day, got 0"):
        privacy.check_retention("event_retention_days", 0)
    assert privacy.check_retention("visit_retention_days", 3653) == 3653


def test_an_unknown_time_zone_falls_back_to_paris() -> None:
    assert privacy.zone("Nowhere/Atlantis") == PARIS
    assert privacy.zone(None) == PARIS
    assert privacy.zone("UTC") == ZoneInfo("UTC")


def row(ts: float, *, kind: str = "access", granted: bool | None = True, **kw: object) -> EventRow:
    fields: dict = {"received_at": ts, "time_suspect": False, "direction": "in"} | kw
    return EventRow(ts=ts, kind=kind, granted=granted, **fields)


def test_days_count_entries_in_and_refusals_not_badge_outs_or_other_events() -> None:
    rows = [
        row(at("2026-01-05 08:00")),
        row(at("2026-01-05 12:00"), direction="out"),  # leaving is not an entry
        row(at("2026-01-05 12:01"), granted=False, direction=None),
        row(at("2026-01-05 13:00"), kind="room", granted=None, direction=None),
        row(at("2026-01-06 09:00")),
        # A unit with a wrong clock: filed under its arrival.
        row(at("1970-01-02 00:00"), received_at=at("2026-01-06 10:00"), time_suspect=True),
    ]
    counts = privacy.count_by_day(rows, PARIS)
    assert counts == {
        "2026-01-05": privacy.DayCounts(granted=1, denied=1),
        "2026-01-06": privacy.DayCounts(granted=2, denied=0),
    }


def test_the_first_entry_of_each_centre_and_day() -> None:
    entries = [
        (5, "boitron", at("2026-01-05 14:00")),
        (3, "boitron", at("2026-01-05 08:00")),
        (4, "belleme", at("2026-01-05 09:00")),
        (9, "boitron", at("2026-01-06 00:30")),
    ]
    assert privacy.first_entry_per_day(entries, {"boitron": PARIS}) == [3, 4, 9]


def member_created(name: str = "Zoé Roussel") -> AuditEvent:
    return AuditEvent(
        "admin",
        "member.created",
        "member",
        "17",
        1.0,
        after={"name": name, "email": "zoe@example.fr", "centres": ["boitron"], "active": True},
    )


def test_personal_values_of_an_entry_about_a_member_are_taken_out() -> None:
    public, member_id = privacy.split_personal(member_created())
    assert member_id == 17
    assert public.after == {
        "name": PERSONAL_MARK,
        "email": PERSONAL_MARK,
        "centres": ["boitron"],
        "active": True,
    }
    badge = AuditEvent(
        "admin", "badge.enrolled", "badge", "4", 1.0, after={"member_id": 17, "label": "Zoé"}
    )
    public, member_id = privacy.split_personal(badge)
    assert member_id == 17 and public.after == {"member_id": 17, "label": PERSONAL_MARK}


def test_entries_without_personal_values_or_member_are_left_alone() -> None:
    revoked = AuditEvent(
        "admin", "badge.revoked", "badge", "4", 1.0, after={"revoked_at": 2.0, "member_id": 17}
    )
    assert privacy.split_personal(revoked) == (revoked, None)
    operator = AuditEvent("cli", "operator.created", "operator", "olga", 1.0, after={"name": "O"})
    assert privacy.split_personal(operator) == (operator, None)  # no member to erase it by


def test_nested_personal_values_are_taken_out_too() -> None:
    value = {"members": [{"name": "A", "id": 1}], "email": None}
    assert privacy.redact(value) == {"members": [{"name": PERSONAL_MARK, "id": 1}], "email": None}


def test_reading_back_uses_the_personal_copy_only_when_it_matches() -> None:
    original = member_created().after
    stored = privacy.redact(original)
    assert privacy.restore(stored, original) == original
    assert privacy.restore(stored, None)["name"] == ERASED_MARK  # erased
    tampered = {**original, "active": False}  # a copy saying something else is ignored
    assert privacy.restore(stored, tampered)["name"] == ERASED_MARK
    assert privacy.restore({"active": True}, None) == {"active": True}
