"""Lockdown and release by signed command: only lockdown-exempt badges open, the state
survives a restart and shows in the status and the lights; re-send status and re-fetch
the list by command too. Every command is answered."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from edge.agent import EdgeAgent
from protocol import topics
from protocol.lists import cut_snapshot
from protocol.messages import (
    SCHEMA_VERSION,
    Command,
    CommandResult,
    Event,
    Status,
    decode,
    encode_body,
)
from protocol.signing import Envelope, Signer
from tests.edge.support import CENTRE, NOW, RELAY_PIN, FakeTime, new_id, parsed, wait_until
from tests.edge.wired import (
    ALICE,
    BOB,
    EXIT_PIN,
    RED_PIN,
    STRANGER,
    Wired,
    install_list,
    pin_levels,
)


@pytest.fixture
def wired(tmp_path: Path, key_file: Path, signer: Signer, fake_time: FakeTime) -> Iterator[Wired]:
    made = Wired(tmp_path, key_file, signer, fake_time)
    yield made
    made.close()


def command(action: str, **fields: Any) -> Command:
    return Command(
        command_id=new_id(),
        device_id="boitron-01",
        action=action,  # type: ignore[arg-type]
        issued_at=NOW,
        expires_at=NOW + 10,
        requested_by="claire",
        **fields,
    )


def send(agent: EdgeAgent, signer: Signer, cmd: Command) -> CommandResult:
    agent.handle(parsed(topics.COMMAND), signer.sign(cmd))
    answers = [decode(CommandResult, p) for p in agent.published.of(topics.COMMAND_RESULT)]  # type: ignore[attr-defined]
    assert answers and answers[-1].command_id == cmd.command_id
    return answers[-1]


def events(agent: EdgeAgent, kind: str) -> list[Event]:
    return [p.event for p in agent.outbox.due(now=1e12, limit=1000) if p.event.kind == kind]


def statuses(agent: EdgeAgent) -> list[Status]:
    return [decode(Status, p) for p in agent.published.of(topics.STATUS)]  # type: ignore[attr-defined]


def energised(agent: EdgeAgent) -> bool:
    return agent.hardware.locks["entree"].is_unlocked


def no_server(agent: EdgeAgent) -> None:
    def refuse(*args: object) -> None:
        raise AssertionError("a card during a lockdown is not asked of the server")

    agent._ask_server = refuse  # type: ignore[method-assign]


def test_lockdown_lets_only_exempt_badges_in_and_is_answered(
    wired: Wired, signer: Signer, badge_key: bytes
) -> None:
    agent = wired.make()
    install_list(agent, badge_key)
    no_server(agent)
    cmd = command("lockdown", reason="Alerte")

    result = send(agent, signer, cmd)

    assert (result.result, result.reason) == ("executed", None)
    [recorded] = events(agent, "lockdown")
    assert (recorded.command_id, recorded.requested_by, recorded.door) == (
        cmd.command_id,
        "claire",
        None,
    )
    assert agent.status().lockdown is True
    assert statuses(agent)[-1].lockdown is True  # published at once
    alice = agent.badge("entree", ALICE)
    stranger = agent.badge("entree", STRANGER)
    assert (alice.granted, alice.reason, alice.member_id) == (False, "lockdown", 11)
    assert (stranger.granted, stranger.reason) == (False, "lockdown")
    assert not energised(agent)
    bob = agent.badge("entree", BOB)
    assert (bob.granted, bob.reason, bob.direction) == (True, "granted", "in")
    assert energised(agent)


def test_the_exit_button_and_a_remote_unlock_still_open_during_a_lockdown(
    wired: Wired, signer: Signer
) -> None:
    agent = wired.make()
    send(agent, signer, command("lockdown"))

    pin = agent.hardware.pin_factory.pin(EXIT_PIN)
    pin.drive_low()
    pin.drive_high()
    assert energised(agent) and len(events(agent, "exit")) == 1
    wait_until(lambda: not energised(agent), what="the relock")
    result = send(agent, signer, command("unlock", door="entree"))
    assert result.result == "executed" and energised(agent)


def test_the_lockdown_survives_a_restart_and_the_release_too(
    wired: Wired, signer: Signer, badge_key: bytes
) -> None:
    first = wired.make(data="unit")
    send(first, signer, command("lockdown"))
    first.stop()

    second = wired.make(data="unit")
    install_list(second, badge_key)
    no_server(second)
    assert second.lockdown is True and second.status().lockdown is True
    assert second.badge("entree", ALICE).reason == "lockdown"
    second.start()
    assert second.feedback.states("entree") == {"lockdown", "offline"}
    wait_until(lambda: len(pin_levels(second, RED_PIN)) > 3, what="the red light blinking")
    result = send(second, signer, command("release"))
    assert result.result == "executed"
    assert [p.event.kind for p in second.outbox.due(now=1e12, limit=10)][-1] == "release"
    assert second.status().lockdown is False
    assert second.feedback.states("entree") == {"offline"}
    second.stop()

    third = wired.make(data="unit")
    install_list(third, badge_key)
    assert third.lockdown is False
    assert third.badge("entree", ALICE).granted


def test_a_replayed_lockdown_is_refused_and_a_second_one_is_executed(
    wired: Wired, signer: Signer
) -> None:
    agent = wired.make()
    cmd = command("lockdown")
    assert send(agent, signer, cmd).result == "executed"
    again = send(agent, signer, cmd)
    assert (again.result, again.reason) == ("refused", "replayed")
    assert send(agent, signer, command("lockdown")).result == "executed"  # already: recorded
    assert len(events(agent, "lockdown")) == 2 and agent.lockdown


def test_a_lockdown_naming_a_door_is_refused_as_malformed(wired: Wired, signer: Signer) -> None:
    agent = wired.make()
    body = command("lockdown")
    fields = msgspec.msgpack.decode(encode_body(body))
    fields["door"] = "entree"  # signed by the server, but not what the contract allows
    raw = msgspec.msgpack.encode(fields)
    envelope = Envelope(SCHEMA_VERSION, signer.kid, signer._key.sign(raw), raw)  # noqa: SLF001

    agent.handle(parsed(topics.COMMAND), msgspec.msgpack.encode(envelope))

    [result] = [decode(CommandResult, p) for p in agent.published.of(topics.COMMAND_RESULT)]  # type: ignore[attr-defined]
    assert (result.command_id, result.result, result.reason) == (
        body.command_id,
        "refused",
        "malformed",
    )
    assert agent.lockdown is False and events(agent, "lockdown") == []


def test_send_status_publishes_the_status_again(wired: Wired, signer: Signer) -> None:
    agent = wired.make()
    before = len(statuses(agent))
    cmd = command("send_status")

    result = send(agent, signer, cmd)

    assert result.result == "executed"
    assert len(statuses(agent)) == before + 1
    assert statuses(agent)[-1].device_id == "boitron-01"
    assert send(agent, signer, cmd).reason == "replayed"  # never twice
    assert len(statuses(agent)) == before + 1


def test_refetch_list_fetches_the_installed_snapshot_again(
    wired: Wired, signer: Signer, badge_key: bytes
) -> None:
    agent = wired.make()
    calls: list[tuple[str, str]] = []
    agent.lists._subscribe = lambda t: calls.append(("subscribe", t))  # type: ignore[method-assign]
    agent.lists._unsubscribe = lambda t: calls.append(("unsubscribe", t))  # type: ignore[method-assign]
    head, segments = cut_snapshot(CENTRE, 5, [], NOW)
    agent.handle(parsed(topics.LIST_HEAD), signer.sign(head))
    agent.handle(parsed(topics.LIST_SEGMENT, index=0), signer.sign(segments[0]))
    assert agent.access.snapshot_version == 5
    agent.handle(parsed(topics.LIST_HEAD), signer.sign(head))  # the same: nothing to do
    assert agent.lists.fetching is None
    calls.clear()

    result = send(agent, signer, command("refetch_list"))

    assert result.result == "executed"
    head_topic = topics.topic(topics.LIST_HEAD, CENTRE)
    assert calls == [("unsubscribe", head_topic), ("subscribe", head_topic)]
    agent.handle(parsed(topics.LIST_HEAD), signer.sign(head))  # the broker's retained head
    assert agent.lists.fetching is not None and agent.lists.fetching.version == 5
    assert calls[-1] == ("subscribe", topics.segment_subscription(CENTRE))
    agent.handle(parsed(topics.LIST_SEGMENT, index=0), signer.sign(segments[0]))
    assert agent.lists.fetching is None and agent.access.snapshot_version == 5
    agent.handle(parsed(topics.LIST_HEAD), signer.sign(head))  # once only
    assert agent.lists.fetching is None
    assert agent.hardware.pin_factory.pin(RELAY_PIN).state  # active-low: still locked
