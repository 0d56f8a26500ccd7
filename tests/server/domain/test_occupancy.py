"""The occupancy rules, on plain rows: no database, no clock."""

from __future__ import annotations

from server.domain.occupancy import by_centre, is_present, room_state

NOW = 1_750_000_000.0
HOUR = 3600.0


def test_presence_older_than_the_maximum_stay_is_gone() -> None:
    assert is_present(NOW - 2 * HOUR, NOW, 3 * HOUR)
    assert not is_present(NOW - 3 * HOUR, NOW, 3 * HOUR)


def test_a_room_of_a_unit_not_online_is_unknown() -> None:
    assert room_state("occupied", "online") == "occupied"
    assert room_state(None, "online") == "unknown"
    assert room_state("occupied", "offline") == "unknown"
    assert room_state("occupied", None) == "unknown"


def test_by_centre_groups_rows_and_keeps_empty_centres() -> None:
    centres = [{"id": "belleme", "name": "Bellême"}, {"id": "boitron", "name": "Boitron"}]
    people = [
        {"centre_id": "boitron", "member_id": 1, "name": "Alice", "since": NOW - 60},
        {"centre_id": "boitron", "member_id": 2, "name": "Bob", "since": NOW - 10 * HOUR},
    ]
    rooms = [
        {
            "centre_id": "boitron",
            "room_id": "salle",
            "name": "Salle",
            "state": "occupied",
            "since": NOW - 30,
            "unit_state": "offline",
        }
    ]
    units = [{"centre_id": "boitron", "device_id": "boitron-01", "state": None, "last_seen": NOW}]

    belleme, boitron = by_centre(centres, people, rooms, units, now=NOW, max_stay_s=4 * HOUR)

    assert belleme == {
        "centre_id": "belleme",
        "name": "Bellême",
        "present": 0,
        "people": [],
        "rooms": [],
        "units": [],
    }
    assert boitron["present"] == 1
    assert boitron["people"] == [{"member_id": 1, "name": "Alice", "since": NOW - 60}]
    assert boitron["rooms"] == [
        {"room_id": "salle", "name": "Salle", "state": "unknown", "since": NOW - 30}
    ]
    assert boitron["units"] == [{"device_id": "boitron-01", "state": "unknown", "last_seen": NOW}]
