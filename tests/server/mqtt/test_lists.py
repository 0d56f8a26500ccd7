"""The access-list publisher, against a retained-message recorder: each centre's signed
list, opened as a unit would, follows members and badges with as few publishes as it can."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from edge.access import LocalAccess
from protocol import topics
from protocol.errors import ProtocolError
from protocol.lists import MAX_DELTA_ENTRIES, SEGMENT_ENTRIES, index_segments
from protocol.messages import ACTIVE, REVOKED, ListDelta, ListHead, ListSegment
from protocol.signing import Signer, Verifier
from server.mqtt.lists import AccessListPublisher
from server.store import Store
from tests.conftest import wait_until

NOW = 1_750_000_000.0


class Broker:
    """Keeps what a broker would retain, and every publish in order."""

    def __init__(self) -> None:
        self.retained: dict[str, bytes] = {}
        self.log: list[tuple[str, bytes]] = []
        self.away = False
        self.fail: Exception | None = None
        self._lock = threading.Lock()

    def publish(
        self, spec: topics.TopicSpec, owner: str, payload: bytes, *, index: int | None = None
    ) -> bool:
        if self.fail is not None:
            exc, self.fail = self.fail, None
            raise exc
        if self.away:
            return False
        assert spec.retain
        name = topics.topic(spec, owner, index)
        with self._lock:
            self.log.append((name, payload))
            if payload:
                self.retained[name] = payload
            else:
                self.retained.pop(name, None)
        return True

    def topics_sent(self) -> list[str]:
        with self._lock:
            return [name for name, _ in self.log]

    def forget(self) -> None:
        """A broker restart without persistence."""
        with self._lock:
            self.retained.clear()


class Unit:
    """What a unit of ``centre`` makes of the retained messages: everything opened, verified."""

    def __init__(self, verifier: Verifier, broker: Broker, centre: str) -> None:
        self.verifier, self.broker, self.centre = verifier, broker, centre

    def head(self) -> ListHead | None:
        raw = self.broker.retained.get(topics.topic(topics.LIST_HEAD, self.centre))
        return None if raw is None else self.verifier.open(ListHead, raw)

    def delta(self) -> ListDelta | None:
        raw = self.broker.retained.get(topics.topic(topics.LIST_DELTA, self.centre))
        return None if raw is None else self.verifier.open(ListDelta, raw)

    def segments(self) -> dict[int, ListSegment]:
        prefix = topics.topic(topics.LIST_SEGMENT, self.centre, 0)[:-1]
        return {
            int(name[len(prefix) :]): self.verifier.open(ListSegment, raw)
            for name, raw in list(self.broker.retained.items())
            if name.startswith(prefix)
        }

    def access(self) -> LocalAccess:
        """Install the retained snapshot and apply the retained delta, as the edge does."""
        head = self.head()
        assert head is not None
        segments = self.segments()
        assert sorted(segments) == list(range(head.segments))
        assert all(s.version == head.version for s in segments.values())
        access = LocalAccess()
        access.install(head.version, index_segments(segments.values()))
        delta = self.delta()
        assert delta is not None and delta.base == head.version
        access.apply(delta)
        return access


@pytest.fixture
def signer() -> Signer:
    return Signer.generate()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "t.db")
    s.create_centre("boitron", "Boitron")
    s.create_centre("belleme", "Bellême")
    yield s
    s.close()


@pytest.fixture
def broker() -> Broker:  # shadows the real broker fixture: no mosquitto here
    return Broker()


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_publisher(
    store: Store, signer: Signer, broker: Broker, clock: Clock
) -> Iterator[Callable[..., AccessListPublisher]]:
    started: list[AccessListPublisher] = []

    def make(on: Store | None = None, **options: object) -> AccessListPublisher:
        publisher = AccessListPublisher(
            on or store, signer, broker.publish, clock=clock, retry_s=0.1, **options
        )
        publisher.start()
        started.append(publisher)
        return publisher

    yield make
    for publisher in started:
        publisher.stop()


@pytest.fixture
def unit(signer: Signer, broker: Broker) -> Callable[[str], Unit]:
    verifier = Verifier([signer.public_hex])
    return lambda centre: Unit(verifier, broker, centre)


def settle(publisher: AccessListPublisher, action: Callable[[], object] | None = None) -> None:
    """Run ``action`` (an invalidation) and wait until the worker made a full pass after it."""
    before = publisher.passes
    if action is not None:
        action()
    wait_until(lambda: publisher.passes > before, what="a publisher pass")


def enrol(store: Store, badge: str, **fields: object) -> dict:
    member = store.create_member({"name": "x", **fields})
    store.enrol_badge(member["id"], badge)
    return store.member(member["id"])


A, B, C = "aa" * 32, "bb" * 32, "cc" * 32


def test_first_pass_cuts_a_snapshot_per_centre(
    store: Store, broker: Broker, make_publisher: Callable[..., AccessListPublisher], unit
) -> None:
    enrol(store, A)
    enrol(store, B, centres=["belleme"])
    publisher = make_publisher()
    settle(publisher, lambda: publisher.invalidate(None))

    head = unit("boitron").head()
    assert head is not None and head.entries == 1 and head.segments == 1
    assert head.version == int(NOW * 1000)
    delta = unit("boitron").delta()
    assert delta is not None and (delta.base, delta.version) == (head.version, head.version)
    assert delta.upsert == [] and delta.remove == []
    boitron = unit("boitron").access()
    assert boitron.decide(A, NOW).granted and boitron.decide(B, NOW).reason == "unknown_card"
    belleme = unit("belleme").access()
    assert belleme.decide(A, NOW).granted and belleme.decide(B, NOW).granted
    # Segments before the head, the head before the delta.
    sent = broker.topics_sent()
    boitron_topics = [t for t in sent if "/boitron/" in t]
    assert boitron_topics == [
        topics.topic(topics.LIST_SEGMENT, "boitron", 0),
        topics.topic(topics.LIST_HEAD, "boitron"),
        topics.topic(topics.LIST_DELTA, "boitron"),
    ]


def test_a_list_signed_by_another_key_is_refused(
    store: Store, make_publisher: Callable[..., AccessListPublisher], broker: Broker
) -> None:
    publisher = make_publisher()
    settle(publisher, lambda: publisher.invalidate(["boitron"]))
    stranger = Unit(Verifier([Signer.generate().public_hex]), broker, "boitron")
    with pytest.raises(ProtocolError) as refused:
        stranger.head()
    assert refused.value.reason == "unknown_key"


def test_changes_travel_as_one_cumulative_delta_over_the_snapshot(
    store: Store,
    broker: Broker,
    clock: Clock,
    make_publisher: Callable[..., AccessListPublisher],
    unit,
) -> None:
    alice = enrol(store, A)
    publisher = make_publisher()
    settle(publisher, lambda: publisher.invalidate(["boitron"]))
    snapshot = unit("boitron").head().version  # type: ignore[union-attr]

    clock.now += 1
    enrol(store, B, centres=["boitron"])
    settle(publisher, lambda: publisher.invalidate(["boitron"]))
    first = unit("boitron").delta()
    assert first is not None and first.base == snapshot and first.version == snapshot + 1000
    assert [e.badge.hex() for e in first.upsert] == [B]

    clock.now += 1
    store.revoke_badge(alice["badges"][0]["id"])
    settle(publisher, lambda: publisher.invalidate(["boitron"]))
    second = unit("boitron").delta()
    assert second is not None and second.base == snapshot and second.version > first.version
    assert {(e.badge.hex(), e.state) for e in second.upsert} == {(A, REVOKED), (B, ACTIVE)}
    assert unit("boitron").head().version == snapshot  # type: ignore[union-attr]
    assert publisher.snapshots == 2 and publisher.deltas == 2  # the first pass: both centres
    access = unit("boitron").access()
    assert access.decide(A, clock.now).reason == "revoked"
    assert access.decide(B, clock.now).granted

    # The clock stepped back: versions still go forward.
    clock.now -= 3600
    enrol(store, C)
    settle(publisher, lambda: publisher.invalidate(["boitron"]))
    third = unit("boitron").delta()
    assert third is not None and third.version == second.version + 1


def test_a_burst_of_changes_is_one_or_two_publishes(
    store: Store, broker: Broker, make_publisher: Callable[..., AccessListPublisher], unit
) -> None:
    publisher = make_publisher()
    settle(publisher, lambda: publisher.invalidate(["boitron"]))
    before = len(broker.log)
    hashes = [f"{n:064x}" for n in range(1, 51)]
    member = store.create_member({"name": "Équipe"})
    for badge in hashes:
        store.enrol_badge(member["id"], badge)
        publisher.invalidate(["boitron"])  # as each API call does
    wait_until(
        lambda: (d := unit("boitron").delta()) is not None and len(d.upsert) == 50,
        what="all 50 badges in the delta",
    )
    settle(publisher, lambda: publisher.invalidate(["boitron"]))  # nothing more to send
    assert 1 <= len(broker.log) - before <= 2, broker.topics_sent()[before:]
    access = unit("boitron").access()
    assert all(access.decide(badge, NOW).granted for badge in hashes)


def test_nothing_changed_publishes_nothing(
    store: Store, broker: Broker, make_publisher: Callable[..., AccessListPublisher]
) -> None:
    enrol(store, A)
    publisher = make_publisher()
    settle(publisher, lambda: publisher.invalidate(None))
    before = len(broker.log)
    settle(publisher, lambda: publisher.invalidate(None))
    store.create_member({"name": "No badge yet"})
    settle(publisher, lambda: publisher.invalidate(["boitron", "belleme"]))
    assert len(broker.log) == before


def test_a_change_for_one_centre_leaves_the_other_alone(
    store: Store, broker: Broker, make_publisher: Callable[..., AccessListPublisher]
) -> None:
    publisher = make_publisher()
    settle(publisher, lambda: publisher.invalidate(None))
    before = len(broker.log)
    enrol(store, A, centres=["boitron"])
    # Even when told to look at every centre, only boitron's list changed.
    settle(publisher, lambda: publisher.invalidate(None))
    assert broker.topics_sent()[before:] == [topics.topic(topics.LIST_DELTA, "boitron")]


def test_a_restart_republishes_the_same_versions_and_nothing_new(
    tmp_path: Path,
    store: Store,
    broker: Broker,
    clock: Clock,
    make_publisher: Callable[..., AccessListPublisher],
    unit,
) -> None:
    enrol(store, A)
    publisher = make_publisher()
    settle(publisher, lambda: publisher.invalidate(None))
    clock.now += 5
    enrol(store, B)
    settle(publisher, lambda: publisher.invalidate(None))
    published = dict(broker.retained)
    publisher.stop()
    store.close()

    clock.now += 60
    again = Store(tmp_path / "t.db")
    try:
        restarted = make_publisher(again)
        before = len(broker.log)
        settle(restarted, lambda: restarted.invalidate(None))
        assert len(broker.log) == before  # nothing changed while it was down

        broker.forget()  # the broker restarted and lost its retained messages
        settle(restarted, restarted.republish)
        assert broker.retained == published  # same versions, same signed bytes
        assert restarted.snapshots == restarted.deltas == 0
        assert unit("boitron").access().decide(B, clock.now).granted
    finally:
        restarted.stop()
        again.close()


def test_past_max_delta_entries_a_new_snapshot_is_cut(
    store: Store,
    broker: Broker,
    clock: Clock,
    make_publisher: Callable[..., AccessListPublisher],
    unit,
) -> None:
    publisher = make_publisher()
    settle(publisher, lambda: publisher.invalidate(["boitron"]))
    first = unit("boitron").head().version  # type: ignore[union-attr]
    clock.now += 1
    store.import_members(
        {"name": f"M{n}", "badge_hash": f"{n:064x}"} for n in range(1, MAX_DELTA_ENTRIES + 2)
    )
    settle(publisher, lambda: publisher.invalidate(["boitron"]))
    head = unit("boitron").head()
    assert head is not None and head.version > first and head.entries == MAX_DELTA_ENTRIES + 1
    delta = unit("boitron").delta()
    assert delta is not None and (delta.base, delta.version) == (head.version, head.version)
    assert len(unit("boitron").access()) == MAX_DELTA_ENTRIES + 1


def test_a_smaller_snapshot_clears_the_old_extra_segments(
    store: Store,
    broker: Broker,
    clock: Clock,
    make_publisher: Callable[..., AccessListPublisher],
    unit,
) -> None:
    many = SEGMENT_ENTRIES + 500
    store.import_members(
        {"name": f"M{n}", "badge_hash": f"{n:064x}", "valid_until": NOW + 60}
        for n in range(1, many + 1)
    )
    enrol(store, A)
    publisher = make_publisher()
    settle(publisher, lambda: publisher.invalidate(["boitron"]))
    assert unit("boitron").head().segments == 2  # type: ignore[union-attr]
    assert sorted(unit("boitron").segments()) == [0, 1]

    clock.now += 120  # every imported member expired: left out of the list
    before = len(broker.log)
    settle(publisher, lambda: publisher.invalidate(["boitron"]))
    head = unit("boitron").head()
    assert head is not None and head.segments == 1 and head.entries == 1
    assert sorted(unit("boitron").segments()) == [0]
    # New segments first, then the old extra one cleared, then the head, then the delta.
    assert [(name, bool(payload)) for name, payload in broker.log[before:]] == [
        (topics.topic(topics.LIST_SEGMENT, "boitron", 0), True),
        (topics.topic(topics.LIST_SEGMENT, "boitron", 1), False),
        (topics.topic(topics.LIST_HEAD, "boitron"), True),
        (topics.topic(topics.LIST_DELTA, "boitron"), True),
    ]
    assert unit("boitron").access().decide(A, clock.now).granted


def test_the_worker_survives_a_failing_publish(
    store: Store, broker: Broker, make_publisher: Callable[..., AccessListPublisher], unit
) -> None:
    enrol(store, A)
    broker.fail = RuntimeError("paho blew up")
    publisher = make_publisher()
    publisher.invalidate(["boitron"])
    wait_until(lambda: publisher.errors == 1, what="the error counted")
    wait_until(lambda: unit("boitron").head() is not None, what="the list after the back-off")
    assert publisher.is_alive() and "paho blew up" in (publisher.last_error or "")
    assert unit("boitron").access().decide(A, NOW).granted


def test_a_list_made_while_the_broker_is_away_goes_out_when_it_is_back(
    store: Store,
    broker: Broker,
    clock: Clock,
    make_publisher: Callable[..., AccessListPublisher],
    unit,
) -> None:
    alice = enrol(store, A)
    publisher = make_publisher()
    settle(publisher, lambda: publisher.invalidate(["boitron"]))
    broker.away = True
    clock.now += 1
    store.revoke_badge(alice["badges"][0]["id"])
    settle(publisher, lambda: publisher.invalidate(["boitron"]))
    assert unit("boitron").access().decide(A, clock.now).granted  # not there yet
    broker.away = False
    wait_until(
        lambda: unit("boitron").access().decide(A, clock.now).reason == "revoked",
        what="the revocation once the broker is back",
    )
    assert publisher.errors == 0


def test_a_change_made_while_the_server_was_down_goes_out_at_start(
    store: Store,
    broker: Broker,
    clock: Clock,
    make_publisher: Callable[..., AccessListPublisher],
    unit,
) -> None:
    first = make_publisher()
    settle(first, lambda: first.invalidate(None))
    first.stop()
    clock.now += 1
    store.import_members([{"name": "Imported", "badge_hash": A}])  # no invalidation: down
    make_publisher()  # its first pass compiles every centre
    wait_until(
        lambda: unit("boitron").access().decide(A, clock.now).granted, what="the imported card"
    )


def test_a_unit_that_applied_an_earlier_delta_follows_a_change_undone_since(
    store: Store,
    clock: Clock,
    make_publisher: Callable[..., AccessListPublisher],
    unit,
) -> None:
    """A member suspended then reactivated, a member moved in then out: a unit that applied
    the delta in between must end where the server is, not where the snapshot was."""
    alice = enrol(store, A)
    publisher = make_publisher()
    settle(publisher, lambda: publisher.invalidate(["boitron"]))
    door = unit("boitron").access()  # holds the snapshot, applies every delta in turn

    clock.now += 1
    store.update_member(alice["id"], {"active": False})
    bob = enrol(store, B, centres=["boitron"])
    settle(publisher, lambda: publisher.invalidate(["boitron"], [alice["id"], bob["id"]]))
    assert door.apply(unit("boitron").delta())  # type: ignore[arg-type]
    assert door.decide(A, clock.now).reason == "suspended"
    assert door.decide(B, clock.now).granted

    clock.now += 1
    store.update_member(alice["id"], {"active": True})
    store.update_member(bob["id"], {"centres": ["belleme"]})
    settle(publisher, lambda: publisher.invalidate(["boitron"], [alice["id"], bob["id"]]))
    assert door.apply(unit("boitron").delta())  # type: ignore[arg-type]
    assert door.decide(A, clock.now).granted
    assert door.decide(B, clock.now).reason == "unknown_card"
    fresh = unit("boitron").access()  # and a unit that only saw the snapshot agrees
    assert fresh.decide(A, clock.now).granted
    assert fresh.decide(B, clock.now).reason == "unknown_card"


def test_a_change_of_one_member_does_not_recompile_the_centre(
    store: Store,
    clock: Clock,
    make_publisher: Callable[..., AccessListPublisher],
    unit,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alice = enrol(store, A)
    enrol(store, B)
    publisher = make_publisher()
    settle(publisher, lambda: publisher.invalidate(["boitron"]))
    compiled: list[str] = []
    whole = store.list_entries
    monkeypatch.setattr(store, "list_entries", lambda c, now: compiled.append(c) or whole(c, now))

    clock.now += 1
    store.revoke_badge(alice["badges"][0]["id"])
    settle(publisher, lambda: publisher.invalidate(["boitron"], [alice["id"]]))
    assert compiled == []
    delta = unit("boitron").delta()
    assert delta is not None and [(e.badge.hex(), e.state) for e in delta.upsert] == [(A, REVOKED)]
    assert unit("boitron").access().decide(B, clock.now).granted


# -- erasure: no list keeps an erased member's cards ------------------------------------------


def test_an_erasure_publishes_new_snapshots_without_the_cards(
    store: Store, clock: Clock, make_publisher: Callable[..., AccessListPublisher], unit
) -> None:
    zoe = enrol(store, A, centres=["boitron"])
    enrol(store, B, centres=["boitron"])
    publisher = make_publisher()
    settle(publisher, lambda: publisher.invalidate(None))
    first = unit("boitron").head().version  # type: ignore[union-attr]
    clock.now += 1
    store.erase_member(zoe["id"], now=clock.now, forget_lists=False)
    settle(publisher, lambda: publisher.snapshot(["boitron"]))
    head, delta = unit("boitron").head(), unit("boitron").delta()
    assert head is not None and head.version > first and head.entries == 1
    assert delta is not None and delta.remove == [] and delta.upsert == []
    state = store.list_state("boitron")
    assert state is not None and [e.badge.hex() for e in state.snapshot] == [B]
    assert unit("boitron").access().decide(A, clock.now).reason == "unknown_card"


def test_a_list_state_dropped_on_the_command_line_becomes_a_snapshot(
    store: Store, clock: Clock, make_publisher: Callable[..., AccessListPublisher], unit
) -> None:
    zoe = enrol(store, A, centres=["boitron"])
    publisher = make_publisher()
    settle(publisher, lambda: publisher.invalidate(None))
    first = unit("boitron").head().version  # type: ignore[union-attr]
    clock.now += 1
    store.erase_member(zoe["id"], now=clock.now, forget_lists=True)
    assert store.list_state("boitron") is None
    enrol(store, B, centres=["boitron"])  # the next change of the centre
    settle(publisher, lambda: publisher.invalidate(["boitron"]))
    head = unit("boitron").head()
    assert head is not None and head.version > first and head.entries == 1
    assert publisher.errors == 0
    state = store.list_state("boitron")
    assert state is not None and [e.badge.hex() for e in state.snapshot] == [B]


def test_a_new_day_brings_the_closures_entering_the_lists_horizon(
    store: Store, clock: Clock, make_publisher: Callable[..., AccessListPublisher]
) -> None:
    """The head carries 62 days of closed days: a closure further ahead reaches the units
    when the days go by, without anyone touching the centre."""
    today = date.fromtimestamp(clock.now)
    far = today + timedelta(days=80)
    store.add_closure("boitron", far.isoformat(), far.isoformat(), "travaux")
    publisher = make_publisher()
    settle(publisher, lambda: publisher.invalidate(["boitron"]))
    first = publisher.state("boitron")
    assert first is not None and first.calendar is not None
    assert far.toordinal() not in first.calendar.closed

    clock.now += 30 * 86400
    settle(publisher, publisher._wake.set)  # the hourly look at the date, now
    later = publisher.state("boitron")
    assert later is not None and later.calendar is not None
    assert far.toordinal() in later.calendar.closed
    assert later.snapshot_version > first.snapshot_version

    settle(publisher, publisher._wake.set)  # the same day again: nothing new
    assert publisher.state("boitron").snapshot_version == later.snapshot_version  # type: ignore[union-attr]
