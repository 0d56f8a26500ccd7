"""The unit's list kept packed (badges end to end, entries as the server signed them), and
a list install that a crash cannot leave half done."""

from __future__ import annotations

import hashlib
import struct
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import msgspec

from edge.access import Part, Snapshot
from edge.agent import EdgeAgent
from edge.lists import packed
from edge.outbox import Outbox
from protocol import topics
from protocol.badges import badge_hash
from protocol.lists import SEGMENT_ENTRIES, cut_snapshot
from protocol.messages import REVOKED, SUSPENDED, ListEntry, ListSegment, PlanRule
from protocol.signing import Signer, Verifier
from tests.edge.support import CENTRE, NOW, parsed, wait_until

MakeAgent = Callable[..., EdgeAgent]
ROOT = Path(__file__).resolve().parents[2]


def badge(n: int) -> bytes:
    return hashlib.sha256(n.to_bytes(8, "big")).digest()


def varied(n: int) -> ListEntry:
    """Entries using every field, some left at their defaults (omitted on the wire)."""
    kind = n % 5
    if kind == 0:
        return ListEntry(badge(n), n + 1)
    if kind == 1:
        return ListEntry(badge(n), n + 1, REVOKED)
    if kind == 2:
        return ListEntry(badge(n), n + 1, 0, NOW - 10, NOW + 86_400, exempt=True)
    if kind == 3:
        plans = [PlanRule(1, NOW - 100, NOW + 100, credits=3), PlanRule(2, hours=2, window=[])]
        return ListEntry(badge(n), n + 1, 0, None, None, plans, [739_000, 739_001])
    return ListEntry(badge(n), n + 1, SUSPENDED, plans=[])


def test_every_entry_of_a_signed_segment_comes_back_whole_from_its_packed_form() -> None:
    signer = Signer.generate()
    listed = sorted((varied(n) for n in range(1_500)), key=lambda e: e.badge)
    _, [segment] = cut_snapshot(CENTRE, 1, listed, NOW)
    payload = signer.sign(segment)
    opened = Verifier([signer.public_hex]).open(ListSegment, payload)

    part = packed(opened, payload)

    assert len(part) == 1_500
    assert [part.get(e.badge) for e in listed] == listed
    assert part.get(badge(10**9)) is None
    assert part.get(b"\x00" * 32) is None and part.get(b"\xff" * 32) is None


def test_a_segment_out_of_badge_order_or_naming_a_badge_twice_is_still_read_right() -> None:
    signer = Signer.generate()
    listed = [varied(n) for n in range(300)]  # not in badge order
    twice = ListEntry(listed[7].badge, 999, REVOKED)  # the later entry of a badge counts
    _, [segment] = cut_snapshot(CENTRE, 1, [*listed, twice], NOW)
    payload = signer.sign(segment)

    part = packed(Verifier([signer.public_hex]).open(ListSegment, payload), payload)

    assert len(part) == 300
    assert part.get(twice.badge) == twice
    assert all(part.get(e.badge) == e for e in listed if e.badge != twice.badge)


def test_overlapping_parts_are_merged_and_the_later_one_wins() -> None:
    first = [ListEntry(badge(n), n + 1) for n in range(0, 400, 2)]
    second = [ListEntry(badge(n), n + 1) for n in range(1, 400, 2)]
    revoked = ListEntry(first[3].badge, first[3].member_id, REVOKED)

    snapshot = Snapshot([Part.of(first), Part.of([*second, revoked])])

    assert len(snapshot) == 400
    assert snapshot.get(revoked.badge) == revoked
    assert all(snapshot.get(e.badge) == e for e in [*first[:3], *first[4:], *second])


# -- a crash in the middle of an install -----------------------------------------------------

CHILD = textwrap.dedent(
    """
    import struct, sys
    from pathlib import Path
    from gpiozero.pins.mock import MockFactory
    from edge import config
    from edge.agent import EdgeAgent
    from edge.hardware.build import build
    from protocol import topics

    cfg = config.load(sys.argv[1])
    agent = EdgeAgent(cfg, build(cfg, pin_factory=MockFactory()))
    agent.lists._subscribe = agent.lists._unsubscribe = lambda topic: None
    for n, name in enumerate(sys.argv[2:]):
        if n:
            sys.stdin.readline()  # the parent says when to install the next list
        data = Path(name).read_bytes()
        at, index = 0, -1
        while at < len(data):
            (size,) = struct.unpack_from(">I", data, at)
            raw = data[at + 4 : at + 4 + size]
            at += 4 + size
            spec = topics.LIST_HEAD if index < 0 else topics.LIST_SEGMENT
            agent.handle(topics.parse(topics.topic(spec, cfg.centre, max(index, 0))), raw)
            index += 1
        print(agent.access.version, flush=True)
    sys.stdin.readline()  # killed while waiting here at the latest
    """
)


def _snapshot_file(path: Path, signer: Signer, version: int, entries: list[ListEntry]) -> Path:
    head, segments = cut_snapshot(CENTRE, version, sorted(entries, key=lambda e: e.badge), NOW)
    with path.open("wb") as out:
        for body in (head, *segments):
            raw = signer.sign(body)
            out.write(struct.pack(">I", len(raw)) + raw)
    return path


def test_a_unit_killed_while_installing_a_new_list_restarts_with_one_whole_list(
    make_agent: MakeAgent, signer: Signer, badge_key: bytes, tmp_path: Path
) -> None:
    """Killed at any point of a new snapshot's install, the unit comes back with the old list
    or the new one, never a mix: a card the new list revoked and a card only the new list
    knows are decided as one list says."""
    alice, bob = bytes.fromhex("04a1b2c3"), bytes.fromhex("04b0b0b0")
    alice_hash = bytes.fromhex(badge_hash(badge_key, alice))
    bob_hash = bytes.fromhex(badge_hash(badge_key, bob))
    filler = [ListEntry(badge(n), n + 10) for n in range(6 * SEGMENT_ENTRIES)]
    old = _snapshot_file(tmp_path / "v3.bin", signer, 3, [*filler, ListEntry(alice_hash, 1)])
    new = _snapshot_file(
        tmp_path / "v4.bin",
        signer,
        4,
        [*filler[1:], ListEntry(alice_hash, 1, REVOKED), ListEntry(bob_hash, 2)],
    )
    make_agent(data="unit").stop()  # writes the unit's config
    config = sorted(tmp_path.glob("unit-*.toml"))[0]
    seen_versions = set()
    # None: killed before the new list comes; "whole": once it is installed; else killed
    # that many seconds into its install (wherever that falls: fetching, packing, saving).
    for kill_after in (None, 0.0, 0.01, 0.03, 0.06, 0.1, 0.2, "whole"):
        data = tmp_path / "unit"
        for stale in data.glob("*"):
            stale.unlink()
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(config), str(old), str(new)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdin is not None and child.stdout is not None
            assert child.stdout.readline().strip() == "3"
            if kill_after is not None:
                child.stdin.write("go\n")
                child.stdin.flush()
            if kill_after == "whole":
                assert child.stdout.readline().strip() == "4"
            elif kill_after:
                threading.Event().wait(kill_after)  # a kill point, not a wait for anything
        finally:
            child.kill()
            child.wait()

        again = make_agent(data="unit")
        version = again.access.version
        seen_versions.add(version)
        if version == 3:
            assert again.access.decide(alice_hash, NOW).granted
            assert again.access.decide(bob_hash, NOW).needs_server
            assert len(again.access) == len(filler) + 1
        else:
            assert version == 4
            assert again.access.decide(alice_hash, NOW).reason == "revoked"
            assert again.access.decide(bob_hash, NOW).granted
            assert again.access.decide(filler[0].badge, NOW).needs_server
            assert len(again.access) == len(filler) + 1
        again.stop()
    assert seen_versions >= {3, 4}


def test_the_door_decides_from_the_old_list_until_the_new_one_is_whole(
    make_agent: MakeAgent, signer: Signer, badge_key: bytes
) -> None:
    agent = make_agent()
    alice = bytes.fromhex(badge_hash(badge_key, bytes.fromhex("04a1b2c3")))
    filler = [ListEntry(badge(n), n + 10) for n in range(3 * SEGMENT_ENTRIES)]
    head, segments = cut_snapshot(
        CENTRE, 3, sorted([*filler, ListEntry(alice, 1)], key=lambda e: e.badge), NOW
    )
    agent.handle(parsed(topics.LIST_HEAD), signer.sign(head))
    for segment in segments:
        agent.handle(parsed(topics.LIST_SEGMENT, index=segment.index), signer.sign(segment))
    wait_until(lambda: agent.access.version == 3, timeout=5, what="the first list")
    revoking = sorted([*filler, ListEntry(alice, 1, REVOKED)], key=lambda e: e.badge)
    head, segments = cut_snapshot(CENTRE, 4, revoking, NOW)
    agent.handle(parsed(topics.LIST_HEAD), signer.sign(head))
    for segment in segments[:-1]:
        agent.handle(parsed(topics.LIST_SEGMENT, index=segment.index), signer.sign(segment))
        assert agent.access.version == 3
        assert agent.access.decide(alice, NOW).granted

    agent.handle(parsed(topics.LIST_SEGMENT, index=segments[-1].index), signer.sign(segments[-1]))

    assert agent.access.version == 4
    assert agent.access.decide(alice, NOW).reason == "revoked"


def test_an_entry_whose_badge_is_written_another_way_is_still_found() -> None:
    """MessagePack may write 32 bytes as bin 16 too; such an entry is packed anew."""
    listed = sorted((ListEntry(badge(n), n + 1) for n in range(3)), key=lambda e: e.badge)
    raws = [msgspec.msgpack.encode(e) for e in listed]
    first = raws[0]
    raws[0] = first[:1] + b"\xc5\x00\x20" + first[3:]  # the same entry, badge as bin 16
    assert msgspec.msgpack.decode(raws[0], type=ListEntry) == listed[0]
    undecoded = msgspec.msgpack.decode(b"\x93" + b"".join(raws), type=list[msgspec.Raw])

    part = Part.signed(listed, undecoded)

    assert [part.get(e.badge) for e in listed] == listed


def test_staged_segments_are_not_the_saved_list_until_switched_in_whole(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db")
    box.save_snapshot([b"old0", b"old1"], b"old-head")
    box.save_delta(b"old-delta")
    box.stage_segment(1, b"new1")
    box.stage_segment(0, b"new0")

    assert box.load_list() == ([b"old0", b"old1"], b"old-delta")  # a restart now: the old
    box.close()
    box = Outbox(tmp_path / "outbox.db")
    assert box.load_list() == ([b"old0", b"old1"], b"old-delta")

    box.stage_segment(2, b"new2")
    box.save_snapshot(None, b"new-head")

    assert box.load_list() == ([b"new0", b"new1", b"new2"], None)
    assert box.load_head() == b"new-head"
    box.stage_segment(0, b"abandoned")
    box.clear_staged()
    box.save_snapshot(None, b"empty-head")
    assert box.load_list() == ([], None)
    box.close()
