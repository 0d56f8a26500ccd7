"""The wire contract itself: message validation, topics and badge hashes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from protocol import badges, topics
from protocol.messages import (
    MESSAGE_TYPES,
    SCHEMA_VERSION,
    AccessList,
    AccessRequest,
    AccessResponse,
    Ack,
    BadgeGrant,
    Command,
    Event,
    ProtocolError,
    RoomInfo,
    Status,
    decode,
    encode,
    to_dict,
)
from protocol.topics import ALL_TOPICS, TopicError

HASH_A = "81be05d4f7eb3dc0b079b79c0b089e8e60187780540fb4a04afc5b04bb98e078"
HASH_B = "6e4d83760cdef17af5bb3be0c3e9d0821341d82926726c3961b569fbf403704e"
TS = 1795450123.42

SAMPLES: list[Any] = [
    Status(
        device_id="boitron-01",
        state="online",
        ts=TS,
        software_version="0.1.0",
        config_hash="3f9c2a71d04be58e",
        access_list_version=128,
        clock_synced=True,
        outbox_pending=3,
        faults=["entree: card reader: no answer"],
        doors=["entree"],
        rooms=[RoomInfo("visio", "Salle de visioconférence"), RoomInfo("bureau-2", "Bureau 2")],
    ),
    Status(device_id="boitron-01", state="offline"),
    Event(
        event_id="838e61b1-3ca3-400a-9359-a64e482d416e",
        device_id="boitron-01",
        seq=1,
        kind="access",
        ts=TS,
        clock_synced=True,
        door="entree",
        badge_hash=HASH_A,
        granted=True,
        reason="granted",
        direction="in",
        member_id=1207,
    ),
    Event(
        event_id="d74f8b54-ecf9-4757-ac5d-753b3bb92388",
        device_id="boitron-01",
        seq=2,
        kind="room",
        ts=TS,
        clock_synced=False,
        historical=True,
        room="visio",
        room_state="free",
    ),
    AccessRequest("04f0e289-154e-4c7c-a508-d553361d52ee", HASH_B, "entree", TS),
    Ack([1, 2, 3]),
    AccessList(
        version=128,
        issued_at=1795449600.0,
        centre="boitron",
        grants=[
            BadgeGrant(HASH_A, 1207, valid_until=1798070400.0),
            BadgeGrant(HASH_B, 1311, valid_from=1795478400.0, valid_until=1795564800.0),
        ],
    ),
    AccessList(version=1, issued_at=1795449600.0),
    AccessResponse(
        "04f0e289-154e-4c7c-a508-d553361d52ee",
        True,
        "granted",
        BadgeGrant(HASH_B, 1402, valid_until=1795507200.0),
    ),
    AccessResponse("32ea590e-807c-41c3-9a4c-2d5335db2814", False, "wrong_centre"),
    Command(
        "96049b0e-ab63-4899-a39a-7499a4d982a6",
        "unlock",
        "entree",
        expires_at=1795450660.0,
        ts=1795450600.0,
    ),
]


def event_dict(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "v": 1,
        "event_id": "9a80ef25-6510-47cc-9bc1-b7c69912d751",
        "device_id": "boitron-01",
        "seq": 7,
        "kind": "room",
        "ts": TS,
        "clock_synced": True,
        "room": "visio",
        "room_state": "occupied",
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def rejected(cls: type, payload: Any) -> str:
    if not isinstance(payload, str | bytes):
        payload = json.dumps(payload)
    with pytest.raises(ProtocolError) as info:
        decode(cls, payload)
    return str(info.value)


# --- encode / decode ----------------------------------------------------------------------------


def test_samples_cover_every_message_type() -> None:
    assert {type(m).__name__ for m in SAMPLES} == set(MESSAGE_TYPES)


@pytest.mark.parametrize("message", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(message: Any) -> None:
    payload = encode(message)
    assert json.loads(payload)["v"] == SCHEMA_VERSION
    assert decode(type(message), payload) == message
    assert decode(type(message), payload.decode()) == message


def test_unset_optional_fields_are_left_out() -> None:
    assert json.loads(encode(Status(device_id="boitron-01", state="offline"))) == {
        "v": 1,
        "device_id": "boitron-01",
        "state": "offline",
    }


def test_null_is_accepted_for_an_optional_field() -> None:
    status = decode(Status, '{"v": 1, "device_id": "boitron-01", "state": "online", "ts": null}')
    assert status.ts is None


def test_integer_accepted_where_a_number_is_expected() -> None:
    request = decode(
        AccessRequest,
        json.dumps(
            {"v": 1, "request_id": "r", "badge_hash": HASH_A, "door": "entree", "ts": 1795450000}
        ),
    )
    assert request.ts == 1795450000.0
    assert isinstance(request.ts, float)


def test_non_ascii_survives() -> None:
    room = RoomInfo("visio", "Salle de visioconférence")
    status = Status(device_id="belleme-01", state="online", rooms=[room])
    assert decode(Status, encode(status)).rooms == [room]


# --- rejection ----------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", ["{", "", "not json", b"\xff\xfe{}"])
def test_malformed_payload(payload: str | bytes) -> None:
    assert rejected(Ack, payload).startswith("payload: ")


@pytest.mark.parametrize("payload", ["[1, 2]", '"ack"', "42", "null"])
def test_not_an_object(payload: str) -> None:
    assert "expected a JSON object" in rejected(Ack, payload)


@pytest.mark.parametrize("version", [None, 0, 2, "1"])
def test_other_schema_version(version: Any) -> None:
    body: dict[str, Any] = {"seqs": [1]}
    if version is not None:
        body["v"] = version
    assert rejected(Ack, body).startswith("v: ")


def test_oversized_payload() -> None:
    from protocol.messages import MAX_PAYLOAD_BYTES

    assert "exceeds" in rejected(Ack, b" " * (MAX_PAYLOAD_BYTES + 1))


def test_missing_required_field() -> None:
    assert rejected(Ack, {"v": 1}) == "seqs: required field missing"


def test_unknown_field() -> None:
    error = rejected(Ack, {"v": 1, "seqs": [1], "extra": True})
    assert error.startswith("extra: unknown field")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"v": 1, "seqs": "1"}, "seqs"),
        ({"v": 1, "seqs": [1, "2"]}, "seqs[1]"),
        ({"v": 1, "seqs": [1.5]}, "seqs[0]"),
        ({"v": 1, "seqs": [True]}, "seqs[0]"),
    ],
)
def test_wrong_type(body: dict[str, Any], field: str) -> None:
    assert rejected(Ack, body).startswith(f"{field}: ")


def test_boolean_is_not_a_number() -> None:
    body = {"v": 1, "request_id": "r", "badge_hash": HASH_A, "door": "entree", "ts": True}
    assert rejected(AccessRequest, body).startswith("ts: ")


def test_error_names_nested_list_item_field() -> None:
    body = {
        "v": 1,
        "version": 3,
        "issued_at": 1795449600.0,
        "grants": [{"badge_hash": 12, "member_id": 1207}],
    }
    assert rejected(AccessList, body).startswith("grants[0].badge_hash: ")
    body["grants"] = [{"badge_hash": HASH_A, "member_id": 1}, {"member_id": 2}]
    assert rejected(AccessList, body) == "grants[1].badge_hash: required field missing"


def test_error_names_nested_object_field() -> None:
    body = {
        "v": 1,
        "request_id": "r",
        "granted": True,
        "reason": "granted",
        "grant": {"badge_hash": HASH_A, "member_id": "1207"},
    }
    assert rejected(AccessResponse, body).startswith("grant.member_id: ")
    body["grant"] = {"badge_hash": HASH_A, "member_id": 1207, "colour": "red"}
    assert rejected(AccessResponse, body).startswith("grant.colour: unknown field")


def test_error_names_optional_nested_list_field() -> None:
    body = {"v": 1, "device_id": "boitron-01", "state": "online", "rooms": [{"id": "visio"}]}
    assert rejected(Status, body) == "rooms[0].name: required field missing"


def test_literal_values_are_checked() -> None:
    assert rejected(Status, {"v": 1, "device_id": "boitron-01", "state": "asleep"}).startswith(
        "state: "
    )
    assert rejected(Event, event_dict(kind="fire")).startswith("kind: ")
    assert rejected(Event, event_dict(room_state="busy")).startswith("room_state: ")
    command = {
        "v": 1,
        "command_id": "c",
        "action": "lockdown",
        "door": "entree",
        "expires_at": TS + 60,
        "ts": TS,
    }
    assert rejected(Command, command).startswith("action: ")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"room_state": None}, "room_state"),
        ({"room": None}, "room"),
        ({"kind": "door_forced", "room": None, "room_state": None}, "door"),
        ({"kind": "unlock", "room": None, "room_state": None}, "door"),
        (
            {
                "kind": "access",
                "room": None,
                "room_state": None,
                "door": "entree",
                "badge_hash": HASH_A,
                "granted": False,
            },
            "reason",
        ),
    ],
)
def test_event_kind_requires_its_fields(changes: dict[str, Any], field: str) -> None:
    error = rejected(Event, event_dict(**changes))
    assert error.startswith(f"{field}: required when kind is")


def test_granted_access_needs_a_direction() -> None:
    body = event_dict(
        kind="access",
        room=None,
        room_state=None,
        door="entree",
        badge_hash=HASH_A,
        granted=True,
        reason="granted",
        member_id=1207,
    )
    assert rejected(Event, body).startswith("direction: ")
    body["direction"] = "in"
    assert decode(Event, json.dumps(body)).direction == "in"


def test_denied_access_needs_no_direction() -> None:
    body = event_dict(
        kind="access",
        room=None,
        room_state=None,
        door="entree",
        badge_hash=HASH_A,
        granted=False,
        reason="server_timeout",
    )
    assert decode(Event, json.dumps(body)).direction is None


@pytest.mark.parametrize("seq", [0, -1])
def test_event_seq_starts_at_one(seq: int) -> None:
    assert rejected(Event, event_dict(seq=seq)).startswith("seq: ")


def test_historical_defaults_to_false() -> None:
    assert decode(Event, json.dumps(event_dict())).historical is False


def test_every_message_type_rejects_an_empty_object() -> None:
    for name, cls in MESSAGE_TYPES.items():
        error = rejected(cls, {"v": 1})
        assert error.endswith("required field missing"), name


def test_to_dict_puts_version_first() -> None:
    assert next(iter(to_dict(Ack([1])))) == "v"


# --- topics -------------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ALL_TOPICS, ids=lambda s: s.leaf)
def test_topic_round_trip(spec: topics.TopicSpec) -> None:
    name = topics.topic(spec, "boitron-01")
    assert name == f"telecentre/boitron-01/{spec.leaf}"
    assert topics.parse(name) == topics.ParsedTopic("boitron-01", spec)


def test_subscriptions() -> None:
    assert topics.subscription(topics.EVENT) == "telecentre/+/event"
    assert sorted(topics.device_subscriptions("boitron-01")) == [
        "telecentre/boitron-01/access/list",
        "telecentre/boitron-01/access/response",
        "telecentre/boitron-01/ack",
        "telecentre/boitron-01/command",
    ]


def test_leaves_are_unique() -> None:
    leaves = [spec.leaf for spec in ALL_TOPICS]
    assert len(leaves) == len(set(leaves))


def test_commands_are_never_retained() -> None:
    assert not topics.COMMAND.retain
    assert topics.STATUS.retain and topics.ACCESS_LIST.retain


@pytest.mark.parametrize(
    "name",
    [
        "other/boitron-01/status",
        "telecentre/boitron-01",
        "telecentre/boitron-01/",
        "telecentre/boitron-01/unknown",
        "telecentre/boitron-01/status/extra",
        "telecentre/boitron-01/access",
        "telecentre/+/status",
        "telecentre/Boitron-01/status",
        "telecentre//status",
        "Telecentre/boitron-01/status",
        "",
    ],
)
def test_foreign_topic_rejected(name: str) -> None:
    with pytest.raises(TopicError):
        topics.parse(name)


@pytest.mark.parametrize("device_id", ["boitron-01", "b", "0", "pays-de-camembert-01", "a" * 63])
def test_good_device_ids(device_id: str) -> None:
    assert topics.validate_device_id(device_id) == device_id


@pytest.mark.parametrize(
    "device_id",
    [
        "",
        "-boitron",
        "Boitron-01",
        "boitron_01",
        "boitron 01",
        "boitron/01",
        "boitron+",
        "boitron#",
        "a" * 64,
        "boîtron",
        None,
        42,
    ],
)
def test_bad_device_ids(device_id: Any) -> None:
    with pytest.raises(TopicError):
        topics.validate_device_id(device_id)
    if isinstance(device_id, str):
        with pytest.raises(TopicError):
            topics.topic(topics.STATUS, device_id)


# --- badges -------------------------------------------------------------------------------------

KEY_1 = bytes(range(32))
KEY_2 = bytes(range(1, 33))
UID = bytes.fromhex("04a1b2c3")


def test_badge_hash_is_keyed() -> None:
    h1 = badges.badge_hash(KEY_1, UID)
    assert h1 == badges.badge_hash(KEY_1, UID)
    assert h1 != badges.badge_hash(KEY_2, UID)
    assert h1 != badges.badge_hash(KEY_1, bytes.fromhex("04a1b2c4"))
    assert len(h1) == 64 and h1 == h1.lower()
    int(h1, 16)


def test_badge_hash_is_hmac_sha256() -> None:
    import hashlib
    import hmac

    assert badges.badge_hash(KEY_1, UID) == hmac.new(KEY_1, UID, hashlib.sha256).hexdigest()
    assert badges.badge_hash(KEY_1, UID) != hashlib.sha256(UID).hexdigest()


@pytest.mark.parametrize(
    "text", ["04:a1:b2:c3", "04:A1:B2:C3", "04a1b2c3", "04-a1-b2-c3", "04 a1 b2 c3"]
)
def test_parse_uid(text: str) -> None:
    assert badges.parse_uid(text) == UID


def test_parse_uid_seven_bytes() -> None:
    assert badges.parse_uid("04:d5:e6:f7:a8:b9:80") == bytes.fromhex("04d5e6f7a8b980")


@pytest.mark.parametrize(
    "text", ["zz", "", "04:a1:b2", "04:a1:b2:c", "04a1b2c3zz", "0x04a1b2c3", "00" * 11]
)
def test_parse_uid_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="uid"):
        badges.parse_uid(text)


def test_parse_key() -> None:
    assert badges.parse_key(KEY_1.hex() + "\n") == KEY_1
    assert badges.parse_key(KEY_1.hex().upper()) == KEY_1
    for bad in ["", KEY_1.hex()[:-2], KEY_1.hex() + "00", "g" * 64]:
        with pytest.raises(ValueError, match="badge key"):
            badges.parse_key(bad)
