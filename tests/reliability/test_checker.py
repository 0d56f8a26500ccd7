"""The checker itself: it tells lost, duplicated and unexpected events and seq gaps apart,
and the raw UID scan finds a UID in each of its written forms."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.reliability.checker import check_unit, raw_uid_hits
from tests.reliability.harness import OutboxState


@dataclass
class FakeUnit:
    device_id: str
    last_seq: int
    printed: list[int]

    def outbox(self) -> OutboxState:
        return OutboxState("e" * 32, self.last_seq, 0, "ok")

    def printed_seqs(self) -> list[int]:
        return self.printed


def server_db(tmp_path: Path, rows: list[tuple[int, str]]) -> Path:
    path = tmp_path / "server.db"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE events (id INTEGER PRIMARY KEY, device_id TEXT, seq INT,"
            " event_id TEXT, historical INT)"
        )
        db.executemany(
            "INSERT INTO events (device_id, seq, event_id, historical) VALUES ('u', ?, ?, 0)",
            rows,
        )
    return path


def test_every_event_delivered_once_is_ok(tmp_path: Path) -> None:
    db = server_db(tmp_path, [(1, "a"), (2, "b"), (3, "c")])
    verdict = check_unit(db, FakeUnit("u", 3, [1, 2, 3]))  # type: ignore[arg-type]
    assert verdict.ok and verdict.delivered_once == 3


def test_lost_duplicated_unexpected_and_gaps_are_told_apart(tmp_path: Path) -> None:
    db = server_db(tmp_path, [(1, "a"), (1, "a2"), (3, "c"), (9, "z"), (4, "c")])
    verdict = check_unit(db, FakeUnit("u", 5, [1, 2, 3, 4, 5, 6]))  # type: ignore[arg-type]
    assert verdict.lost == [2, 5, 6]  # 6 was printed, yet the outbox's range ends at 5
    assert verdict.duplicated == [1, 3, 4]  # seq 1 twice; event "c" under seqs 3 and 4
    assert verdict.unexpected == [9]
    assert verdict.gaps == [2, 5, 6, 7, 8]
    assert not verdict.ok


@pytest.mark.parametrize(
    "written", [b"04a1b2c3", b"04A1B2C3", b"04:a1:b2:c3", b"04:A1:B2:C3", b"\x04\xa1\xb2\xc3"]
)
def test_the_uid_scan_finds_each_written_form(tmp_path: Path, written: bytes) -> None:
    (tmp_path / "server.db-wal").write_bytes(b"xx" + written + b"yy")
    (tmp_path / "script-1.txt").write_text("tap entree 04a1b2c3\n")  # the test's own input
    assert raw_uid_hits([tmp_path], ["04a1b2c3"], inputs=("script-",)) == [
        f"{tmp_path / 'server.db-wal'}: 04a1b2c3"
    ]
    (tmp_path / "server.db-wal").unlink()
    assert raw_uid_hits([tmp_path], ["04a1b2c3"], inputs=("script-",)) == []
