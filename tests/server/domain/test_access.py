"""The online access rules, on plain records: no database, no clock."""

from __future__ import annotations

import pytest

from server.domain.access import GRANTED, BadgeRecord, admits_centre, decide

NOW = 1_750_000_000.0


def record(**changes: object) -> BadgeRecord:
    fields: dict = {
        "member_id": 1,
        "revoked": False,
        "active": True,
        "valid_from": None,
        "valid_until": None,
        "centres": None,
    }
    fields.update(changes)
    return BadgeRecord(**fields)


@pytest.mark.parametrize(
    ("badge", "centre_id", "reason"),
    [
        (None, "boitron", "unknown_card"),
        (record(), "boitron", GRANTED),
        (record(revoked=True), "boitron", "revoked"),
        (record(active=False), "boitron", "suspended"),
        (record(revoked=True, centres=["belleme"]), "boitron", "revoked"),
        (record(), None, "wrong_centre"),
        (record(centres=["belleme"]), "boitron", "wrong_centre"),
        (record(centres=[]), "boitron", "wrong_centre"),
        (record(centres=["boitron"]), "boitron", GRANTED),
        (record(valid_from=NOW + 1), "boitron", "not_yet_valid"),
        (record(valid_from=NOW), "boitron", GRANTED),
        (record(valid_until=NOW), "boitron", "expired"),
        (record(valid_until=NOW + 1), "boitron", GRANTED),
    ],
)
def test_decide(badge: BadgeRecord | None, centre_id: str | None, reason: str) -> None:
    assert decide(badge, centre_id, NOW) == reason


def test_no_centres_means_every_centre() -> None:
    assert admits_centre(None, "boitron")
    assert not admits_centre([], "boitron")
