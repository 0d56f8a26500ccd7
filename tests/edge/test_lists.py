"""Access lists v2 at the unit: signed snapshots in segments, deltas, decisions."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable

import pytest

from edge.access import LocalAccess
from edge.agent import EdgeAgent
from edge.lists import REFETCH_AFTER_S
from protocol import topics
from protocol.badges import badge_hash
from protocol.lists import SEGMENT_ENTRIES, cut_snapshot
from protocol.messages import (
    REVOKED,
    SUSPENDED,
    AccessRequest,
    AccessResponse,
    ListDelta,
    ListEntry,
    ListHead,
    decode,
    encode_body,
)
from protocol.signing import Signer
from tests.edge.support import (
    CENTRE,
    DEVICE,
    NOW,
    FakeTime,
    new_id,
    parsed,
    wait_until,
)

MakeAgent = Callable[..., EdgeAgent]
DAY = 86_400.0
ALICE_UID = bytes.fromhex("04a1b2c3")
BOB_UID = bytes.fromhex("04b0b0b0")


def entry(key: bytes, uid: bytes, member_id: int, **kw: object) -> ListEntry:
    return ListEntry(bytes.fromhex(badge_hash(key, uid)), member_id, **kw)  # type: ignore[arg-type]


def fake_entry(i: int) -> ListEntry:
    return ListEntry(hashlib.sha256(i.to_bytes(4, "big")).digest(), i + 1)


def install(
    agent: EdgeAgent, signer: Signer, entries: list[ListEntry], version: int, centre: str = CENTRE
) -> ListHead:
    head, segments = cut_snapshot(centre, version, entries, NOW)
    agent.handle(parsed(topics.LIST_HEAD), signer.sign(head))
    for segment in segments:
        agent.handle(parsed(topics.LIST_SEGMENT, index=segment.index), signer.sign(segment))
    return head


def delta(signer: Signer, base: int, version: int, **kw: object) -> bytes:
    body = ListDelta(centre=CENTRE, base=base, version=version, issued_at=NOW, **kw)  # type: ignore[arg-type]
    return signer.sign(body)


def no_server(agent: EdgeAgent) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("the decision must not wait for the server")

    agent._ask_server = refuse  # type: ignore[method-assign]


def test_segments_are_assembled_into_one_install(
    make_agent: MakeAgent, signer: Signer, badge_key: bytes
) -> None:
    agent = make_agent()
    subscribed: list[str] = []
    agent.lists._subscribe = subscribed.append  # type: ignore[method-assign]
    unsubscribed: list[str] = []
    agent.lists._unsubscribe = unsubscribed.append  # type: ignore[method-assign]
    entries = [fake_entry(i) for i in range(25_000)] + [entry(badge_key, ALICE_UID, 77)]
    head, segments = cut_snapshot(CENTRE, 5, entries, NOW)
    assert len(segments) == -(-25_001 // SEGMENT_ENTRIES) > 2

    agent.handle(parsed(topics.LIST_HEAD), signer.sign(head))
    assert subscribed == [topics.segment_subscription(CENTRE)]
    for segment in segments[:-1]:
        agent.handle(parsed(topics.LIST_SEGMENT, index=segment.index), signer.sign(segment))
        assert agent.access.version is None  # nothing installed until every segment is in
    last = segments[-1]
    agent.handle(parsed(topics.LIST_SEGMENT, index=last.index), signer.sign(last))

    assert agent.access.version == 5
    assert len(agent.access) == 25_001
    assert unsubscribed == [topics.segment_subscription(CENTRE)]
    assert agent.lists.fetching is None
    no_server(agent)
    assert agent.badge("entree", ALICE_UID).granted
    assert agent.status().list_version == 5


def test_the_installed_list_is_verified_again_and_reloaded_at_boot(
    make_agent: MakeAgent, signer: Signer, badge_key: bytes
) -> None:
    first = make_agent(data="unit")
    install(first, signer, [entry(badge_key, ALICE_UID, 1)], version=3)
    first.handle(
        parsed(topics.LIST_DELTA),
        delta(signer, 3, 4, upsert=[entry(badge_key, BOB_UID, 2)]),
    )
    first.stop()

    again = make_agent(data="unit")

    assert again.access.version == 4
    no_server(again)
    assert again.badge("entree", ALICE_UID).granted
    assert again.badge("entree", BOB_UID).granted


def test_a_saved_list_signed_by_a_key_no_longer_trusted_is_not_loaded(
    make_agent: MakeAgent, signer: Signer, badge_key: bytes, fake_time: FakeTime
) -> None:
    first = make_agent(data="unit")
    install(first, signer, [entry(badge_key, ALICE_UID, 1)], version=3)
    first.stop()
    other = Signer.generate()
    cfg_signer = signer
    signer._key = other._key  # type: ignore[attr-defined]  # the config now trusts another key
    signer.public_hex = other.public_hex
    signer.kid = other.kid

    again = make_agent(data="unit")

    assert cfg_signer is signer
    assert again.access.version is None


def test_a_revoked_badge_and_a_suspended_member_are_denied_at_once_offline(
    make_agent: MakeAgent, signer: Signer, badge_key: bytes
) -> None:
    agent = make_agent()
    install(
        agent,
        signer,
        [
            entry(badge_key, ALICE_UID, 1, state=REVOKED),
            entry(badge_key, BOB_UID, 2, state=SUSPENDED),
        ],
        version=1,
    )
    no_server(agent)

    alice = agent.badge("entree", ALICE_UID)
    bob = agent.badge("entree", BOB_UID)

    assert (alice.granted, alice.reason, alice.member_id) == (False, "revoked", 1)
    assert (bob.granted, bob.reason) == (False, "suspended")
    assert not agent.hardware.locks["entree"].is_unlocked


def test_a_delta_is_applied_over_its_snapshot(
    make_agent: MakeAgent, signer: Signer, badge_key: bytes
) -> None:
    agent = make_agent()
    alice = entry(badge_key, ALICE_UID, 1)
    install(agent, signer, [alice], version=10)
    no_server(agent)
    revoke = ListEntry(alice.badge, 1, REVOKED)

    agent.handle(
        parsed(topics.LIST_DELTA),
        delta(signer, 10, 11, upsert=[revoke, entry(badge_key, BOB_UID, 2)]),
    )
    agent.handle(parsed(topics.LIST_DELTA), delta(signer, 10, 11, upsert=[alice]))  # not newer

    assert agent.access.version == 11
    assert agent.badge("entree", ALICE_UID).reason == "revoked"
    assert agent.badge("entree", BOB_UID).granted

    agent.handle(parsed(topics.LIST_DELTA), delta(signer, 10, 12, remove=[revoke.badge]))
    assert agent.access.decide(revoke.badge, NOW).reason == "unknown_card"


def test_a_delta_over_a_foreign_base_then_its_head_refetches_the_snapshot(
    make_agent: MakeAgent, signer: Signer, badge_key: bytes
) -> None:
    agent = make_agent()
    install(agent, signer, [entry(badge_key, ALICE_UID, 1)], version=1)
    subscribed: list[str] = []
    agent.lists._subscribe = subscribed.append  # type: ignore[method-assign]

    agent.handle(
        parsed(topics.LIST_DELTA),
        delta(signer, 5, 6, upsert=[entry(badge_key, BOB_UID, 2)]),
    )
    assert agent.access.version == 1  # not applied over the wrong base
    head, segments = cut_snapshot(CENTRE, 5, [entry(badge_key, ALICE_UID, 1)], NOW)
    agent.handle(parsed(topics.LIST_HEAD), signer.sign(head))
    assert subscribed == [topics.segment_subscription(CENTRE)]
    agent.handle(parsed(topics.LIST_SEGMENT, index=0), signer.sign(segments[0]))

    assert agent.access.snapshot_version == 5
    assert agent.access.version == 6  # the remembered delta was applied after the install
    no_server(agent)
    assert agent.badge("entree", BOB_UID).granted


def test_no_head_within_ten_seconds_of_a_foreign_delta_asks_for_it_again(
    make_agent: MakeAgent, signer: Signer, badge_key: bytes, fake_time: FakeTime
) -> None:
    agent = make_agent()
    install(agent, signer, [entry(badge_key, ALICE_UID, 1)], version=1)
    calls: list[tuple[str, str]] = []
    agent.lists._subscribe = lambda t: calls.append(("sub", t))  # type: ignore[method-assign]
    agent.lists._unsubscribe = lambda t: calls.append(("unsub", t))  # type: ignore[method-assign]
    agent.handle(parsed(topics.LIST_DELTA), delta(signer, 5, 6))

    fake_time.advance(REFETCH_AFTER_S - 1)
    agent.lists.tick()
    assert calls == []
    fake_time.advance(2)
    agent.lists.tick()

    head_topic = topics.topic(topics.LIST_HEAD, CENTRE)
    assert calls == [("unsub", head_topic), ("sub", head_topic)]


def test_a_list_for_another_centre_is_refused(
    make_agent: MakeAgent, signer: Signer, badge_key: bytes
) -> None:
    agent = make_agent()
    head, segments = cut_snapshot("belleme", 2, [entry(badge_key, ALICE_UID, 1)], NOW)

    # On our own centre's topic (a broker or server mistake) and on the other's.
    agent.handle(parsed(topics.LIST_HEAD), signer.sign(head))
    agent.handle(parsed(topics.LIST_HEAD, "belleme"), signer.sign(head))
    agent.handle(parsed(topics.LIST_SEGMENT, index=0), signer.sign(segments[0]))

    assert agent.access.version is None
    assert agent.lists.fetching is None
    assert agent.rejected["other_centre"] == 3


@pytest.mark.parametrize("attack", ["unknown_key", "unsigned"])
def test_a_list_not_signed_by_the_server_is_refused(
    make_agent: MakeAgent, signer: Signer, badge_key: bytes, attack: str
) -> None:
    agent = make_agent()
    install(agent, signer, [entry(badge_key, ALICE_UID, 1, state=REVOKED)], version=1)
    forger = Signer.generate()
    head, segments = cut_snapshot(CENTRE, 2**62, [entry(badge_key, ALICE_UID, 1)], NOW)
    seal = forger.sign if attack == "unknown_key" else encode_body
    forged_delta = ListDelta(
        centre=CENTRE, base=1, version=2**62, upsert=[entry(badge_key, ALICE_UID, 1)], issued_at=NOW
    )

    agent.handle(parsed(topics.LIST_HEAD), seal(head))
    agent.handle(parsed(topics.LIST_SEGMENT, index=0), seal(segments[0]))
    agent.handle(parsed(topics.LIST_DELTA), seal(forged_delta))

    assert agent.access.version == 1
    assert agent.rejected[attack] == 3
    no_server(agent)
    assert agent.badge("entree", ALICE_UID).reason == "revoked"
    assert not agent.hardware.locks["entree"].is_unlocked


# -- online answers ------------------------------------------------------------------------


def answer(
    request: AccessRequest, *, device_id: str = DEVICE, badge: str | None = None
) -> AccessResponse:
    badge = badge or request.badge_hash
    return AccessResponse(
        request_id=request.request_id,
        device_id=device_id,
        badge_hash=badge,
        granted=True,
        reason="granted",
        entry=ListEntry(bytes.fromhex(badge), 9),
        issued_at=NOW,
    )


def ask_with(agent: EdgeAgent, respond: Callable[[AccessRequest], list[bytes]]) -> None:
    """The server 'answers' each request with the payloads ``respond`` returns."""
    agent.link.connected.set()

    def publish(spec: topics.TopicSpec, payload: bytes) -> bool:
        if spec is topics.ACCESS_REQUEST:
            request = decode(AccessRequest, payload)
            for reply in respond(request):
                agent.handle(parsed(topics.ACCESS_RESPONSE), reply)
        return True

    agent.link.publish = publish  # type: ignore[method-assign]


def test_a_granted_online_answer_opens_and_is_learnt_until_the_next_install(
    make_agent: MakeAgent, signer: Signer, badge_key: bytes
) -> None:
    agent = make_agent()
    ask_with(agent, lambda req: [signer.sign(answer(req))])

    first = agent.badge("entree", ALICE_UID)
    no_server(agent)
    again = agent.badge("entree", ALICE_UID)

    assert first.granted and first.member_id == 9
    assert again.granted  # learnt: no second question
    install(agent, signer, [], version=2)
    assert agent.access.decide(badge_hash(badge_key, ALICE_UID), NOW).needs_server


@pytest.mark.parametrize("attack", ["other_badge", "not_asked", "other_device"])
def test_an_answer_for_another_badge_or_request_or_unit_is_refused(
    make_agent: MakeAgent, signer: Signer, attack: str
) -> None:
    agent = make_agent(online_deadline_ms=50)

    def respond(req: AccessRequest) -> list[bytes]:
        if attack == "other_badge":
            return [signer.sign(answer(req, badge="ab" * 32))]
        if attack == "other_device":
            return [signer.sign(answer(req, device_id="belleme-01"))]
        return [
            signer.sign(
                answer(
                    AccessRequest(
                        request_id=new_id(), badge_hash=req.badge_hash, door="entree", ts=NOW
                    )
                )
            )
        ]

    ask_with(agent, respond)

    event = agent.badge("entree", ALICE_UID)

    assert (event.granted, event.reason) == (False, "server_timeout")
    assert not agent.hardware.locks["entree"].is_unlocked
    reason = "other_device" if attack == "other_device" else "not_requested"
    assert agent.rejected[reason] == 1


def test_an_unasked_answer_alone_is_refused(make_agent: MakeAgent, signer: Signer) -> None:
    agent = make_agent()
    req = AccessRequest(request_id=new_id(), badge_hash="cd" * 32, door="entree", ts=NOW)

    agent.handle(parsed(topics.ACCESS_RESPONSE), signer.sign(answer(req)))

    assert agent.rejected["not_requested"] == 1
    assert agent.access.entry("cd" * 32) is None


# -- LocalAccess alone ---------------------------------------------------------------------


def test_windows_are_checked_with_the_time_given() -> None:
    access = LocalAccess()
    week = ListEntry(b"w" * 32, 6, valid_from=NOW + DAY, valid_until=NOW + 8 * DAY)
    access.install(1, {week.badge: week})

    assert access.decide(week.badge, NOW + DAY - 1).reason == "not_yet_valid"
    assert access.decide(week.badge, NOW + DAY).granted
    assert access.decide(week.badge, NOW + 8 * DAY - 1).granted
    assert access.decide(week.badge, NOW + 8 * DAY).reason == "expired"


def test_a_unit_whose_clock_says_1970_uses_the_newest_signed_time(
    make_agent: MakeAgent, signer: Signer, badge_key: bytes, fake_time: FakeTime
) -> None:
    fake_time.is_synced = False
    fake_time.wall = 0.0
    agent = make_agent()
    install(
        agent,
        signer,
        [
            entry(badge_key, ALICE_UID, 1, valid_from=NOW - DAY, valid_until=NOW + DAY),
            entry(badge_key, BOB_UID, 2, valid_until=NOW - DAY),
        ],
        version=1,
    )
    no_server(agent)

    assert agent.clock.now() == NOW
    assert agent.badge("entree", ALICE_UID).granted
    assert agent.badge("entree", BOB_UID).reason == "expired"


def test_installs_swap_atomically_while_deciding() -> None:
    access = LocalAccess()
    badge = b"x" * 32
    stop = threading.Event()
    seen: set[str] = set()

    def decide() -> None:
        while not stop.is_set():
            seen.add(access.decide(badge, NOW).reason)

    t = threading.Thread(target=decide)
    t.start()
    for version in range(1, 200):
        state = REVOKED if version % 2 else 0
        access.install(version, {badge: ListEntry(badge, 1, state)})
    stop.set()
    t.join()

    assert seen <= {"unknown_card", "revoked", "granted"}


def test_list_payloads_are_decoded_on_the_installer_worker_not_pahos_thread(
    make_agent: MakeAgent, signer: Signer, badge_key: bytes
) -> None:
    agent = make_agent()
    threads: list[str] = []
    on_segment = agent.lists.on_segment

    def spy(payload: bytes) -> None:
        threads.append(threading.current_thread().name)
        on_segment(payload)

    agent.lists.on_segment = spy  # type: ignore[method-assign]
    agent.installer.start()
    head, segments = cut_snapshot(CENTRE, 7, [entry(badge_key, ALICE_UID, 1)], NOW)

    agent._on_message(parsed(topics.LIST_HEAD), signer.sign(head), True)
    agent._on_message(parsed(topics.LIST_SEGMENT, index=0), signer.sign(segments[0]), True)

    wait_until(lambda: agent.access.version == 7, timeout=5, what="the install")
    assert threads == ["lists"]
