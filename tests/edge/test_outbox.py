"""The unit's durable outbox: sequence numbers, (re)sending, acknowledgement, presence."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.outbox import Outbox, OutboxWriteError
from protocol.messages import Event, decode, encode

TS = 1_760_000_000.0
EPOCH = "0123456789abcdef0123456789abcdef"


def room_event(seq: int) -> Event:
    return Event(
        event_id=str(uuid.uuid4()),
        device_id="boitron-01",
        epoch=EPOCH,
        seq=seq,
        kind="room",
        ts=TS,
        clock_synced=True,
        room="visio",
        room_state="occupied",
    )


def access_event(member_id: int) -> Callable[[int], Event]:
    def build(seq: int) -> Event:
        return Event(
            event_id=str(uuid.uuid4()),
            device_id="boitron-01",
            epoch=EPOCH,
            seq=seq,
            kind="access",
            ts=TS,
            clock_synced=True,
            door="entree",
            badge_hash="ab" * 32,
            granted=True,
            reason="granted",
            direction="in",
            member_id=member_id,
        )

    return build


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "outbox.db"


@pytest.fixture
def outbox(path: Path) -> Iterator[Outbox]:
    box = Outbox(path)
    yield box
    box.close()


def seqs(pending: list) -> list[int]:
    return [p.seq for p in pending]


def test_seqs_start_at_one_and_increase(outbox: Outbox) -> None:
    events = [outbox.record(room_event, offline=False) for _ in range(3)]

    assert [e.seq for e in events] == [1, 2, 3]
    assert outbox.pending_count() == 3


def test_seqs_are_never_reused_after_a_restart_even_when_all_were_acked(path: Path) -> None:
    box = Outbox(path)
    for _ in range(3):
        box.record(room_event, offline=False)
    box.ack([1, 2, 3])
    assert box.pending_count() == 0
    box.close()

    reopened = Outbox(path)
    try:
        event = reopened.record(room_event, offline=False)
    finally:
        reopened.close()

    assert event.seq == 4  # the server would drop a reused (device_id, seq) as a duplicate


def test_seqs_continue_after_a_restart_with_events_pending(path: Path) -> None:
    box = Outbox(path)
    box.record(room_event, offline=True)
    box.record(room_event, offline=True)
    box.close()

    reopened = Outbox(path)
    try:
        event = reopened.record(room_event, offline=False)
        pending = reopened.due(now=0.0)
    finally:
        reopened.close()

    assert event.seq == 3
    assert seqs(pending) == [1, 2, 3]


def test_due_returns_unsent_events_oldest_first(outbox: Outbox) -> None:
    for _ in range(4):
        outbox.record(room_event, offline=False)

    pending = outbox.due(now=100.0)

    assert seqs(pending) == [1, 2, 3, 4]
    assert [p.event.seq for p in pending] == [1, 2, 3, 4]
    assert seqs(outbox.due(now=100.0, limit=2)) == [1, 2]


def test_sent_events_wait_for_their_ack_then_come_back_after_the_timeout(outbox: Outbox) -> None:
    for _ in range(3):
        outbox.record(room_event, offline=False)
    outbox.mark_sent([1, 2], now=100.0, ack_timeout_s=10)

    in_flight = outbox.due(now=105.0)
    timed_out = outbox.due(now=110.5)

    assert seqs(in_flight) == [3]  # only the one never sent
    assert seqs(timed_out) == [1, 2, 3]


def test_ack_deletes_only_the_named_seqs(outbox: Outbox) -> None:
    for _ in range(4):
        outbox.record(room_event, offline=False)

    removed = outbox.ack([2, 4, 99])

    assert removed == 2
    assert outbox.pending_count() == 2
    assert seqs(outbox.due(now=0.0)) == [1, 3]


def test_resend_all_makes_in_flight_events_due_again_in_order(outbox: Outbox) -> None:
    for _ in range(3):
        outbox.record(room_event, offline=False)
    outbox.mark_sent([1, 2, 3], now=100.0, ack_timeout_s=10)
    assert outbox.due(now=101.0) == []

    outbox.resend_all()

    assert seqs(outbox.due(now=101.0)) == [1, 2, 3]


def test_an_event_is_historical_when_created_offline_or_sent_again(outbox: Outbox) -> None:
    outbox.record(room_event, offline=False)  # 1: live
    outbox.record(room_event, offline=True)  # 2: created while the link was down
    outbox.record(room_event, offline=False)  # 3: will be sent, then sent again

    first = {p.seq: p for p in outbox.due(now=100.0)}
    outbox.mark_sent([3], now=100.0, ack_timeout_s=10)
    outbox.resend_all()
    again = {p.seq: p for p in outbox.due(now=100.0)}

    assert [first[s].historical for s in (1, 2, 3)] == [False, True, False]
    assert again[3].historical
    assert again[3].attempts == 1
    assert not again[1].historical
    # The flag travels in the payload the server reads.
    assert decode(Event, again[2].payload()).historical is True
    assert decode(Event, again[3].payload()).historical is True
    assert decode(Event, again[1].payload()).historical is False


def test_presence_is_stored_with_the_event(outbox: Outbox) -> None:
    outbox.record(access_event(7), offline=False, presence=(7, True, TS))
    assert outbox.inside_since(7) == TS

    outbox.record(access_event(7), offline=False, presence=(7, False, TS + 60))

    assert outbox.inside_since(7) is None
    assert outbox.pending_count() == 2


def test_a_failing_event_build_stores_neither_event_nor_presence(outbox: Outbox) -> None:
    def broken(seq: int) -> Event:
        raise RuntimeError("cannot build")

    with pytest.raises(RuntimeError):
        outbox.record(broken, offline=False, presence=(7, True, TS))

    assert outbox.pending_count() == 0
    assert outbox.inside_since(7) is None
    assert outbox.record(room_event, offline=False).seq == 1  # the seq was not consumed


def test_a_failing_presence_write_rolls_the_event_back(path: Path) -> None:
    box = Outbox(path)
    try:
        box.record(access_event(7), offline=False, presence=(7, True, TS))
        bad_member_id: Any = "not-an-integer"  # refused by INTEGER PRIMARY KEY, after the INSERT
        with pytest.raises(sqlite3.IntegrityError):
            box.record(access_event(8), offline=False, presence=(bad_member_id, True, TS))

        assert box.pending_count() == 1
        assert box.record(room_event, offline=False).seq == 2
    finally:
        box.close()

    reopened = Outbox(path)  # the rollback reached the file too: seq 2 is the last one
    try:
        assert reopened.record(room_event, offline=False).seq == 3
        assert reopened.inside_since(7) == TS
    finally:
        reopened.close()


def test_a_badge_out_the_disk_refuses_leaves_the_member_inside(path: Path) -> None:
    """Presence is read from memory at every card: it must follow the file, not the try."""
    box = Outbox(path)
    try:
        box.record(access_event(7), offline=False, presence=(7, True, TS))
        pages = box._db.execute("PRAGMA page_count").fetchone()[0]
        box._db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "disk full"
        with pytest.raises(OutboxWriteError):
            for _ in range(50):
                box.record(
                    access_event(7),
                    offline=False,
                    presence=(7, False, TS + 60),
                    setting=("pad", "ab" * 20_000),
                )

        assert box.inside_since(7) == TS
    finally:
        box.close()
    reopened = Outbox(path)
    try:
        assert reopened.inside_since(7) == TS
    finally:
        reopened.close()


def test_forget_presence_before_drops_old_stays_only(outbox: Outbox) -> None:
    outbox.record(access_event(1), offline=False, presence=(1, True, TS - 20 * 3600))
    outbox.record(access_event(2), offline=False, presence=(2, True, TS - 3600))

    outbox.forget_presence_before(TS - 14 * 3600)

    assert outbox.inside_since(1) is None
    assert outbox.inside_since(2) == TS - 3600


def test_the_signed_list_payloads_survive_a_restart(path: Path) -> None:
    box = Outbox(path)
    assert box.load_list() == ([], None)
    box.save_snapshot([b"old"])
    box.save_delta(b"old delta")
    box.save_snapshot([b"seg0", b"seg1"])  # a new snapshot drops the old delta
    box.save_delta(b"delta")
    box.close()

    reopened = Outbox(path)
    try:
        loaded = reopened.load_list()
    finally:
        reopened.close()

    assert loaded == ([b"seg0", b"seg1"], b"delta")


def test_rejected_events_move_to_their_own_table(outbox: Outbox) -> None:
    for _ in range(3):
        outbox.record(room_event, offline=False)

    moved = outbox.reject([(2, "malformed"), (99, "malformed")], at=TS)

    assert moved == 1
    assert outbox.pending_count() == 2
    assert outbox.rejected_count() == 1
    assert outbox.rejected() == [(2, "malformed")]


def test_command_ids_are_kept_until_after_their_expiry(path: Path) -> None:
    box = Outbox(path)
    box.record(room_event, offline=False, command=("c-1", TS + 10))
    box.remember_command("c-2", TS + 1000)
    box.close()

    reopened = Outbox(path)
    try:
        assert reopened.command_seen("c-1") and reopened.command_seen("c-2")
        reopened.forget_commands_before(TS + 100)
        assert not reopened.command_seen("c-1")
        assert reopened.command_seen("c-2")
    finally:
        reopened.close()


def test_a_failing_command_record_stores_no_event(outbox: Outbox) -> None:
    outbox.record(room_event, offline=False, command=("c-1", TS))

    with pytest.raises(sqlite3.IntegrityError):
        outbox.record(room_event, offline=False, command=("c-1", TS))

    assert outbox.pending_count() == 1


def test_the_epoch_is_made_with_the_file_and_kept(path: Path) -> None:
    box = Outbox(path)
    epoch = box.epoch
    box.close()
    reopened = Outbox(path)
    try:
        assert reopened.epoch == epoch
        assert len(epoch) == 32 and int(epoch, 16) >= 0
    finally:
        reopened.close()


def test_an_outbox_file_from_before_send_times_keeps_its_events_and_their_acks_work(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.db"
    with sqlite3.connect(path) as old:  # the table as units wrote it before ``sent_at``
        old.execute(
            "CREATE TABLE outbox (seq INTEGER PRIMARY KEY, payload TEXT NOT NULL,"
            " created_offline INTEGER NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,"
            " next_attempt_at REAL)"
        )
        old.execute(
            "INSERT INTO outbox (seq, payload, created_offline) VALUES (1, ?, 0)",
            (encode(room_event(1)).decode(),),
        )
    old.close()
    outbox = Outbox(path)
    try:
        (pending,) = outbox.due(now=0.0)
        assert pending.seq == 1 and pending.attempts == 0
        outbox.mark_sent([1], now=100.0, ack_timeout_s=10)
        assert outbox.ack([1], now=101.0, wait_s=10) == 1
        assert outbox.pending_count() == 0
    finally:
        outbox.close()


def wal_flushes(monkeypatch: pytest.MonkeyPatch, log: list[str]) -> None:
    """Append "flush" to ``log`` at every fsync of an outbox's WAL."""
    import edge.outbox

    fsync = os.fsync

    def spy(fd: int) -> None:
        fsync(fd)
        if os.readlink(f"/proc/self/fd/{fd}").endswith("outbox.db-wal"):
            log.append("flush")

    monkeypatch.setattr(edge.outbox.os, "fsync", spy)


def test_an_event_recorded_unflushed_goes_to_the_disk_before_it_can_be_sent(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    log: list[str] = []
    wal_flushes(monkeypatch, log)

    outbox.record(room_event, offline=False, flush=False)
    log.append("recorded")
    due = outbox.due(now=0.0)
    log.append(f"due {seqs(due)}")
    outbox.record(room_event, offline=False)
    log.append("recorded")
    outbox.due(now=0.0)

    # Flushed by ``due`` before it handed the event over; the second one at once, and a
    # flushed outbox is not flushed again.
    assert log == ["recorded", "flush", "due [1]", "flush", "recorded"]


def test_an_event_written_but_not_flushed_survives_its_process_being_killed(
    path: Path,
) -> None:
    script = (
        "import os, signal, sys\n"
        "sys.path.insert(0, sys.argv[2])\n"
        "from edge.outbox import Outbox\n"
        "from tests.edge.test_outbox import room_event\n"
        "box = Outbox(sys.argv[1])\n"
        "box.record(room_event, offline=False, flush=False)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", script, str(path), str(root)], capture_output=True, timeout=60
    )
    assert done.returncode == -signal.SIGKILL, done.stderr.decode()

    reopened = Outbox(path)
    try:
        assert [p.event.kind for p in reopened.due(now=0.0)] == ["room"]
    finally:
        reopened.close()


def test_a_flush_the_disk_refuses_holds_the_events_back_and_says_why_until_one_works(
    outbox: Outbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    import edge.outbox

    told: list[str | None] = []
    outbox.on_write_state = lambda: told.append(outbox.flush_failure)
    fsync = os.fsync

    def failing(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(edge.outbox.os, "fsync", failing)
    outbox.record(room_event, offline=False, flush=False)
    assert outbox.due(now=0.0) == []  # not sent: a power cut could still take it back
    assert outbox.due(now=0.0) == []
    failure = outbox.flush_failure
    assert failure is not None and "cannot flush" in failure and "Input/output error" in failure

    monkeypatch.setattr(edge.outbox.os, "fsync", fsync)
    assert seqs(outbox.due(now=0.0)) == [1]
    assert outbox.flush_failure is None
    assert told == [failure, None]  # the status was told once of each change
