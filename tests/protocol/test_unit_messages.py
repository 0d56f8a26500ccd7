"""The unit's inputs and lockdown on the wire: exit and tamper events, lockdown commands,
the exempt flag of list entries, the lockdown deny reason and status field."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from protocol.errors import ProtocolError
from protocol.messages import (
    DENY_REASONS,
    Command,
    Event,
    ListEntry,
    Status,
    decode,
    decode_body,
    encode,
    encode_body,
)

UUID = "e1c7a0d2-58b4-4f0e-9c3a-71d2b6f8e904"
EPOCH = "65f000177e6c8287dd4ba5e64b59a1fc"
TS = 1795451000.0
BADGE = bytes(range(32))


def event(**fields: Any) -> dict[str, Any]:
    return {
        "v": 2,
        "event_id": UUID,
        "device_id": "boitron-01",
        "epoch": EPOCH,
        "seq": 1,
        "ts": TS,
        "clock_synced": True,
        **fields,
    }


def command(**fields: Any) -> dict[str, Any]:
    return {
        "type": "command",
        "command_id": UUID,
        "device_id": "boitron-01",
        "issued_at": TS,
        "expires_at": TS + 30,
        **fields,
    }


@pytest.mark.parametrize(
    "fields",
    [
        {"kind": "exit", "door": "entree"},
        {"kind": "tamper", "door": "entree"},
        {"kind": "tamper"},
        {"kind": "tamper_cleared"},
        {"kind": "lockdown", "command_id": UUID, "requested_by": "claire"},
        {"kind": "release", "command_id": UUID},
    ],
)
def test_new_event_kinds_round_trip(fields: dict[str, Any]) -> None:
    message = decode(Event, msgspec.json.encode(event(**fields)))
    assert decode(Event, encode(message)) == message


@pytest.mark.parametrize(
    ("fields", "missing"),
    [
        ({"kind": "exit"}, "door"),
        ({"kind": "lockdown"}, "command_id"),
        ({"kind": "release", "door": "entree"}, "command_id"),
    ],
)
def test_new_event_kinds_need_their_fields(fields: dict[str, Any], missing: str) -> None:
    with pytest.raises(ProtocolError, match=f"^{missing}: required") as info:
        decode(Event, msgspec.json.encode(event(**fields)))
    assert info.value.reason == "malformed"


@pytest.mark.parametrize("action", ["lockdown", "release", "send_status", "refetch_list"])
def test_unit_wide_commands_carry_no_door(action: str) -> None:
    body = decode_body(Command, msgspec.msgpack.encode(command(action=action)))
    assert (body.action, body.door) == (action, None)
    with pytest.raises(ProtocolError, match="^door: not allowed") as info:
        decode_body(Command, msgspec.msgpack.encode(command(action=action, door="entree")))
    assert info.value.reason == "malformed"


def test_unlock_still_needs_its_door() -> None:
    with pytest.raises(ProtocolError, match="^door: required"):
        decode_body(Command, msgspec.msgpack.encode(command(action="unlock")))
    body = decode_body(Command, msgspec.msgpack.encode(command(action="unlock", door="entree")))
    assert body.door == "entree"


def test_unknown_action_is_refused() -> None:
    with pytest.raises(ProtocolError) as info:
        decode_body(Command, msgspec.msgpack.encode(command(action="reboot")))
    assert info.value.reason == "malformed"


def test_exempt_is_the_last_item_of_a_list_entry_and_defaults_to_false() -> None:
    assert msgspec.msgpack.decode(encode_body(ListEntry(BADGE, 7, exempt=True)))[-1] is True
    old = msgspec.msgpack.encode([BADGE, 7, 0, None, None, None, []])  # 7 items, as before
    assert msgspec.msgpack.decode(old, type=ListEntry).exempt is False


def test_lockdown_is_the_last_deny_reason_and_a_status_field() -> None:
    assert DENY_REASONS[-1] == "lockdown"
    status = Status(device_id="boitron-01", state="online", lockdown=True)
    assert decode(Status, encode(status)).lockdown is True
    assert b"lockdown" not in encode(Status(device_id="boitron-01", state="online"))
