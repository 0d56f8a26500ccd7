"""Remote commands: a unit obeys only fresh, signed commands meant for it, and says so."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import pytest

from edge.agent import EdgeAgent
from protocol import topics
from protocol.messages import Command, CommandResult, Event, decode, encode_body
from protocol.signing import Signer
from tests.edge.support import (
    DEVICE,
    NOW,
    FakeTime,
    new_id,
    parsed,
)

MakeAgent = Callable[..., EdgeAgent]
TEN_YEARS = 10 * 365 * 86_400.0


def command(
    *,
    issued_at: float = NOW,
    ttl: float = 10,
    device_id: str = DEVICE,
    door: str = "entree",
    command_id: str | None = None,
    expires_at: float | None = None,
) -> Command:
    return Command(
        command_id=command_id or new_id(),
        device_id=device_id,
        action="unlock",
        door=door,
        issued_at=issued_at,
        expires_at=issued_at + ttl if expires_at is None else expires_at,
        requested_by="alice@orne.fr",
        reason="livraison",
    )


def send(agent: EdgeAgent, payload: bytes, *, retained: bool = False) -> None:
    agent.handle(parsed(topics.COMMAND), payload, retained)


def results(agent: EdgeAgent) -> list[CommandResult]:
    return [decode(CommandResult, p) for p in agent.published.of(topics.COMMAND_RESULT)]  # type: ignore[attr-defined]


def relay(agent: EdgeAgent) -> bool:
    return agent.hardware.locks["entree"].is_unlocked


def unlock_events(agent: EdgeAgent) -> list[Event]:
    return [p.event for p in agent.outbox.due(now=1e12, limit=100) if p.event.kind == "unlock"]


def assert_refused(agent: EdgeAgent, cmd_id: str | None, reason: str) -> None:
    assert not relay(agent), "the relay must never be energised"
    assert unlock_events(agent) == []
    assert agent.rejected[reason] == 1
    assert agent.status().rejected == {reason: 1}
    if cmd_id is not None:
        [result] = results(agent)
        assert (result.command_id, result.result, result.reason) == (cmd_id, "refused", reason)


def test_a_fresh_signed_command_opens_the_door_and_is_reported(
    make_agent: MakeAgent, signer: Signer
) -> None:
    agent = make_agent()
    cmd = command()

    send(agent, signer.sign(cmd))

    assert relay(agent)
    [result] = results(agent)
    assert (result.command_id, result.result, result.reason) == (cmd.command_id, "executed", None)
    [event] = unlock_events(agent)
    assert (event.door, event.reason, event.command_id, event.requested_by) == (
        "entree",
        "remote",
        cmd.command_id,
        "alice@orne.fr",
    )
    assert event.epoch == agent.outbox.epoch
    assert agent.status().rejected is None


def test_a_retained_command_is_never_executed(make_agent: MakeAgent, signer: Signer) -> None:
    agent = make_agent()
    cmd = command()

    send(agent, signer.sign(cmd), retained=True)

    assert_refused(agent, cmd.command_id, "retained")


def test_a_replayed_command_id_is_refused(make_agent: MakeAgent, signer: Signer) -> None:
    agent = make_agent()
    payload = signer.sign(command())
    send(agent, payload)
    agent.hardware.locks["entree"].lock()  # relock at once for the test
    assert not relay(agent)

    send(agent, payload)

    assert not relay(agent)
    assert [r.reason for r in results(agent)] == [None, "replayed"]
    assert len(unlock_events(agent)) == 1
    assert agent.rejected["replayed"] == 1


def test_a_command_id_stays_seen_after_a_restart_on_the_same_outbox(
    make_agent: MakeAgent, signer: Signer
) -> None:
    first = make_agent(data="unit")
    payload = signer.sign(command())
    send(first, payload)
    first.stop()

    again = make_agent(data="unit")  # same outbox file
    send(again, payload)

    assert not relay(again)
    [result] = results(again)
    assert (result.result, result.reason) == ("refused", "replayed")


def test_a_command_valid_for_ten_years_is_refused(make_agent: MakeAgent, signer: Signer) -> None:
    agent = make_agent()
    cmd = command(ttl=TEN_YEARS)

    send(agent, signer.sign(cmd))

    assert_refused(agent, cmd.command_id, "ttl_too_long")


def test_a_command_expiring_before_its_issue_is_refused(
    make_agent: MakeAgent, signer: Signer
) -> None:
    agent = make_agent()
    cmd = command(expires_at=NOW - 1)

    send(agent, signer.sign(cmd))

    assert_refused(agent, cmd.command_id, "ttl_too_long")


def test_the_ttl_limit_comes_from_the_config(make_agent: MakeAgent, signer: Signer) -> None:
    agent = make_agent(ttl=5)
    cmd = command(ttl=10)

    send(agent, signer.sign(cmd))

    assert_refused(agent, cmd.command_id, "ttl_too_long")


def test_a_command_for_another_unit_is_refused(make_agent: MakeAgent, signer: Signer) -> None:
    agent = make_agent()
    cmd = command(device_id="belleme-01")

    send(agent, signer.sign(cmd))

    assert_refused(agent, cmd.command_id, "other_device")


def test_a_command_for_an_unknown_door_is_refused(make_agent: MakeAgent, signer: Signer) -> None:
    agent = make_agent()
    cmd = command(door="cave")

    send(agent, signer.sign(cmd))

    assert_refused(agent, cmd.command_id, "unknown_door")


def test_an_expired_command_is_refused_by_a_synchronised_clock(
    make_agent: MakeAgent, signer: Signer, fake_time: FakeTime
) -> None:
    agent = make_agent()
    cmd = command(issued_at=NOW - 60, ttl=10)

    send(agent, signer.sign(cmd))

    assert_refused(agent, cmd.command_id, "expired")


def test_a_command_issued_in_the_future_is_not_yet_valid(
    make_agent: MakeAgent, signer: Signer
) -> None:
    agent = make_agent()
    cmd = command(issued_at=NOW + 3600)

    send(agent, signer.sign(cmd))

    assert_refused(agent, cmd.command_id, "not_yet_valid")


def test_an_unsynchronised_unit_without_anchor_refuses_even_an_old_command(
    make_agent: MakeAgent, signer: Signer, fake_time: FakeTime
) -> None:
    fake_time.is_synced = False
    fake_time.wall = 0.0  # booted in 1970
    agent = make_agent()
    cmd = command(issued_at=NOW - 86_400)  # expired a day ago, the unit cannot tell

    send(agent, signer.sign(cmd))

    assert_refused(agent, cmd.command_id, "clock_unsynced")


def test_an_unsynchronised_unit_places_commands_after_its_newest_signed_message(
    make_agent: MakeAgent, signer: Signer, fake_time: FakeTime
) -> None:
    fake_time.is_synced = False
    fake_time.wall = 0.0
    agent = make_agent()
    send(agent, signer.sign(command(device_id="belleme-01", issued_at=NOW - 600)))
    agent.clock.observe(NOW)  # e.g. a list head signed now

    fresh = command(issued_at=NOW + 1)
    older = command(issued_at=NOW - 120)  # signed before the anchor, could be a replay
    send(agent, signer.sign(older))
    fake_time.advance(20)
    stale = command(issued_at=NOW + 2, ttl=10)  # the estimate is NOW + 20 > expiry

    send(agent, signer.sign(stale))
    assert not relay(agent)
    send(agent, signer.sign(fresh := command(issued_at=NOW + 19)))

    reasons = [(r.command_id, r.reason) for r in results(agent)]
    assert (older.command_id, "clock_unsynced") in reasons
    assert (stale.command_id, "expired") in reasons
    assert (fresh.command_id, None) in reasons
    assert relay(agent)


@pytest.mark.parametrize("attack", ["unsigned", "unknown_key", "bad_signature"])
def test_an_unsigned_foreign_or_tampered_command_is_refused(
    make_agent: MakeAgent, signer: Signer, attack: str
) -> None:
    agent = make_agent()
    cmd = command()
    if attack == "unsigned":
        payload = encode_body(cmd)
    elif attack == "unknown_key":
        payload = Signer.generate().sign(cmd)
    else:
        envelope = msgspec.msgpack.decode(signer.sign(cmd))
        envelope["body"] = encode_body(msgspec.structs.replace(cmd, door="cave"))
        payload = msgspec.msgpack.encode(envelope)

    send(agent, payload)

    assert_refused(agent, cmd.command_id, attack)


def test_garbage_on_the_command_topic_is_counted_and_not_answered(
    make_agent: MakeAgent,
) -> None:
    agent = make_agent()

    send(agent, b"\x00not even msgpack")

    assert not relay(agent)
    assert results(agent) == []
    assert agent.rejected["unsigned"] == 1
