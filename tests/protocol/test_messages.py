"""The wire contract itself (schema v2): messages and their bounds, signatures, topics,
access-list snapshots and deltas, worker threads and badge hashes.

Every refusal must be a ``ProtocolError`` with the right ``reason`` and nothing else: a
receiver counts rejections by reason, and any other exception would reach paho's thread.
(hypothesis is not installed in the venv, so the hostile inputs are a table of cases.)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from protocol import badges, lists, topics, workers
from protocol.errors import REJECT_REASONS, ProtocolError
from protocol.messages import (
    DAY_PASS,
    INT64_MAX,
    MAX_EDGE_PAYLOAD_BYTES,
    MAX_PAYLOAD_BYTES,
    MESSAGE_TYPES,
    REVOKED,
    SCHEMA_VERSION,
    SIGNED_TYPES,
    SUBSCRIPTION,
    SUSPENDED,
    WINDOW,
    AccessRequest,
    AccessResponse,
    Ack,
    CentreHours,
    Command,
    CommandResult,
    DoorHealth,
    Event,
    EventHeader,
    Health,
    ListDelta,
    ListEntry,
    ListHead,
    ListSegment,
    PlanRule,
    Rejected,
    RoomInfo,
    ServerStatus,
    Status,
    WorkerInfo,
    decode,
    decode_body,
    encode,
    encode_body,
    new_event_id,
    to_builtins,
)
from protocol.signing import Envelope, Signer, SigningKeyError, Verifier, key_id
from protocol.topics import ALL_TOPICS, Scope, TopicError

HASH_A = "81be05d4f7eb3dc0b079b79c0b089e8e60187780540fb4a04afc5b04bb98e078"
HASH_B = "6e4d83760cdef17af5bb3be0c3e9d0821341d82926726c3961b569fbf403704e"
BADGE_A = bytes.fromhex(HASH_A)
BADGE_B = bytes.fromhex(HASH_B)
EPOCH = "65f000177e6c8287dd4ba5e64b59a1fc"
UUID_1 = "838e61b1-3ca3-400a-9359-a64e482d416e"
UUID_2 = "96049b0e-ab63-4899-a39a-7499a4d982a6"
TS = 1795450123.42
VERSION = 1795449600123

JSON_SAMPLES: list[Any] = [
    Status(
        device_id="boitron-01",
        state="online",
        centre="boitron",
        ts=TS,
        software_version="0.2.0",
        config_hash="3f9c2a71d04be58e",
        list_version=VERSION,
        clock_synced=True,
        outbox_pending=3,
        outbox_rejected=1,
        faults=["entree: card reader: no answer"],
        doors=["entree"],
        rooms=[RoomInfo(id="visio", name="Salle de visioconférence")],
        workers=[WorkerInfo(name="publisher", alive=True, errors=2)],
        rejected={"unknown_key": 3},
    ),
    Status(device_id="boitron-01", state="offline"),
    Health(
        device_id="boitron-01",
        ts=TS,
        interval_s=10.0,
        uptime_s=3600.5,
        condition="degraded",
        reasons=["entree: card reader: no answer"],
        outbox_pending=3,
        outbox_oldest_age_s=12.5,
        list_version=VERSION,
        list_age_s=600.0,
        cpu_temp_c=48.3,
        disk_free_mb=5120,
        clock_synced=True,
        lockdown=False,
        doors=[
            DoorHealth(id="entree", reader="fault", exit_reader="ok", relay="locked"),
            DoorHealth(id="jardin", reader="ok", relay="unlocked", contact="open"),
        ],
        workers=[WorkerInfo(name="publisher", alive=True)],
    ),
    Event(
        event_id=UUID_1,
        device_id="boitron-01",
        epoch=EPOCH,
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
        event_id=UUID_1,
        device_id="boitron-01",
        epoch=EPOCH,
        seq=2,
        kind="room",
        ts=TS,
        clock_synced=False,
        historical=True,
        room="visio",
        room_state="free",
    ),
    Event(
        event_id=UUID_2,
        device_id="boitron-01",
        epoch=EPOCH,
        seq=INT64_MAX,
        kind="unlock",
        ts=TS,
        clock_synced=True,
        door="entree",
        reason="remote",
        command_id=UUID_2,
        requested_by="claire.martin@telecentres-orne.fr",
    ),
    AccessRequest(request_id=UUID_1, badge_hash=HASH_B, door="entree", ts=TS),
    CommandResult(command_id=UUID_2, device_id="boitron-01", result="executed", ts=TS),
    CommandResult(
        command_id=UUID_2, device_id="boitron-01", result="refused", reason="expired", ts=TS
    ),
    ServerStatus(state="online", instance=UUID_1, ts=TS),
    ServerStatus(state="offline", instance=UUID_1),
]

ENTRY_A = ListEntry(BADGE_A, 1207, valid_until=1798070400.0)
ENTRY_B = ListEntry(BADGE_B, 1311, REVOKED, 1795478400.0, 1795564800.0)

SIGNED_SAMPLES: list[Any] = [
    Ack(
        device_id="boitron-01",
        epoch=EPOCH,
        seqs=[1, 2, 3],
        rejected=[Rejected(4, "malformed")],
        issued_at=TS,
    ),
    Ack(device_id="boitron-01", epoch=EPOCH, issued_at=TS),
    AccessResponse(
        request_id=UUID_1,
        device_id="boitron-01",
        badge_hash=HASH_A,
        granted=True,
        reason="granted",
        entry=ENTRY_A,
        issued_at=TS,
    ),
    AccessResponse(
        request_id=UUID_1,
        device_id="boitron-01",
        badge_hash=HASH_B,
        granted=False,
        reason="wrong_centre",
        issued_at=TS,
    ),
    Command(
        command_id=UUID_2,
        device_id="boitron-01",
        action="unlock",
        door="entree",
        issued_at=TS,
        expires_at=TS + 30,
        requested_by="claire.martin@telecentres-orne.fr",
        reason="Livreur bloqué à l'entrée",
    ),
    ListHead(centre="boitron", version=VERSION, segments=1, entries=2, issued_at=TS),
    ListHead(
        centre="boitron",
        version=VERSION,
        segments=1,
        entries=3,
        issued_at=TS,
        calendar=CentreHours(
            "Europe/Paris", [[(510, 1080)]] * 5 + [[], []], closed=[740000], holidays=[739975]
        ),
    ),
    ListSegment(
        centre="boitron",
        version=VERSION,
        index=0,
        segments=1,
        entries=[ENTRY_A, ENTRY_B],
        issued_at=TS,
    ),
    ListDelta(
        centre="boitron",
        base=VERSION,
        version=VERSION + 1,
        upsert=[
            ListEntry(BADGE_A, 1207, SUSPENDED),
            ListEntry(
                BADGE_B,
                1208,
                plans=[
                    PlanRule(SUBSCRIPTION, TS, TS + 86400 * 30, WINDOW, [(0, 480, 1200)]),
                    PlanRule(DAY_PASS, credits=4),
                ],
                days=[740001],
            ),
        ],
        remove=[BADGE_B],
        issued_at=TS,
    ),
    ListDelta(centre="boitron", base=VERSION, version=VERSION, issued_at=TS),
]

SIGNER = Signer.generate()
VERIFIER = Verifier([SIGNER.public_hex])


def refused(fn: Callable[[], Any]) -> ProtocolError:
    """Run ``fn``; it must raise ProtocolError and nothing else."""
    try:
        fn()
    except ProtocolError as exc:
        assert exc.reason in REJECT_REASONS
        return exc
    except BaseException as exc:  # noqa: BLE001 - anything else is the bug under test
        pytest.fail(f"raised {type(exc).__name__} instead of ProtocolError: {exc}"[:300])
    pytest.fail("accepted")


def json_refused(cls: type, payload: Any, **kw: Any) -> ProtocolError:
    if not isinstance(payload, str | bytes):
        payload = json.dumps(payload)
    return refused(lambda: decode(cls, payload, **kw))


def status(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"v": 2, "device_id": "boitron-01", "state": "online"}
    body.update(changes)
    return body


def event(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "v": 2,
        "event_id": "9a80ef25-6510-47cc-9bc1-b7c69912d751",
        "device_id": "boitron-01",
        "epoch": EPOCH,
        "seq": 7,
        "kind": "room",
        "ts": TS,
        "clock_synced": True,
        "room": "visio",
        "room_state": "occupied",
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


def request(**changes: Any) -> dict[str, Any]:
    body = {"v": 2, "request_id": UUID_1, "badge_hash": HASH_A, "door": "entree", "ts": TS}
    body.update(changes)
    return body


def raw_json(prefix: bytes, value: bytes, suffix: bytes = b"}") -> bytes:
    return prefix + value + suffix


def packed_body(**fields: Any) -> bytes:
    return msgspec.msgpack.encode(fields)


# --- round trips -------------------------------------------------------------------------------


def test_samples_cover_every_message_type() -> None:
    covered: set[str] = set()

    def visit(value: Any) -> None:
        if isinstance(value, msgspec.Struct):
            covered.add(type(value).__name__)
            for f in msgspec.structs.fields(value):
                visit(getattr(value, f.name))
        elif isinstance(value, list):
            for v in value:
                visit(v)

    for message in (*JSON_SAMPLES, *SIGNED_SAMPLES):
        visit(message)
    assert covered == set(MESSAGE_TYPES)


@pytest.mark.parametrize("message", JSON_SAMPLES, ids=lambda m: type(m).__name__)
def test_json_round_trip(message: Any) -> None:
    payload = encode(message)
    assert payload.startswith(b'{"v":2,')
    assert next(iter(json.loads(payload))) == "v"
    assert decode(type(message), payload) == message
    assert decode(type(message), payload.decode()) == message
    assert decode(type(message), payload, limit=MAX_EDGE_PAYLOAD_BYTES) == message


@pytest.mark.parametrize("message", SIGNED_SAMPLES, ids=lambda m: type(m).__name__)
def test_signed_round_trip(message: Any) -> None:
    cls = type(message)
    body = encode_body(message)
    assert msgspec.msgpack.decode(body)["type"] == msgspec.inspect.type_info(cls).tag
    assert decode_body(cls, body) == message
    assert VERIFIER.open(cls, SIGNER.sign(message)) == message


def test_list_entry_and_rejected_travel_as_arrays() -> None:
    body = msgspec.msgpack.decode(encode_body(SIGNED_SAMPLES[0]))
    assert body["rejected"] == [[4, "malformed"]]
    segment = msgspec.msgpack.decode(encode_body(SIGNED_SAMPLES[7]))
    assert segment["entries"][0] == [BADGE_A, 1207, 0, None, 1798070400.0, None, [], False]
    assert ENTRY_A.badge_hash == HASH_A


def test_unset_optional_fields_are_left_out() -> None:
    assert json.loads(encode(Status(device_id="boitron-01", state="offline"))) == {
        "v": 2,
        "device_id": "boitron-01",
        "state": "offline",
    }


def test_null_is_accepted_for_an_optional_field() -> None:
    assert decode(Status, json.dumps(status(ts=None))).ts is None


def test_integer_accepted_where_a_number_is_expected() -> None:
    message = decode(AccessRequest, json.dumps(request(ts=1795450000)))
    assert message.ts == 1795450000.0 and isinstance(message.ts, float)


def test_bounds_are_inclusive() -> None:
    assert decode(Status, json.dumps(status(outbox_pending=INT64_MAX))).outbox_pending == INT64_MAX
    assert decode(Event, json.dumps(event(seq=INT64_MAX))).seq == INT64_MAX
    assert decode(Status, json.dumps(status(device_id="a" * 63))).device_id == "a" * 63


def test_event_header_reads_epoch_and_seq_of_a_bad_event() -> None:
    payload = json.dumps(event(kind="fire"))
    json_refused(Event, payload)
    header = msgspec.json.decode(payload, type=EventHeader)
    assert (header.epoch, header.seq) == (EPOCH, 7)


def test_to_builtins() -> None:
    assert to_builtins(SIGNED_SAMPLES[5])["type"] == "list_head"


# --- hostile and out-of-bounds JSON ------------------------------------------------------------

DEEP = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
DIGITS = b"9" * 5000
HUGE = b"a" * (8 * 1024 * 1024)
ONLINE = b'{"v":2,"device_id":"boitron-01","state":"online",'

# (id, message type, payload, reason)
BAD_JSON: list[tuple[str, type, Any, str]] = [
    # integers beyond signed 64-bit, and negative or zero where a positive one is needed
    ("int64+1", Status, status(outbox_pending=2**63), "malformed"),
    ("uint64+1", Status, status(outbox_pending=2**64), "malformed"),
    ("int-negative-count", Status, status(outbox_pending=-1), "malformed"),
    ("seq-int64+1", Event, event(seq=2**63), "malformed"),
    ("seq-negative", Event, event(seq=-1), "malformed"),
    ("seq-zero", Event, event(seq=0), "malformed"),
    ("member-id-zero", Event, event(member_id=0), "malformed"),
    ("list-version-zero", Status, status(list_version=0), "malformed"),
    ("oldest-ts-negative", Status, status(outbox_oldest_ts=-1.0), "malformed"),
    ("oldest-ts-year-5138", Status, status(outbox_oldest_ts=2e11), "malformed"),
    # huge strings
    ("8MB-string", Status, raw_json(ONLINE + b'"software_version":"', HUGE, b'"}'), "too_large"),
    ("8MB-edge-limit", Status, raw_json(b'{"v":2,"device_id":"', HUGE, b'"}'), "too_large"),
    ("65-KiB-string", Status, status(faults=["x" * 200] * 32 + ["y" * 66_000]), "too_large"),
    # deep nesting
    ("deep-top", Status, DEEP, "malformed"),
    ("deep-unknown-field", Status, raw_json(b'{"v":2,"x":', DEEP), "malformed"),
    ("deep-known-field", Status, raw_json(ONLINE + b'"faults":', DEEP), "malformed"),
    ("deep-before-v", Status, raw_json(b'{"faults":', DEEP + b',"v":2'), "malformed"),
    ("deep-object", Status, raw_json(b'{"v":2,"x":', DEEP_OBJECT), "malformed"),
    # numbers with 5,000 digits
    ("digits-int", Status, raw_json(ONLINE + b'"outbox_pending":', DIGITS), "malformed"),
    ("digits-float", Status, raw_json(ONLINE + b'"ts":', DIGITS), "malformed"),
    ("digits-exponent", Status, raw_json(ONLINE + b'"ts":1e', DIGITS), "malformed"),
    ("digits-v", Status, raw_json(b'{"v":', DIGITS), "malformed"),
    ("digits-unknown", Status, raw_json(b'{"v":2,"x":', DIGITS), "malformed"),
    ("ts-too-far", Status, status(ts=1e12), "malformed"),
    ("ts-negative", Status, status(ts=-1.0), "malformed"),
    # NaN and infinity tokens
    ("NaN", Status, raw_json(ONLINE + b'"ts":', b"NaN"), "malformed"),
    ("Infinity", Status, raw_json(ONLINE + b'"ts":', b"Infinity"), "malformed"),
    ("-Infinity", Status, raw_json(ONLINE + b'"ts":', b"-Infinity"), "malformed"),
    ("nan", Status, raw_json(ONLINE + b'"ts":', b"nan"), "malformed"),
    # not JSON, not an object, not UTF-8
    ("empty", Status, b"", "malformed"),
    ("truncated", Status, b'{"v":2', "malformed"),
    ("not-json", Status, b"not json", "malformed"),
    ("array", Status, b"[1, 2]", "malformed"),
    ("string", Status, b'"status"', "malformed"),
    ("null", Status, b"null", "malformed"),
    (
        "bad-utf8",
        Status,
        raw_json(ONLINE + b'"software_version":"', b"\xff\xfe", b'"}'),
        "malformed",
    ),
    (
        "lone-surrogate",
        Status,
        raw_json(ONLINE + b'"software_version":"', b"\\ud800", b'"}'),
        "malformed",
    ),
    ("msgpack", Status, encode_body(SIGNED_SAMPLES[0]), "malformed"),
    # unknown fields
    ("unknown", Status, status(colour="red"), "malformed"),
    ("unknown-nested", Status, status(rooms=[{"id": "visio", "name": "V", "x": 1}]), "malformed"),
    (
        "unknown-worker",
        Status,
        status(workers=[{"name": "p", "alive": True, "pid": 3}]),
        "malformed",
    ),
    ("type-tag-in-json", Status, status(type="status"), "malformed"),
    # wrong types
    ("seq-string", Event, event(seq="7"), "malformed"),
    ("seq-float", Event, event(seq=7.5), "malformed"),
    ("seq-bool", Event, event(seq=True), "malformed"),
    ("ts-bool", AccessRequest, request(ts=True), "malformed"),
    ("ts-string", AccessRequest, request(ts="1795450000"), "malformed"),
    ("state-int", Status, status(state=1), "malformed"),
    ("state-other", Status, status(state="asleep"), "malformed"),
    ("rooms-object", Status, status(rooms={"id": "visio"}), "malformed"),
    ("rooms-missing-name", Status, status(rooms=[{"id": "visio"}]), "malformed"),
    ("faults-not-strings", Status, status(faults=[1]), "malformed"),
    ("rejected-bad-key", Status, status(rejected={"Not A Reason": 1}), "malformed"),
    ("rejected-negative", Status, status(rejected={"replayed": -1}), "malformed"),
    ("kind-other", Event, event(kind="fire"), "malformed"),
    ("room-state-other", Event, event(room_state="busy"), "malformed"),
    (
        "granted-string",
        Event,
        event(kind="access", door="entree", badge_hash=HASH_A, granted="no", reason="revoked"),
        "malformed",
    ),
    # badge hashes
    ("badge-uppercase", AccessRequest, request(badge_hash=HASH_A.upper()), "malformed"),
    ("badge-63", AccessRequest, request(badge_hash=HASH_A[:63]), "malformed"),
    ("badge-65", AccessRequest, request(badge_hash=HASH_A + "0"), "malformed"),
    ("badge-not-hex", AccessRequest, request(badge_hash="g" * 64), "malformed"),
    ("badge-bytes-list", AccessRequest, request(badge_hash=list(BADGE_A)), "malformed"),
    # ids not matching their pattern
    ("device-upper", Status, status(device_id="Boitron-01"), "malformed"),
    ("device-dash-first", Status, status(device_id="-boitron"), "malformed"),
    ("device-64", Status, status(device_id="a" * 64), "malformed"),
    ("device-underscore", Status, status(device_id="_server"), "malformed"),
    ("device-slash", Status, status(device_id="boitron/01"), "malformed"),
    ("device-wildcard", Status, status(device_id="boitron+"), "malformed"),
    ("device-empty", Status, status(device_id=""), "malformed"),
    ("centre-upper", Status, status(centre="Boitron"), "malformed"),
    ("uuid-upper", AccessRequest, request(request_id=UUID_1.upper()), "malformed"),
    ("uuid-plain", AccessRequest, request(request_id="r"), "malformed"),
    ("epoch-31", Event, event(epoch=EPOCH[:31]), "malformed"),
    ("door-upper", AccessRequest, request(door="Entree"), "malformed"),
    ("door-33", AccessRequest, request(door="d" * 33), "malformed"),
    ("room-space", Event, event(room="salle visio"), "malformed"),
    (
        "reason-upper",
        Event,
        event(kind="access", door="entree", badge_hash=HASH_A, granted=False, reason="Revoked"),
        "malformed",
    ),
    (
        "requested-by-space",
        Event,
        event(kind="unlock", door="entree", command_id=UUID_2, requested_by="claire martin"),
        "malformed",
    ),
    ("config-hash-upper", Status, status(config_hash="3F9C"), "malformed"),
    ("software-version-empty", Status, status(software_version=""), "malformed"),
    ("software-version-65", Status, status(software_version="v" * 65), "malformed"),
    ("room-name-201", Status, status(rooms=[{"id": "visio", "name": "n" * 201}]), "malformed"),
    # list lengths
    ("faults-33", Status, status(faults=["f"] * 33), "malformed"),
    ("doors-17", Status, status(doors=[f"d{i}" for i in range(17)]), "malformed"),
    (
        "rooms-33",
        Status,
        status(rooms=[{"id": f"r{i}", "name": "R"} for i in range(33)]),
        "malformed",
    ),
    (
        "workers-33",
        Status,
        status(workers=[{"name": f"w{i}", "alive": True} for i in range(33)]),
        "malformed",
    ),
    # rules tying fields together
    ("room-without-state", Event, event(room_state=None), "malformed"),
    (
        "door-forced-without-door",
        Event,
        event(kind="door_forced", room=None, room_state=None),
        "malformed",
    ),
    (
        "unlock-without-command",
        Event,
        event(kind="unlock", room=None, room_state=None, door="entree"),
        "malformed",
    ),
    (
        "access-without-reason",
        Event,
        event(
            kind="access",
            room=None,
            room_state=None,
            door="entree",
            badge_hash=HASH_A,
            granted=False,
        ),
        "malformed",
    ),
    (
        "granted-without-direction",
        Event,
        event(
            kind="access",
            room=None,
            room_state=None,
            door="entree",
            badge_hash=HASH_A,
            granted=True,
            reason="granted",
        ),
        "malformed",
    ),
    (
        "refused-without-reason",
        CommandResult,
        {"v": 2, "command_id": UUID_2, "device_id": "boitron-01", "result": "refused", "ts": TS},
        "malformed",
    ),
    (
        "server-status-bad-instance",
        ServerStatus,
        {"v": 2, "state": "online", "instance": "server-1"},
        "malformed",
    ),
]


@pytest.mark.parametrize(
    ("cls", "payload", "reason"), [pytest.param(*case[1:], id=case[0]) for case in BAD_JSON]
)
def test_bad_json_is_refused_with_its_reason(cls: type, payload: Any, reason: str) -> None:
    limit = MAX_EDGE_PAYLOAD_BYTES if isinstance(payload, dict) else MAX_PAYLOAD_BYTES
    assert json_refused(cls, payload, limit=limit).reason == reason


def test_huge_string_within_a_large_limit_is_malformed() -> None:
    payload = raw_json(b'{"v":2,"device_id":"', HUGE, b'","state":"online"}')
    assert json_refused(Status, payload, limit=16 * 1024 * 1024).reason == "malformed"


def test_edge_limit_is_used_by_the_server() -> None:
    payload = json.dumps(status(faults=["f" * 200] * 32)).encode() + b" " * MAX_EDGE_PAYLOAD_BYTES
    assert json_refused(Status, payload, limit=MAX_EDGE_PAYLOAD_BYTES).reason == "too_large"


def test_error_names_the_field() -> None:
    assert str(json_refused(Event, event(seq=0))).startswith("seq: ")
    assert str(json_refused(Status, status(rooms=[{"id": 1, "name": "V"}]))).startswith(
        "rooms[0].id: "
    )
    assert "room_state" in str(json_refused(Event, event(room_state=None)))


def test_every_json_type_rejects_an_empty_object() -> None:
    for cls in (Status, Event, AccessRequest, CommandResult, ServerStatus):
        assert json_refused(cls, {"v": 2}).reason == "malformed", cls.__name__


# --- version ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "reason"),
    [
        (None, "malformed"),  # missing
        (1, "bad_version"),
        (3, "bad_version"),
        (0, "bad_version"),
        (2**70, "bad_version"),
        (True, "malformed"),
        ("2", "malformed"),
        (2.0, "malformed"),
    ],
    ids=["missing", "1", "3", "0", "huge", "true", "string", "float"],
)
@pytest.mark.parametrize("cls", [Status, ServerStatus], ids=lambda c: c.__name__)
def test_schema_version(cls: type, version: Any, reason: str) -> None:
    sample = next(m for m in JSON_SAMPLES if type(m) is cls)
    body = json.loads(encode(sample))
    del body["v"]
    if version is not None:
        body["v"] = version
    error = json_refused(cls, body)
    assert error.reason == reason
    assert "v" in str(error)


def test_version_one_payload_of_the_old_contract() -> None:
    old = {"v": 1, "seqs": [41, 42, 43]}
    assert json_refused(Status, old).reason == "bad_version"


def test_a_message_cannot_carry_another_version() -> None:
    with pytest.raises(ProtocolError) as info:
        Status(v=1, device_id="boitron-01", state="online")
    assert info.value.reason == "bad_version"


# --- signed bodies ----------------------------------------------------------------------------

ACK_FIELDS: dict[str, Any] = {
    "type": "ack",
    "device_id": "boitron-01",
    "epoch": EPOCH,
    "issued_at": TS,
}
ENTRY = [BADGE_A, 1207, 0, None, None]
SEGMENT_FIELDS: dict[str, Any] = {
    "type": "list_segment",
    "centre": "boitron",
    "version": VERSION,
    "index": 0,
    "segments": 1,
    "entries": [ENTRY],
    "issued_at": TS,
}
DELTA_FIELDS: dict[str, Any] = {
    "type": "list_delta",
    "centre": "boitron",
    "base": VERSION,
    "version": VERSION + 1,
    "issued_at": TS,
}
RESPONSE_FIELDS: dict[str, Any] = {
    "type": "access_response",
    "request_id": UUID_1,
    "device_id": "boitron-01",
    "badge_hash": HASH_A,
    "granted": True,
    "reason": "granted",
    "entry": ENTRY,
    "issued_at": TS,
}


def with_(base: dict[str, Any], **changes: Any) -> bytes:
    return packed_body(**{**base, **changes})


BAD_BODIES: list[tuple[str, type, bytes, str]] = [
    ("ack-as-command", Command, encode_body(SIGNED_SAMPLES[0]), "wrong_type"),
    ("unknown-type", Ack, with_(ACK_FIELDS, type="reboot"), "wrong_type"),
    ("type-int", Ack, with_(ACK_FIELDS, type=1), "malformed"),
    ("no-type", Ack, packed_body(device_id="boitron-01", epoch=EPOCH, issued_at=TS), "malformed"),
    ("unknown-field", Ack, with_(ACK_FIELDS, extra=1), "malformed"),
    ("seq-zero", Ack, with_(ACK_FIELDS, seqs=[0]), "malformed"),
    ("seq-int64+1", Ack, with_(ACK_FIELDS, seqs=[2**63]), "malformed"),
    ("seqs-10001", Ack, with_(ACK_FIELDS, seqs=[1] * 10_001), "malformed"),
    ("rejected-as-map", Ack, with_(ACK_FIELDS, rejected=[{"seq": 1, "reason": "x"}]), "malformed"),
    ("device-upper", Ack, with_(ACK_FIELDS, device_id="BOITRON-01"), "malformed"),
    (
        "badge-31-bytes",
        ListSegment,
        with_(SEGMENT_FIELDS, entries=[[BADGE_A[:31], 1]]),
        "malformed",
    ),
    ("badge-hex-string", ListSegment, with_(SEGMENT_FIELDS, entries=[[HASH_A, 1]]), "malformed"),
    ("state-3", ListSegment, with_(SEGMENT_FIELDS, entries=[[BADGE_A, 1, 3]]), "malformed"),
    ("entry-6-items", ListSegment, with_(SEGMENT_FIELDS, entries=[[*ENTRY, 1]]), "malformed"),
    ("entry-member-0", ListSegment, with_(SEGMENT_FIELDS, entries=[[BADGE_A, 0]]), "malformed"),
    ("segments-0", ListSegment, with_(SEGMENT_FIELDS, segments=0), "malformed"),
    ("index-4096", ListSegment, with_(SEGMENT_FIELDS, index=4096), "malformed"),
    ("entries-20001", ListSegment, with_(SEGMENT_FIELDS, entries=[ENTRY] * 20_001), "malformed"),
    ("centre-underscore", ListSegment, with_(SEGMENT_FIELDS, centre="_server"), "malformed"),
    ("version-0", ListDelta, with_(DELTA_FIELDS, version=0), "malformed"),
    ("remove-33-bytes", ListDelta, with_(DELTA_FIELDS, remove=[BADGE_A + b"\0"]), "malformed"),
    ("granted-without-entry", AccessResponse, with_(RESPONSE_FIELDS, entry=None), "malformed"),
    ("entry-other-badge", AccessResponse, with_(RESPONSE_FIELDS, badge_hash=HASH_B), "malformed"),
    ("issued-at-nan", Ack, with_(ACK_FIELDS, issued_at=float("nan")), "malformed"),
    ("issued-at-inf", Ack, with_(ACK_FIELDS, issued_at=float("inf")), "malformed"),
    ("big-int", Ack, with_(ACK_FIELDS, seqs=[2**64 - 1]), "malformed"),
    ("garbage", Ack, b"\xc1\xc1\xc1", "malformed"),
    ("empty", Ack, b"", "malformed"),
    ("json", Ack, encode(JSON_SAMPLES[1]), "malformed"),
    ("bad-utf8", Ack, b"\x81\xa1\xff\x01", "malformed"),
    ("deep", Ack, b"\x91" * 100_000 + b"\x01", "malformed"),
]


@pytest.mark.parametrize(
    ("cls", "body", "reason"), [pytest.param(*case[1:], id=case[0]) for case in BAD_BODIES]
)
def test_bad_body_is_refused_with_its_reason(cls: type, body: bytes, reason: str) -> None:
    assert refused(lambda: decode_body(cls, body)).reason == reason


@pytest.mark.parametrize(
    ("cls", "body", "reason"), [pytest.param(*case[1:], id=case[0]) for case in BAD_BODIES]
)
def test_bad_body_signed_by_the_server_is_still_refused(
    cls: type, body: bytes, reason: str
) -> None:
    """A good signature does not make a bad body acceptable."""
    envelope = msgspec.msgpack.encode(
        Envelope(SCHEMA_VERSION, SIGNER.kid, SIGNER._key.sign(body), body)  # noqa: SLF001
    )
    assert refused(lambda: VERIFIER.open(cls, envelope)).reason == reason


# --- signatures -------------------------------------------------------------------------------

ACK = SIGNED_SAMPLES[0]


def envelope_of(payload: bytes) -> dict[str, Any]:
    return msgspec.msgpack.decode(payload)


def repack(payload: bytes, **changes: Any) -> bytes:
    return msgspec.msgpack.encode({**envelope_of(payload), **changes})


def test_good_envelope_opens() -> None:
    payload = SIGNER.sign(ACK)
    envelope = envelope_of(payload)
    assert set(envelope) == {"v", "kid", "sig", "body"}
    assert envelope["v"] == SCHEMA_VERSION and envelope["kid"] == SIGNER.kid
    assert len(envelope["sig"]) == 64
    assert envelope["body"] == encode_body(ACK)
    assert VERIFIER.open(Ack, payload) == ACK


def test_tampered_body() -> None:
    body = bytearray(envelope_of(SIGNER.sign(ACK))["body"])
    body[-1] ^= 0x01  # issued_at changes by a hair
    payload = repack(SIGNER.sign(ACK), body=bytes(body))
    assert refused(lambda: VERIFIER.open(Ack, payload)).reason == "bad_signature"


def test_body_of_another_message_under_a_valid_signature() -> None:
    other = Ack(device_id="belleme-01", epoch=EPOCH, seqs=[1], issued_at=TS)
    payload = repack(SIGNER.sign(ACK), body=encode_body(other))
    assert refused(lambda: VERIFIER.open(Ack, payload)).reason == "bad_signature"


def test_tampered_signature() -> None:
    sig = bytearray(envelope_of(SIGNER.sign(ACK))["sig"])
    sig[0] ^= 0x80
    payload = repack(SIGNER.sign(ACK), sig=bytes(sig))
    assert refused(lambda: VERIFIER.open(Ack, payload)).reason == "bad_signature"


def test_signature_by_another_key_under_a_trusted_key_id() -> None:
    payload = repack(Signer.generate().sign(ACK), kid=SIGNER.kid)
    assert refused(lambda: VERIFIER.open(Ack, payload)).reason == "bad_signature"


def test_unknown_key() -> None:
    payload = Signer.generate().sign(ACK)
    assert refused(lambda: VERIFIER.open(Ack, payload)).reason == "unknown_key"


@pytest.mark.parametrize(
    "payload",
    [
        encode(JSON_SAMPLES[1]),  # a unit -> server JSON message
        json.dumps({"v": 2, "type": "ack", "device_id": "boitron-01"}).encode(),
        b"",
        b"\x00",
        b"\xc1",
        os.urandom(64),
        encode_body(ACK),  # a body without its envelope
        msgspec.msgpack.encode({"v": 2, "kid": "0" * 16, "sig": b"\0" * 63, "body": b""}),
        msgspec.msgpack.encode({"v": 2, "kid": "0" * 16, "sig": b"\0" * 64}),
        msgspec.msgpack.encode({"v": 2, "kid": "X" * 16, "sig": b"\0" * 64, "body": b""}),
        b"\x84\xa1\xff\x02",  # a key that is not UTF-8
        b"\x91" * 100_000 + b"\x01",
    ],
    ids=[
        "json",
        "json-ack",
        "empty",
        "zero",
        "reserved-byte",
        "random",
        "bare-body",
        "short-sig",
        "no-body",
        "bad-kid",
        "bad-utf8",
        "deep",
    ],
)
def test_unsigned_or_garbage(payload: bytes) -> None:
    assert refused(lambda: VERIFIER.open(Ack, payload)).reason == "unsigned"


def test_envelope_with_an_unknown_field_is_unsigned() -> None:
    payload = repack(SIGNER.sign(ACK), extra=1)
    assert refused(lambda: VERIFIER.open(Ack, payload)).reason == "unsigned"


def test_envelope_of_another_version() -> None:
    payload = repack(SIGNER.sign(ACK), v=1)
    assert refused(lambda: VERIFIER.open(Ack, payload)).reason == "bad_version"


def test_oversized_envelope() -> None:
    payload = SIGNER.sign(ACK) + b"\0" * MAX_PAYLOAD_BYTES
    assert refused(lambda: VERIFIER.open(Ack, payload)).reason == "too_large"


@pytest.mark.parametrize("message", SIGNED_SAMPLES, ids=lambda m: type(m).__name__)
def test_body_of_another_type_than_asked(message: Any) -> None:
    payload = SIGNER.sign(message)
    for other in SIGNED_TYPES:
        if other is not type(message):
            assert refused(lambda o=other: VERIFIER.open(o, payload)).reason == "wrong_type"


def test_rotation_two_keys_configured() -> None:
    old, new = Signer.generate(), Signer.generate()
    both = Verifier([old.public_hex, new.public_key])
    assert both.key_ids == sorted([old.kid, new.kid])
    assert both.open(Ack, old.sign(ACK)) == ACK
    assert both.open(Ack, new.sign(ACK)) == ACK
    after = Verifier([new.public_hex.upper() + "\n"])
    assert after.open(Ack, new.sign(ACK)) == ACK
    assert refused(lambda: after.open(Ack, old.sign(ACK))).reason == "unknown_key"


def test_key_id_is_a_sha256_prefix_of_the_public_key() -> None:
    raw = bytes.fromhex(SIGNER.public_hex)
    assert SIGNER.kid == key_id(raw) == hashlib.sha256(raw).hexdigest()[:16]


@pytest.mark.parametrize("bad", [[], ["00" * 31], ["zz" * 32], ["00" * 33]])
def test_bad_public_keys(bad: list[str]) -> None:
    with pytest.raises(SigningKeyError):
        Verifier(bad)


def test_signing_key_file(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "signing.key"
    SIGNER.write(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    loaded = Signer.from_file(path)
    assert loaded.public_hex == SIGNER.public_hex
    assert VERIFIER.open(Ack, loaded.sign(ACK)) == ACK
    with pytest.raises(FileExistsError):
        Signer.generate().write(path)  # never overwrites
    assert Signer.from_file(path).public_hex == SIGNER.public_hex


def test_bad_signing_key_files(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyError, match="cannot read"):
        Signer.from_file(tmp_path / "missing.key")
    garbage = tmp_path / "garbage.key"
    garbage.write_text("not a key")
    with pytest.raises(SigningKeyError, match="not a PEM"):
        Signer.from_file(garbage)


# --- topics -----------------------------------------------------------------------------------


def owner_of(spec: topics.TopicSpec) -> str:
    return {Scope.DEVICE: "boitron-01", Scope.CENTRE: "boitron", Scope.SERVER: ""}[spec.scope]


@pytest.mark.parametrize("spec", ALL_TOPICS, ids=lambda s: f"{s.scope}:{s.leaf}")
def test_topic_round_trip(spec: topics.TopicSpec) -> None:
    owner = owner_of(spec)
    indexes = [0, 1, 24, topics.MAX_SEGMENTS - 1] if spec.indexed else [None]
    for index in indexes:
        name = topics.topic(spec, owner, index)
        assert topics.parse(name) == topics.ParsedTopic(owner, spec, index)


def test_topic_names() -> None:
    assert topics.topic(topics.STATUS, "boitron-01") == "telecentre/boitron-01/status"
    assert topics.topic(topics.LIST_HEAD, "boitron") == "telecentre/_centre/boitron/list/head"
    assert topics.topic(topics.LIST_SEGMENT, "boitron", 3) == (
        "telecentre/_centre/boitron/list/segment/3"
    )
    assert topics.topic(topics.SERVER_STATUS) == "telecentre/_server/status"


def test_status_leaf_is_shared_but_parsed_by_scope() -> None:
    assert topics.parse("telecentre/boitron-01/status").spec is topics.STATUS
    assert topics.parse("telecentre/_server/status").spec is topics.SERVER_STATUS


def test_subscriptions() -> None:
    assert topics.subscription(topics.EVENT) == "telecentre/+/event"
    assert sorted(topics.device_subscriptions("boitron-01", "boitron")) == [
        "telecentre/_centre/boitron/list/delta",
        "telecentre/_centre/boitron/list/head",
        "telecentre/_server/status",
        "telecentre/boitron-01/access/response",
        "telecentre/boitron-01/ack",
        "telecentre/boitron-01/command",
    ]
    assert topics.segment_subscription("boitron") == "telecentre/_centre/boitron/list/segment/+"
    with pytest.raises(TopicError):
        topics.segment_subscription("_server")


def test_scope_and_leaf_are_unique() -> None:
    keys = [(spec.scope, spec.leaf) for spec in ALL_TOPICS]
    assert len(keys) == len(set(keys))


def test_retain_and_signature_flags() -> None:
    assert not topics.COMMAND.retain and not topics.ACK.retain
    assert topics.STATUS.retain and topics.SERVER_STATUS.retain
    assert topics.LIST_HEAD.retain and topics.LIST_SEGMENT.retain and topics.LIST_DELTA.retain
    for spec in ALL_TOPICS:
        assert spec.message in MESSAGE_TYPES
        signed = (
            spec.direction is topics.Direction.SERVER_TO_EDGE and spec.scope is not Scope.SERVER
        )
        assert spec.signed == signed, spec.leaf


@pytest.mark.parametrize(
    "name",
    [
        "",
        "other/boitron-01/status",
        "Telecentre/boitron-01/status",
        "telecentre",
        "telecentre/boitron-01",
        "telecentre/boitron-01/",
        "telecentre/boitron-01/unknown",
        "telecentre/boitron-01/status/extra",
        "telecentre/boitron-01/access",
        "telecentre/boitron-01/list/head",
        "telecentre/+/status",
        "telecentre/#",
        "telecentre/Boitron-01/status",
        "telecentre//status",
        "telecentre/_server",
        "telecentre/_server/event",
        "telecentre/_server/status/x",
        "telecentre/_centre/boitron",
        "telecentre/_centre/boitron/",
        "telecentre/_centre/boitron/status",
        "telecentre/_centre/boitron/list",
        "telecentre/_centre/boitron/list/segment",
        "telecentre/_centre/boitron/list/segment/",
        "telecentre/_centre/boitron/list/segment/007",
        "telecentre/_centre/boitron/list/segment/4096",
        "telecentre/_centre/boitron/list/segment/-1",
        "telecentre/_centre/boitron/list/segment/+",
        "telecentre/_centre/boitron/list/segment/1/2",
        "telecentre/_centre/boitron/list/head/0",
        "telecentre/_centre/_server/list/head",
        "telecentre/_centre/Boitron/list/head",
        "telecentre/_other/status",
        "telecentre/boitron-01/list/segment/0",
    ],
)
def test_foreign_topic_rejected(name: str) -> None:
    with pytest.raises(TopicError):
        topics.parse(name)


@pytest.mark.parametrize("index", [None, -1, topics.MAX_SEGMENTS])
def test_segment_topic_needs_a_valid_index(index: int | None) -> None:
    with pytest.raises(TopicError):
        topics.topic(topics.LIST_SEGMENT, "boitron", index)


@pytest.mark.parametrize("device_id", ["boitron-01", "b", "0", "pays-de-camembert-01", "a" * 63])
def test_good_device_ids(device_id: str) -> None:
    assert topics.validate_device_id(device_id) == device_id


@pytest.mark.parametrize(
    "device_id",
    [
        "",
        "-boitron",
        "_centre",
        "_server",
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
    with pytest.raises(TopicError):
        topics.validate_centre_id(device_id)
    if isinstance(device_id, str):
        with pytest.raises(TopicError):
            topics.topic(topics.STATUS, device_id)
        with pytest.raises(TopicError):
            topics.topic(topics.LIST_HEAD, device_id)


# --- access lists -----------------------------------------------------------------------------


def make_entries(n: int, salt: str = "") -> list[ListEntry]:
    """``n`` entries with distinct badges, all states and windows, as the server builds."""
    return [
        ListEntry(
            hashlib.sha256(f"{salt}{i}".encode()).digest(),
            i + 1,
            i % 3,
            1795000000.0 + i if i % 2 else None,
            1798000000.0 + i if i % 5 else None,
        )
        for i in range(n)
    ]


def test_cut_snapshot_of_25000_entries_fits_the_payload_cap() -> None:
    entries = make_entries(25_000)
    head, segments = lists.cut_snapshot("boitron", VERSION, entries, TS)
    count = -(-25_000 // lists.SEGMENT_ENTRIES)
    assert head == ListHead(
        centre="boitron", version=VERSION, segments=count, entries=25_000, issued_at=TS
    )
    assert [s.index for s in segments] == list(range(count))
    sizes = [len(s.entries) for s in segments]
    assert set(sizes[:-1]) == {lists.SEGMENT_ENTRIES} and sum(sizes) == 25_000
    for segment in segments:
        assert (segment.centre, segment.version, segment.segments) == ("boitron", VERSION, count)
        payload = SIGNER.sign(segment)
        assert len(payload) < MAX_PAYLOAD_BYTES, f"segment {segment.index}: {len(payload)} B"
        assert VERIFIER.open(ListSegment, payload) == segment
    index = lists.index_segments(segments)
    assert len(index) == 25_000
    assert index == {e.badge: e for e in entries}


def test_a_full_segment_of_the_largest_entries_fits() -> None:
    entry = ListEntry(b"\xff" * 32, INT64_MAX, SUSPENDED, 99_999_999_999.5, 99_999_999_999.5)
    segment = ListSegment(
        centre="c" * 63,
        version=INT64_MAX,
        index=4095,
        segments=4096,
        entries=[entry] * lists.SEGMENT_ENTRIES,
        issued_at=TS,
    )
    assert len(SIGNER.sign(segment)) < MAX_PAYLOAD_BYTES


def test_cut_snapshot_of_an_empty_list() -> None:
    head, segments = lists.cut_snapshot("belleme", VERSION, [], TS)
    assert (head.segments, head.entries) == (1, 0)
    assert len(segments) == 1 and segments[0].entries == []
    assert VERIFIER.open(ListSegment, SIGNER.sign(segments[0])) == segments[0]


def test_cut_snapshot_exactly_one_segment() -> None:
    head, segments = lists.cut_snapshot("boitron", VERSION, make_entries(lists.SEGMENT_ENTRIES), TS)
    assert head.segments == 1 and len(segments[0].entries) == lists.SEGMENT_ENTRIES


def test_diff_and_apply_delta() -> None:
    before = {e.badge: e for e in make_entries(300)}
    after = dict(before)
    changed = list(before)[:20]
    for badge in changed[:10]:
        after[badge] = ListEntry(badge, before[badge].member_id, REVOKED)
    for badge in changed[10:]:
        del after[badge]
    for e in make_entries(5, salt="new"):
        after[e.badge] = e
    upsert, remove = lists.diff(before, after)
    assert len(upsert) == 15 and sorted(remove) == sorted(changed[10:])
    delta = ListDelta(
        centre="boitron", base=1, version=2, upsert=upsert, remove=remove, issued_at=TS
    )
    delta = VERIFIER.open(ListDelta, SIGNER.sign(delta))

    index = dict(before)
    lists.apply_delta(index, delta)
    assert index == after
    lists.apply_delta(index, delta)  # twice: the same
    assert index == after

    partly = dict(before)  # a list that already holds some of the changes
    partly[changed[0]] = after[changed[0]]
    del partly[changed[15]]
    lists.apply_delta(partly, delta)
    assert partly == after


def test_cumulative_delta_over_the_snapshot() -> None:
    snapshot = {e.badge: e for e in make_entries(50)}
    step1 = dict(snapshot)
    step1.pop(next(iter(step1)))
    step2 = dict(step1)
    extra = make_entries(1, salt="late")[0]
    step2[extra.badge] = extra
    # The delta published after step 2 is cut against the snapshot, not against step 1.
    upsert, remove = lists.diff(snapshot, step2)
    delta2 = ListDelta(centre="b", base=1, version=3, upsert=upsert, remove=remove, issued_at=TS)
    for start in (snapshot, step1):  # a unit that missed delta 1, and one that has it
        index = dict(start)
        lists.apply_delta(index, delta2)
        assert index == step2


def test_diff_of_equal_lists_is_empty() -> None:
    index = {e.badge: e for e in make_entries(100)}
    assert lists.diff(index, dict(index)) == ([], [])


# --- workers ----------------------------------------------------------------------------------


def test_a_failing_step_is_counted_logged_and_the_worker_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    inbox: queue.Queue[str] = queue.Queue()
    done = threading.Event()
    handled: list[str] = []

    def step() -> None:
        try:
            item = inbox.get(timeout=0.05)
        except queue.Empty:
            return
        if item == "boom":
            raise RuntimeError("bad item")
        handled.append(item)
        if item == "last":
            done.set()

    worker = workers.Worker("test-worker", step)
    with caplog.at_level(logging.ERROR, logger="protocol.workers"):
        worker.start()
        for item in ("boom", "boom", "ok", "last"):
            inbox.put(item)
        assert done.wait(10), "the worker stopped handling items after an error"
        worker.stop()
    assert not worker.is_alive()
    assert handled == ["ok", "last"]
    assert worker.errors == 2
    assert worker.last_error == "RuntimeError: bad item"
    assert worker.last_error_at is not None
    health = worker.health()
    assert (health.name, health.alive, health.errors) == ("test-worker", False, 2)
    failures = [r for r in caplog.records if "test-worker" in r.getMessage()]
    assert len(failures) == 2 and all(r.exc_info for r in failures)


def test_stop_returns_while_the_worker_backs_off() -> None:
    failed = threading.Event()

    def step() -> None:
        failed.set()
        raise ValueError("always")

    worker = workers.Worker("backing-off", step, backoff_max_s=60)
    worker.start()
    assert failed.wait(5)
    assert workers.all_alive([worker])
    worker.stop(timeout=5)  # the back-off waits on the stopping event, not a sleep
    assert not worker.is_alive()
    assert not workers.all_alive([worker])


def test_stop_from_the_worker_itself() -> None:
    stopped = threading.Event()
    holder: list[workers.Worker] = []

    def step() -> None:
        holder[0].stop()
        stopped.set()

    worker = workers.Worker("self-stopping", step)
    holder.append(worker)
    worker.start()
    assert stopped.wait(5)
    worker.join(5)
    assert not worker.is_alive()


def test_stop_of_a_worker_never_started() -> None:
    worker = workers.Worker("idle", lambda: None)
    worker.stop()
    assert worker.health().alive is False and worker.daemon


# --- badges -----------------------------------------------------------------------------------

KEY_1 = bytes(range(32))
KEY_2 = bytes(range(1, 33))
UID = bytes.fromhex("04a1b2c3")


def test_badge_hash_is_keyed() -> None:
    h1 = badges.badge_hash(KEY_1, UID)
    assert h1 == badges.badge_hash(KEY_1, UID)
    assert h1 != badges.badge_hash(KEY_2, UID)
    assert h1 != badges.badge_hash(KEY_1, bytes.fromhex("04a1b2c4"))
    assert len(h1) == 64 and h1 == h1.lower()
    # and it is what the wire accepts
    assert decode(AccessRequest, json.dumps(request(badge_hash=h1))).badge_hash == h1


def test_badge_hash_is_hmac_sha256() -> None:
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


def test_lists_of_the_previous_release_still_decode() -> None:
    """Units are upgraded before the server: they must read the older, shorter entries and
    heads (the new fields are trailing and optional)."""
    old_entry = msgspec.msgpack.encode([BADGE_A, 1207, 0, None, 1798070400.0])
    entry = msgspec.msgpack.decode(old_entry, type=ListEntry)
    assert (entry.plans, entry.days, entry.exempt) == (None, [], False)
    head = ListHead(centre="boitron", version=VERSION, segments=1, entries=1, issued_at=TS)
    assert decode_body(ListHead, encode_body(head)).calendar is None


def test_event_ids_are_unique_version_7_uuids_in_the_order_they_were_made() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_event_id() for _ in range(2000)]
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    parsed = [uuid.UUID(i) for i in ids]
    assert {(u.version, u.variant) for u in parsed} == {(7, uuid.RFC_4122)}
    stamps = [u.int >> 80 for u in parsed]  # the first 48 bits: milliseconds since 1970
    assert before <= stamps[0] and stamps == sorted(stamps) and stamps[-1] <= after
    sample = next(m for m in JSON_SAMPLES if isinstance(m, Event))
    event = msgspec.structs.replace(sample, event_id=ids[0])
    assert decode(Event, encode(event)).event_id == ids[0]
