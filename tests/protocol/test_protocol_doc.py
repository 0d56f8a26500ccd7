"""docs/protocol.md is the contract with units in the field: keep it true to protocol/.

The page follows a fixed layout that these tests parse:

- one heading per topic whose whole text is its key in backticks: the leaf
  (``### `list/head```), or ``_server/<leaf>`` for the server's own topics, since the
  unit's ``status`` and the server's ``status`` share a leaf;
- in that section the lines ``- Topic: `<pattern>```, ``- Direction: <arrow>``,
  ``- QoS <n> · retained: yes|no``, ``- Message type: `<Name>``` and ``- Signed: yes|no``;
- a line ``Fields of `<Name>`...`` before the field table of each message type, nested
  types included, the table's columns being Field, Type, Required, Meaning;
- ```json fenced examples, each a complete payload of the section's message type: the
  JSON payload itself for unsigned topics, the body shown as JSON (bytes as hex) for
  signed ones.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from msgspec import inspect as mi

from protocol import errors, lists, messages, signing, topics
from protocol.errors import ProtocolError
from protocol.messages import MESSAGE_TYPES, decode, decode_body, encode, encode_body
from protocol.topics import ALL_TOPICS, Scope, TopicSpec

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
TEXT = DOC.read_text(encoding="utf-8")

HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")
TOPIC_HEADING = re.compile(r"^`([^`]+)`$")
FIELDS_OF = re.compile(r"^Fields of `(\w+)`")
TOPIC_LINE = re.compile(r"^- Topic: `([^`]+)`\s*$")
DIRECTION_LINE = re.compile(r"^- Direction: (.+?)\s*$")
QOS_LINE = re.compile(r"^- QoS (\d) · retained: (yes|no)\s*$")
MESSAGE_LINE = re.compile(r"^- Message type: `(\w+)`\s*$")
SIGNED_LINE = re.compile(r"^- Signed: (yes|no)\s*$")

TIME_FIELDS = ("ts", "issued_at", "expires_at", "valid_from", "valid_until")
VERSION_FIELDS = ("version", "base", "list_version")


@dataclass
class Section:
    level: int
    title: str
    lines: list[str]  # prose and table lines, code blocks left out
    json_blocks: list[str]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def parse_doc(text: str) -> list[Section]:
    """Split the page at its headings, ignoring '#' lines inside fenced code blocks."""
    sections = [Section(0, "", [], [])]
    fence: str | None = None  # language of the open fence, "" when none given
    block: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if fence is not None:
            if stripped.startswith("```"):
                if fence == "json":
                    sections[-1].json_blocks.append("\n".join(block))
                fence = None
            else:
                block.append(line)
            continue
        if stripped.startswith("```"):
            fence, block = stripped[3:].strip(), []
            continue
        heading = HEADING.match(line)
        if heading:
            sections.append(Section(len(heading.group(1)), heading.group(2), [], []))
        else:
            sections[-1].lines.append(line)
    assert fence is None, "docs/protocol.md: a code block is never closed"
    return sections


def topic_sections(sections: list[Section]) -> dict[str, Section]:
    """Heading key -> its section, including any deeper sub-headings inside it."""
    found: dict[str, Section] = {}
    for i, section in enumerate(sections):
        m = TOPIC_HEADING.match(section.title)
        if not m:
            continue
        key = m.group(1)
        assert key not in found, f"two sections for topic {key!r}"
        merged = Section(
            section.level, section.title, list(section.lines), list(section.json_blocks)
        )
        for sub in sections[i + 1 :]:
            if sub.level <= section.level:
                break
            merged.lines += sub.lines
            merged.json_blocks += sub.json_blocks
        found[key] = merged
    return found


def table_rows(lines: list[str]) -> list[list[str]]:
    """Body rows of the first Markdown table in ``lines`` (header and rule skipped)."""
    rows: list[list[str]] = []
    started = False
    for line in lines:
        if line.startswith("|"):
            started = True
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif started:
            break
    return rows[2:]


def field_tables(section: Section) -> dict[str, list[list[str]]]:
    """Message type name -> rows of the table after its 'Fields of `Name`' line."""
    tables: dict[str, list[list[str]]] = {}
    for i, line in enumerate(section.lines):
        m = FIELDS_OF.match(line)
        if m:
            assert m.group(1) not in tables, f"two field tables for {m.group(1)}"
            tables[m.group(1)] = table_rows(section.lines[i + 1 :])
    return tables


def strip_code(cell: str) -> str:
    return cell.strip().strip("`")


def doc_key(spec: TopicSpec) -> str:
    """The heading (and overview row) of a topic: the leaf, or ``_server/<leaf>``."""
    if spec.scope is Scope.SERVER:
        return f"{topics.SERVER_PREFIX}/{spec.leaf}"
    return spec.leaf


def topic_pattern(spec: TopicSpec) -> str:
    if spec.scope is Scope.DEVICE:
        name = f"{topics.BASE}/<device_id>/{spec.leaf}"
    elif spec.scope is Scope.CENTRE:
        name = f"{topics.BASE}/{topics.CENTRE_PREFIX}/<centre_id>/{spec.leaf}"
    else:
        name = f"{topics.BASE}/{topics.SERVER_PREFIX}/{spec.leaf}"
    return f"{name}/<index>" if spec.indexed else name


# --- msgspec type introspection ----------------------------------------------------------------


def struct_info(cls: type) -> mi.StructType:
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType), cls
    return info


def nested_types(cls: type) -> list[type]:
    """``cls`` and every Struct reachable through its fields."""
    seen: list[type] = []

    def visit(t: mi.Type) -> None:
        if isinstance(t, mi.StructType):
            if t.cls in seen:
                return
            seen.append(t.cls)
            for f in t.fields:
                visit(f.type)
        elif isinstance(t, mi.UnionType):
            for member in t.types:
                visit(member)
        elif isinstance(t, mi.ListType):
            visit(t.item_type)
        elif isinstance(t, mi.DictType):
            visit(t.key_type)
            visit(t.value_type)

    visit(mi.type_info(cls))
    return seen


def expected_type_words(t: mi.Type) -> list[str]:
    """What the Type cell of a field must say for its type."""
    if isinstance(t, mi.UnionType):
        (inner,) = [m for m in t.types if not isinstance(m, mi.NoneType)]
        return expected_type_words(inner)
    if isinstance(t, mi.LiteralType):
        if all(isinstance(v, str) for v in t.values):
            return ["string", *(f'"{v}"' for v in t.values)]
        return ["integer", *(f"`{v}`" for v in t.values)]
    if isinstance(t, mi.ListType):
        return ["array of", *expected_type_words(t.item_type)]
    if isinstance(t, mi.TupleType):  # a fixed-length row: its items are in the meaning
        return ["array"]
    if isinstance(t, mi.DictType):
        return [
            "map of",
            *expected_type_words(t.key_type),
            "to",
            *expected_type_words(t.value_type),
        ]
    if isinstance(t, mi.StructType):
        return [f"`{t.cls.__name__}`"]
    words = {
        mi.StrType: "string",
        mi.IntType: "integer",
        mi.FloatType: "number",
        mi.BoolType: "boolean",
        mi.BytesType: "bytes",
    }
    return [words[type(t)]]


def is_required(f: mi.Field) -> bool:
    # ``v`` has a default in the Struct, but decode() demands it before anything else.
    return f.required or f.name == "v"


def string_patterns(t: mi.Type, found: set[str]) -> set[str]:
    if isinstance(t, mi.StrType) and t.pattern:
        found.add(t.pattern)
    elif isinstance(t, mi.StructType):
        for f in t.fields:
            string_patterns(f.type, found)
    elif isinstance(t, mi.UnionType):
        for m in t.types:
            string_patterns(m, found)
    elif isinstance(t, mi.ListType):
        string_patterns(t.item_type, found)
    elif isinstance(t, mi.DictType):
        string_patterns(t.key_type, found)
        string_patterns(t.value_type, found)
    return found


def from_doc(value: Any, t: mi.Type) -> Any:
    """A body example as shown (bytes in hex) -> plain values ready for MessagePack."""
    if isinstance(t, mi.BytesType):
        assert isinstance(value, str) and re.fullmatch(r"[0-9a-f]{64}", value), (
            f"bytes shown as {value!r}: expected 64 lowercase hex characters"
        )
        return bytes.fromhex(value)
    if isinstance(t, mi.UnionType):
        if value is None:
            return None
        (inner,) = [m for m in t.types if not isinstance(m, mi.NoneType)]
        return from_doc(value, inner)
    if isinstance(t, mi.ListType) and isinstance(value, list):
        return [from_doc(v, t.item_type) for v in value]
    if isinstance(t, mi.StructType):
        if t.array_like and isinstance(value, list):
            return [from_doc(v, f.type) for v, f in zip(value, t.fields, strict=False)]
        if isinstance(value, dict):
            by_name = {f.encode_name: f for f in t.fields}
            return {
                k: from_doc(v, by_name[k].type) if k in by_name else v for k, v in value.items()
            }
    return value


def body_of(cls: type, block: str) -> bytes:
    """The MessagePack body of a signed example."""
    data = json.loads(block)
    info = struct_info(cls)
    assert data.get(info.tag_field) == info.tag, f'example should show "type": {info.tag!r}'
    return msgspec.msgpack.encode(from_doc(data, info))


def walk(message: Any) -> list[tuple[str, Any]]:
    """(field name, value) of every field of a decoded message, nested Structs included."""
    pairs: list[tuple[str, Any]] = []
    if isinstance(message, msgspec.Struct):
        for f in msgspec.structs.fields(message):
            value = getattr(message, f.name)
            pairs.append((f.name, value))
            pairs += walk(value)
    elif isinstance(message, list):
        for v in message:
            pairs += walk(v)
    return pairs


SECTIONS = parse_doc(TEXT)
TOPIC_SECTIONS = topic_sections(SECTIONS)
SPEC_IDS = [doc_key(spec) for spec in ALL_TOPICS]
SIGNER = signing.Signer.generate()
VERIFIER = signing.Verifier([SIGNER.public_hex])


def section_of(spec: TopicSpec) -> Section:
    key = doc_key(spec)
    assert key in TOPIC_SECTIONS, f"docs/protocol.md has no '### `{key}`' section"
    return TOPIC_SECTIONS[key]


def section_titled(title: str) -> Section:
    (section,) = [s for s in SECTIONS if s.title == title]
    return section


def only_match(pattern: re.Pattern[str], section: Section, what: str) -> re.Match[str]:
    found = [m for line in section.lines if (m := pattern.match(line))]
    assert len(found) == 1, f"{section.title}: expected one {what} line, found {len(found)}"
    return found[0]


def examples() -> list[Any]:
    cases = []
    for spec in ALL_TOPICS:
        section = TOPIC_SECTIONS.get(doc_key(spec))
        for i, block in enumerate(section.json_blocks if section else []):
            cases.append(pytest.param(spec, block, id=f"{doc_key(spec)}#{i + 1}"))
    return cases


def decode_example(spec: TopicSpec, block: str) -> Any:
    cls = MESSAGE_TYPES[spec.message]
    if spec.signed:
        return decode_body(cls, body_of(cls, block))
    return decode(cls, block)


# --- topics -----------------------------------------------------------------------------------


def test_every_documented_topic_exists() -> None:
    assert set(TOPIC_SECTIONS) == {doc_key(spec) for spec in ALL_TOPICS}


@pytest.mark.parametrize("spec", ALL_TOPICS, ids=SPEC_IDS)
def test_topic_section_states_qos_and_retain(spec: TopicSpec) -> None:
    section = section_of(spec)
    m = only_match(QOS_LINE, section, "'- QoS <n> · retained: yes|no'")
    assert int(m.group(1)) == spec.qos, f"{spec.leaf}: QoS"
    assert (m.group(2) == "yes") == spec.retain, f"{spec.leaf}: retained"


@pytest.mark.parametrize("spec", ALL_TOPICS, ids=SPEC_IDS)
def test_topic_section_states_topic_direction_message_and_signature(spec: TopicSpec) -> None:
    section = section_of(spec)
    assert only_match(TOPIC_LINE, section, "Topic").group(1) == topic_pattern(spec)
    assert only_match(DIRECTION_LINE, section, "Direction").group(1) == spec.direction.value
    assert only_match(MESSAGE_LINE, section, "Message type").group(1) == spec.message
    signed = only_match(SIGNED_LINE, section, "Signed").group(1)
    assert (signed == "yes") == spec.signed


@pytest.mark.parametrize("spec", ALL_TOPICS, ids=SPEC_IDS)
def test_topic_pattern_is_what_topics_builds(spec: TopicSpec) -> None:
    owner = "boitron" if spec.scope is Scope.CENTRE else "boitron-01"
    built = topics.topic(spec, owner, index=7 if spec.indexed else None)
    expected = (
        topic_pattern(spec)
        .replace("<device_id>", owner)
        .replace("<centre_id>", owner)
        .replace("<index>", "7")
    )
    assert built == expected


def test_overview_table_matches_topics() -> None:
    overview = section_titled("Topics")
    rows = {strip_code(r[0]): r for r in table_rows(overview.lines)}
    assert set(rows) == {doc_key(spec) for spec in ALL_TOPICS}
    for spec in ALL_TOPICS:
        _, pattern, direction, qos, retained, message, signed = rows[doc_key(spec)]
        assert strip_code(pattern) == topic_pattern(spec), spec.leaf
        assert direction == spec.direction.value, spec.leaf
        assert qos == str(spec.qos), spec.leaf
        assert retained == ("yes" if spec.retain else "no"), spec.leaf
        assert strip_code(message) == spec.message, spec.leaf
        assert signed == ("yes" if spec.signed else "no"), spec.leaf


def test_signed_topics_are_the_server_to_unit_ones_but_the_server_status() -> None:
    for spec in ALL_TOPICS:
        expected = (
            spec.direction is topics.Direction.SERVER_TO_EDGE and spec.scope is not Scope.SERVER
        )
        assert spec.signed == expected, spec.leaf
        assert (MESSAGE_TYPES[spec.message] in messages.SIGNED_TYPES) == spec.signed


def test_topic_tree_and_device_id_rule_are_documented() -> None:
    assert f"{topics.BASE}/<device_id>/<leaf>" in TEXT
    assert f"{topics.BASE}/{topics.CENTRE_PREFIX}/<centre_id>/<leaf>" in TEXT
    assert f"{topics.BASE}/{topics.SERVER_PREFIX}/status" in TEXT
    assert topics.DEVICE_ID_PATTERN.pattern in TEXT
    segments = topics.segment_subscription("boitron").replace("boitron", "<centre_id>", 1)
    assert f"`{segments}`" in TEXT
    assert "set_tcp_nodelay true" in TEXT
    assert "TCP_NODELAY" in TEXT


def test_broker_acl_sketch() -> None:
    """The documented ACL is what the generator writes for one unit, the server and its
    events receiver."""
    from server.domain import broker_access as ba

    generated = ba.acl_file(
        [
            ba.unit_grant("boitron-01", "boitron", "$7$x"),
            *ba.server_grants("telecentre-server", "$7$x"),
        ]
    )
    assert f"```text\n{generated}```" in TEXT
    assert "readwrite" not in generated and "pattern" not in generated


def test_unit_subscriptions_are_readable_under_the_acl() -> None:
    """What device_subscriptions gives is covered by the ACL's read lines for the unit."""
    for name in [
        *topics.device_subscriptions("boitron-01", "boitron"),
        topics.segment_subscription("boitron"),
    ]:
        assert f"topic read {name}\n" in TEXT, name


# --- fields -----------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ALL_TOPICS, ids=SPEC_IDS)
def test_every_field_is_documented(spec: TopicSpec) -> None:
    section = section_of(spec)
    tables = field_tables(section)
    all_tables = {
        name: rows for s in TOPIC_SECTIONS.values() for name, rows in field_tables(s).items()
    }
    for cls in nested_types(MESSAGE_TYPES[spec.message]):
        if cls.__name__ not in tables:
            # A nested type documented once, in another topic's section, is enough.
            assert cls is not MESSAGE_TYPES[spec.message], f"no field table for {cls.__name__}"
            assert cls.__name__ in all_tables, f"no field table for {cls.__name__}"
            continue
        info = struct_info(cls)
        rows = {strip_code(r[0]): r[1:4] for r in tables[cls.__name__]}
        expected = [f.encode_name for f in info.fields]
        if info.tag_field is not None:
            expected.append(info.tag_field)
            type_cell, required_cell, _ = rows[info.tag_field]
            assert f'"{info.tag}"' in type_cell, f"{cls.__name__}: tag {info.tag!r}"
            assert required_cell == "yes"
        assert sorted(rows) == sorted(expected), f"{cls.__name__}: field table"
        for f in info.fields:
            type_cell, required_cell, meaning = rows[f.encode_name]
            for word in expected_type_words(f.type):
                assert word in type_cell, f"{cls.__name__}.{f.name}: type should mention {word}"
            if is_required(f):
                assert required_cell == "yes", f"{cls.__name__}.{f.name}: required"
            else:
                assert required_cell.startswith("no"), (
                    f"{cls.__name__}.{f.name}: Required column says {required_cell!r}"
                )
            assert meaning, f"{cls.__name__}.{f.name}: no meaning given"


def test_envelope_fields_are_documented() -> None:
    tables = field_tables(section_titled("Envelope"))
    rows = {strip_code(r[0]): r for r in tables["Envelope"]}
    info = struct_info(signing.Envelope)
    assert sorted(rows) == sorted(f.name for f in info.fields)
    for f in info.fields:
        for word in expected_type_words(f.type):
            assert word in rows[f.name][1], f"Envelope.{f.name}"


def test_every_message_type_has_a_topic() -> None:
    documented = {spec.message for spec in ALL_TOPICS}
    for cls in (*messages.JSON_TYPES, *messages.SIGNED_TYPES):
        assert cls.__name__ in documented
    nested = {c.__name__ for spec in ALL_TOPICS for c in nested_types(MESSAGE_TYPES[spec.message])}
    assert nested == set(MESSAGE_TYPES)


def test_event_kinds_are_documented() -> None:
    section = TOPIC_SECTIONS[topics.EVENT.leaf]
    (kind,) = [f for f in struct_info(messages.Event).fields if f.name == "kind"]
    assert isinstance(kind.type, mi.LiteralType)
    kinds = [strip_code(r[0]) for r in table_rows(section.lines[section.lines.index("Kinds:") :])]
    assert sorted(kinds) == sorted(kind.type.values)


def test_bounds_are_documented() -> None:
    bounds = section_titled("Bounds").text
    patterns: set[str] = set()
    for cls in MESSAGE_TYPES.values():
        string_patterns(mi.type_info(cls), patterns)
    string_patterns(mi.type_info(signing.Envelope), patterns)
    for pattern in patterns:
        assert f"`{pattern}`" in bounds, f"pattern {pattern} not in the Bounds table"
    for number in (
        messages.MAX_PAYLOAD_BYTES,
        messages.MAX_EDGE_PAYLOAD_BYTES,
        messages.INT64_MAX,
        lists.SEGMENT_ENTRIES,
        lists.MAX_DELTA_ENTRIES,
        topics.MAX_SEGMENTS,
    ):
        assert f"{number:,}" in bounds, number


def test_command_rules_are_in_order() -> None:
    rules = section_titled("Command rules").text
    order = [
        "retained",
        "unsigned",
        "unknown_key",
        "bad_signature",
        "other_device",
        "ttl_too_long",
        "replayed",
        "expired",
        "not_yet_valid",
        "clock_unsynced",
        "unknown_door",
    ]
    positions = [rules.index(f"`{reason}`") for reason in order]
    assert positions == sorted(positions)
    for reason in re.findall(r"refused `(\w+)`", rules):
        assert reason in errors.REJECT_REASONS


def test_deny_reasons_are_documented() -> None:
    listed = [strip_code(r[0]) for r in table_rows(section_titled("Deny reasons").lines)]
    assert listed == list(messages.DENY_REASONS)


def test_rejection_reasons_are_documented() -> None:
    rows = table_rows(section_titled("Rejection reasons").lines)
    assert [strip_code(r[0]) for r in rows] == list(errors.REJECT_REASONS)
    assert all(r[1] for r in rows)


# --- examples ---------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ALL_TOPICS, ids=SPEC_IDS)
def test_every_topic_has_an_example(spec: TopicSpec) -> None:
    assert section_of(spec).json_blocks, f"{doc_key(spec)}: no ```json example"


@pytest.mark.parametrize(("spec", "block"), examples())
def test_example_decodes(spec: TopicSpec, block: str) -> None:
    cls = MESSAGE_TYPES[spec.message]
    message = decode_example(spec, block)
    assert isinstance(message, cls)
    # What the encoder writes for it decodes to the same message.
    if spec.signed:
        assert decode_body(cls, encode_body(message)) == message
        # And it survives signing: the unit opens the server's envelope.
        assert VERIFIER.open(cls, SIGNER.sign(message)) == message
    else:
        payload = encode(message)
        assert len(payload) <= messages.MAX_EDGE_PAYLOAD_BYTES
        assert decode(cls, payload, limit=messages.MAX_EDGE_PAYLOAD_BYTES) == message


@pytest.mark.parametrize(("spec", "block"), examples())
def test_example_uses_realistic_values(spec: TopicSpec, block: str) -> None:
    data = json.loads(block)
    if not spec.signed:
        assert next(iter(data)) == "v", "v comes first"
        assert data["v"] == messages.SCHEMA_VERSION
    for key, value in walk(decode_example(spec, block)):
        if value is None:
            continue
        if key in TIME_FIELDS:
            assert 1_700_000_000 < value < 1_900_000_000, f"{key}: {value} is not an epoch time"
        if key in VERSION_FIELDS:
            assert 1_700_000_000_000 < value < 1_900_000_000_000, f"{key}: {value} not in ms"
        if key == "device_id":
            topics.validate_device_id(value)
        if key == "centre":
            topics.validate_centre_id(value)
    message = decode_example(spec, block)
    if spec.scope is Scope.DEVICE and hasattr(message, "device_id"):
        assert message.device_id.startswith(("boitron-", "belleme-"))


@pytest.mark.parametrize(("spec", "block"), examples())
def test_example_with_another_version_is_rejected(spec: TopicSpec, block: str) -> None:
    cls = MESSAGE_TYPES[spec.message]
    if spec.signed:
        envelope = msgspec.msgpack.decode(SIGNER.sign(decode_example(spec, block)))
        envelope["v"] = 1  # the signature covers the body only: the version is checked apart
        with pytest.raises(ProtocolError, match=r"^v: ") as info:
            VERIFIER.open(cls, msgspec.msgpack.encode(envelope))
    else:
        data = json.loads(block)
        data["v"] = 1
        with pytest.raises(ProtocolError, match=r"^v: ") as info:
            decode(cls, json.dumps(data))
    assert info.value.reason == "bad_version"


@pytest.mark.parametrize(("spec", "block"), [p for p in examples() if p.values[0].signed])
def test_signed_example_is_refused_on_another_topic(spec: TopicSpec, block: str) -> None:
    body = decode_example(spec, block)
    for other in messages.SIGNED_TYPES:
        if other is not type(body):
            with pytest.raises(ProtocolError) as info:
                VERIFIER.open(other, SIGNER.sign(body))
            assert info.value.reason == "wrong_type"
