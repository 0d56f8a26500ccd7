"""The alarm rules and the fleet view's arithmetic, without a database."""

from __future__ import annotations

from protocol.messages import Status
from server.domain import alarms, fleet
from server.domain.alarms import Raised, Thresholds

T = Thresholds(offline_after_s=300, outbox_pending=10)


def online(**fields: object) -> Status:
    return Status(device_id="boitron-01", state="online", **fields)  # type: ignore[arg-type]


def test_a_healthy_status_settles_what_it_reports_and_raises_nothing() -> None:
    verdict = alarms.from_status(
        online(centre="boitron", clock_synced=True, outbox_pending=10, doors=["entree"]),
        "boitron",
        T,
    )
    assert verdict.raised == []
    assert verdict.settled == {
        "unit_offline",
        "reader_fault",
        "clock_unsynced",
        "outbox_filling",
        "centre_mismatch",
    }


def test_a_field_left_out_settles_nothing_and_a_last_will_nothing_at_all() -> None:
    assert alarms.from_status(online(), "boitron", T).settled == {"unit_offline", "reader_fault"}
    last_will = alarms.from_status(Status(device_id="boitron-01", state="offline"), "boitron", T)
    assert last_will.raised == [] and last_will.settled == frozenset()


def test_each_condition_raises_its_alarm() -> None:
    verdict = alarms.from_status(
        online(
            centre="belleme",
            clock_synced=False,
            outbox_pending=11,
            doors=["entree", "garage"],
            faults=["entree: card reader: no answer", "entree: tamper", "garage: x", "psu: low"],
        ),
        "boitron",
        T,
    )
    assert verdict.raised == [
        Raised("clock_unsynced", None, "the unit's clock is not synchronised"),
        Raised("outbox_filling", None, "11 events wait in the unit's outbox (alarm above 10)"),
        Raised("reader_fault", "entree", "card reader: no answer; tamper"),
        Raised("reader_fault", "garage", "x"),
        Raised("reader_fault", None, "psu: low"),
        Raised(
            "centre_mismatch",
            None,
            "the unit's config says centre 'belleme', the registry 'boitron'",
        ),
    ]


def test_a_fault_names_a_door_only_if_the_unit_has_it() -> None:
    assert alarms.split_fault("entree: card reader: gone", ["entree"]) == (
        "entree",
        "card reader: gone",
    )
    assert alarms.split_fault("psu: low", ["entree"]) == (None, "psu: low")
    assert alarms.split_fault("entree:no space", ["entree"]) == (None, "entree:no space")


def test_centre_unknown_on_either_side_settles_nothing() -> None:
    assert alarms.centre_verdict(None, "boitron").settled == frozenset()
    assert alarms.centre_verdict("boitron", None).settled == frozenset()
    assert alarms.centre_verdict("boitron", "boitron").raised == []


def test_offline_too_long_counts_from_when_it_went_offline() -> None:
    assert not alarms.offline_too_long("offline", 1000.0, 1299.0, T)
    assert alarms.offline_too_long("offline", 1000.0, 1300.0, T)
    assert not alarms.offline_too_long("online", 1000.0, 9999.0, T)
    assert not alarms.offline_too_long(None, None, 9999.0, T)


def test_the_backlog_age_uses_the_units_two_times_not_its_clock() -> None:
    # The unit's clock is a day behind: its status and its oldest event are both off.
    day = 86_400.0
    assert fleet.oldest_pending_at(5000.0 - day, 4880.0 - day, 5001.0) == 4881.0
    assert fleet.oldest_pending_at(None, 4000.0, 5000.0) == 4000.0
    assert fleet.oldest_pending_at(None, 6000.0, 5000.0) == 5000.0  # never after its arrival
    assert fleet.oldest_pending_at(5000.0, 5100.0, 5000.0) == 5000.0
    assert fleet.oldest_pending_at(5000.0, None, 5000.0) is None


def test_unit_health_compares_versions_and_ages_the_backlog() -> None:
    device = {"device_id": "boitron-01", "access_list_version": 7, "outbox_pending": 3}
    view = fleet.unit_health(
        {**device, "outbox_oldest_at": 900.0},
        published_version=7,
        open_alarms=["reader_fault", "clock_unsynced", "reader_fault"],
        now=1000.0,
    )
    assert view["access_list_current"] is True and view["access_list_published"] == 7
    assert view["outbox_oldest_age_s"] == 100.0
    assert view["open_alarms"] == ["clock_unsynced", "reader_fault"]
    stale = fleet.unit_health(device, published_version=8, open_alarms=[], now=1000.0)
    assert stale["access_list_current"] is False and stale["outbox_oldest_age_s"] is None
    unknown = fleet.unit_health({"device_id": "x"}, published_version=None, open_alarms=[], now=0)
    assert unknown["access_list_current"] is None
