"""docs/protocol.md is the contract with units in the field: keep it true to protocol/.

The page follows a fixed layout that these tests parse:

- one heading per topic whose whole text is the leaf in backticks: ``### `access/list```;
- in that section the lines ``- Direction: <arrow>``, ``- QoS <n> · retained: yes|no`` and
  ``- Message type: `<Name>```;
- a line ``Fields of `<Name>`...`` before the field table of each message type, nested
  types included, the table's columns being Field, Type, Required, Meaning;
- ```json fenced examples, each a complete payload of the section's message type.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import pytest

from protocol import messages, topics
from protocol.messages import MESSAGE_TYPES, ProtocolError, decode
from protocol.topics import ALL_TOPICS, TopicSpec

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"

HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")
TOPIC_HEADING = re.compile(r"^`([^`]+)`$")
FIELDS_OF = re.compile(r"^Fields of `(\w+)`")
DIRECTION_LINE = re.compile(r"^- Direction: (.+?)\s*$")
QOS_LINE = re.compile(r"^- QoS (\d) · retained: (yes|no)\s*$")
MESSAGE_LINE = re.compile(r"^- Message type: `(\w+)`\s*$")


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
    """Leaf -> its section, including any deeper sub-headings inside it."""
    found: dict[str, Section] = {}
    for i, section in enumerate(sections):
        m = TOPIC_HEADING.match(section.title)
        if not m:
            continue
        leaf = m.group(1)
        assert leaf not in found, f"two sections for topic {leaf!r}"
        merged = Section(
            section.level, section.title, list(section.lines), list(section.json_blocks)
        )
        for sub in sections[i + 1 :]:
            if sub.level <= section.level:
                break
            merged.lines += sub.lines
            merged.json_blocks += sub.json_blocks
        found[leaf] = merged
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


def nested_types(cls: type) -> list[type]:
    """``cls`` and every message dataclass reachable through its fields."""
    seen: list[type] = []

    def visit(hint: Any) -> None:
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            if hint in seen:
                return
            seen.append(hint)
            for h in get_type_hints(hint).values():
                visit(h)
        for arg in get_args(hint):
            visit(arg)

    visit(cls)
    return seen


def expected_type_words(hint: Any) -> list[str]:
    """What the Type cell of a field must say for its annotation."""
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        (inner,) = [a for a in get_args(hint) if a is not type(None)]
        return expected_type_words(inner)
    if origin is Literal:
        return ["string", *(f'"{v}"' for v in get_args(hint))]
    if origin is list:
        (item,) = get_args(hint)
        return ["array of", *expected_type_words(item)]
    if dataclasses.is_dataclass(hint):
        return [f"`{hint.__name__}`"]
    return {str: ["string"], int: ["integer"], float: ["number"], bool: ["boolean"]}[hint]


def is_required(f: dataclasses.Field[Any]) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def strip_code(cell: str) -> str:
    return cell.strip().strip("`")


SECTIONS = parse_doc(DOC.read_text(encoding="utf-8"))
TOPIC_SECTIONS = topic_sections(SECTIONS)
SPEC_IDS = [spec.leaf for spec in ALL_TOPICS]


def section_of(spec: TopicSpec) -> Section:
    assert spec.leaf in TOPIC_SECTIONS, f"docs/protocol.md has no '### `{spec.leaf}`' section"
    return TOPIC_SECTIONS[spec.leaf]


def only_match(pattern: re.Pattern[str], section: Section, what: str) -> re.Match[str]:
    found = [m for line in section.lines if (m := pattern.match(line))]
    assert len(found) == 1, f"{section.title}: expected one {what} line, found {len(found)}"
    return found[0]


def examples() -> list[Any]:
    cases = []
    for spec in ALL_TOPICS:
        section = TOPIC_SECTIONS.get(spec.leaf)
        for i, block in enumerate(section.json_blocks if section else []):
            cases.append(pytest.param(spec, block, id=f"{spec.leaf}#{i + 1}"))
    return cases


# --- topics -----------------------------------------------------------------------------------


def test_every_documented_topic_exists() -> None:
    assert set(TOPIC_SECTIONS) == {spec.leaf for spec in ALL_TOPICS}


@pytest.mark.parametrize("spec", ALL_TOPICS, ids=SPEC_IDS)
def test_topic_section_states_qos_and_retain(spec: TopicSpec) -> None:
    section = section_of(spec)
    m = only_match(QOS_LINE, section, "'- QoS <n> · retained: yes|no'")
    assert int(m.group(1)) == spec.qos, f"{spec.leaf}: QoS"
    assert (m.group(2) == "yes") == spec.retain, f"{spec.leaf}: retained"


@pytest.mark.parametrize("spec", ALL_TOPICS, ids=SPEC_IDS)
def test_topic_section_states_direction_and_message(spec: TopicSpec) -> None:
    section = section_of(spec)
    assert only_match(DIRECTION_LINE, section, "Direction").group(1) == spec.direction.value
    assert only_match(MESSAGE_LINE, section, "Message type").group(1) == spec.message


def test_overview_table_matches_topics() -> None:
    (overview,) = [s for s in SECTIONS if s.level == 2 and s.title == "Topics"]
    rows = {strip_code(r[0]): r for r in table_rows(overview.lines)}
    assert set(rows) == {spec.leaf for spec in ALL_TOPICS}
    for spec in ALL_TOPICS:
        _, direction, qos, retained, message = rows[spec.leaf]
        assert direction == spec.direction.value, spec.leaf
        assert qos == str(spec.qos), spec.leaf
        assert retained == ("yes" if spec.retain else "no"), spec.leaf
        assert strip_code(message) == spec.message, spec.leaf


def test_topic_tree_and_device_id_rule_are_documented() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert f"{topics.BASE}/<device_id>/<leaf>" in text
    assert f"pattern readwrite {topics.BASE}/%u/#" in text
    assert topics.DEVICE_ID_PATTERN.pattern in text
    assert "set_tcp_nodelay true" in text


# --- fields -----------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ALL_TOPICS, ids=SPEC_IDS)
def test_every_field_is_documented(spec: TopicSpec) -> None:
    section = section_of(spec)
    tables = field_tables(section)
    for cls in nested_types(MESSAGE_TYPES[spec.message]):
        if cls.__name__ not in tables:
            # A nested type documented once, in another topic's section, is enough.
            assert any(cls.__name__ in field_tables(s) for s in TOPIC_SECTIONS.values()), (
                f"no field table for {cls.__name__}"
            )
            continue
        rows = tables[cls.__name__]
        documented = [strip_code(r[0]) for r in rows]
        actual = [f.name for f in dataclasses.fields(cls)]
        assert sorted(documented) == sorted(actual), f"{cls.__name__}: field table"
        hints = get_type_hints(cls)
        by_name = {f.name: f for f in dataclasses.fields(cls)}
        for name, type_cell, required_cell, meaning in ((strip_code(r[0]), *r[1:4]) for r in rows):
            for word in expected_type_words(hints[name]):
                assert word in type_cell, f"{cls.__name__}.{name}: type should mention {word}"
            assert (required_cell == "yes") == is_required(by_name[name]), (
                f"{cls.__name__}.{name}: Required column says {required_cell!r}"
            )
            assert meaning, f"{cls.__name__}.{name}: no meaning given"


def test_every_message_type_has_a_topic() -> None:
    assert {spec.message for spec in ALL_TOPICS} == set(MESSAGE_TYPES)


def test_event_kinds_are_documented() -> None:
    section = TOPIC_SECTIONS[topics.EVENT.leaf]
    kind_hint = get_type_hints(messages.Event)["kind"]
    for kind in get_args(kind_hint):
        assert f"`{kind}`" in section.text, f"event kind {kind!r} not described"


def test_deny_reasons_are_documented() -> None:
    (section,) = [s for s in SECTIONS if s.title == "Deny reasons"]
    listed = [strip_code(r[0]) for r in table_rows(section.lines)]
    assert listed == list(messages.DENY_REASONS)


# --- examples ---------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ALL_TOPICS, ids=SPEC_IDS)
def test_every_topic_has_an_example(spec: TopicSpec) -> None:
    assert section_of(spec).json_blocks, f"{spec.leaf}: no ```json example"


@pytest.mark.parametrize(("spec", "block"), examples())
def test_example_decodes(spec: TopicSpec, block: str) -> None:
    cls = MESSAGE_TYPES[spec.message]
    message = decode(cls, block)
    assert isinstance(message, cls)
    # What the encoder writes for it decodes to the same message.
    assert decode(cls, messages.encode(message)) == message


@pytest.mark.parametrize(("spec", "block"), examples())
def test_example_uses_realistic_values(spec: TopicSpec, block: str) -> None:
    data = json.loads(block)
    assert data["v"] == messages.SCHEMA_VERSION
    for key, value in walk(data):
        if key in ("ts", "issued_at", "expires_at", "valid_from", "valid_until"):
            assert 1_700_000_000 < value < 1_900_000_000, f"{key}: {value} is not an epoch time"
        if key == "badge_hash":
            assert re.fullmatch(r"[0-9a-f]{64}", value), f"badge_hash {value!r}"
        if key == "device_id":
            topics.validate_device_id(value)


@pytest.mark.parametrize(("spec", "block"), examples())
def test_example_with_another_version_is_rejected(spec: TopicSpec, block: str) -> None:
    data = json.loads(block)
    data["v"] = 2
    with pytest.raises(ProtocolError, match=r"^v: "):
        decode(MESSAGE_TYPES[spec.message], json.dumps(data))


def walk(value: Any) -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = []
    if isinstance(value, dict):
        for k, v in value.items():
            pairs.append((k, v))
            pairs += walk(v)
    elif isinstance(value, list):
        for v in value:
            pairs += walk(v)
    return pairs
