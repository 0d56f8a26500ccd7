"""The unit's storage fails: an outbox damaged on disk, a disk that fills up.

A damaged outbox is set aside at boot and a new one started (the unit keeps deciding and
says so in its status); a full disk makes the unit raise a fault and record nothing, and
once there is room again it records and delivers as before.
"""

from __future__ import annotations

import contextlib
import signal
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.outbox import Outbox, OutboxWriteError
from protocol.messages import Event
from tests.conftest import wait_until
from tests.reliability.checker import stored_events
from tests.reliability.conftest import Cluster
from tests.reliability.harness import exits, fill


def event(seq: int) -> Event:
    return Event(
        event_id=str(uuid.uuid4()),
        device_id="boitron-01",
        epoch="0" * 32,
        seq=seq,
        kind="exit",
        door="entree",
        ts=1_800_000_000.0,
        clock_synced=True,
    )


def damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "header":
        data[:16] = b"not a database!\0"
    else:  # the pages after the first: each b-tree page's type byte made invalid
        page = 4096
        assert len(data) >= 3 * page
        for start in range(page, len(data), page):
            data[start] = 0x77
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["header", "pages"])
def test_a_damaged_outbox_is_set_aside_and_a_new_one_started(tmp_path: Path, how: str) -> None:
    path = tmp_path / "outbox.db"
    outbox = Outbox(path)
    for _ in range(300):
        outbox.record(event, offline=False)
    old_epoch = outbox.epoch
    outbox.close()
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{path}{suffix}").unlink()
    damage(path, how)

    outbox = Outbox(path)
    try:
        (aside,) = tmp_path.glob("outbox.db.damaged-*Z")
        (said,) = outbox.damaged
        assert said.startswith(f"outbox: damaged file set aside as {aside.name} (")
        assert said.endswith("); a new one started") and "\n" not in said
        why = "file is not a database" if how == "header" else "malformed"
        assert why in said
        assert outbox.epoch != old_epoch  # the server keeps both files' events apart
        assert outbox.record(event, offline=False).seq == 1  # it keeps deciding
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        outbox.close()


def test_a_sound_outbox_reports_nothing(tmp_path: Path) -> None:
    Outbox(tmp_path / "outbox.db").close()
    outbox = Outbox(tmp_path / "outbox.db")
    assert outbox.damaged == []
    outbox.close()
    assert list(tmp_path.glob("*damaged*")) == []


def test_a_failed_write_records_nothing_and_says_why(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "outbox.db")
    told: list[str | None] = []
    outbox.on_write_state = lambda: told.append(outbox.write_failure)
    outbox.record(event, offline=False)
    pages = outbox._db.execute("PRAGMA page_count").fetchone()[0]
    outbox._db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite's own "disk full"
    big = b"x" * 20_000
    with pytest.raises(OutboxWriteError, match="full"):
        for _ in range(50):
            outbox.record(lambda seq: event(seq), offline=False, setting=("pad", big.hex()))
    assert outbox.write_failure is not None and "full" in outbox.write_failure
    assert told == [outbox.write_failure]
    assert outbox.unwritten == 1
    outbox._db.execute("PRAGMA max_page_count = 1073741823")
    nxt = outbox.record(event, offline=False)
    assert outbox.write_failure is None
    assert told[1:] == [None]  # told again: the status drops the fault
    assert outbox.pending_count() == nxt.seq  # no seq was spent on the failed write
    outbox.close()


def test_a_unit_with_a_damaged_outbox_starts_reports_it_and_keeps_deciding(
    cluster_factory: Callable[..., Cluster], report: Callable[[str], None]
) -> None:
    cluster = cluster_factory()
    cluster.prepare()
    cluster.server.start()
    unit = cluster.unit("boitron-01")
    unit.start(exits(40), drain_s=60)
    assert unit.wait(timeout=90) == 0
    cluster.converge()
    first_epoch = unit.outbox().epoch
    damage(unit.outbox_path, "header")

    unit.start(exits(10), drain_s=60)
    assert unit.wait(timeout=90) == 0, unit.log()[-3000:]
    (aside,) = unit.data_dir.glob("outbox.db.damaged-*Z")
    state = unit.outbox()
    assert state.epoch != first_epoch and state.last_seq == 10 and state.pending == 0
    status, body = cluster.server.api("GET", "/api/devices/boitron-01", cluster.token)
    assert status == 200 and isinstance(body, dict)
    assert any(f"set aside as {aside.name}" in f for f in body["faults"]), body["faults"]
    rows = stored_events(cluster.server.db_path, "boitron-01")
    assert len(rows) == 50 and len({eid for _, eid, _ in rows}) == 50  # both files' events
    report(f"damaged outbox set aside as {aside.name}: 40 + 10 events stored, the fault shown")


# -- a full disk ------------------------------------------------------------------------------


def test_a_full_disk_on_the_unit_raises_a_fault_and_loses_nothing_decided(
    cluster_factory: Callable[..., Cluster],
    small_disk: Callable[[Path, int], Path],
    report: Callable[[str], None],
) -> None:
    cluster = cluster_factory()
    cluster.prepare()
    cluster.server.start()
    unit = cluster.unit("boitron-01")
    small_disk(unit.data_dir, 4096)
    unit.start(exits(2000, pause_s=0.02) + ["wait 3600"], drain_s=60)
    wait_until(lambda: len(unit.printed_seqs()) >= 20, timeout=60, what="events recorded")
    filler = fill(unit.data_dir)
    wait_until(lambda: "nothing recorded" in unit.log(), timeout=60, what="a write to fail")
    faults = wait_until(
        lambda: [
            f
            for f in cluster.server.api("GET", "/api/devices/boitron-01", cluster.token)[1][
                "faults"
            ]
            if "cannot store events" in f
        ],
        timeout=30,
        what="the fault on the server",
    )
    assert unit.running()  # an alarm, not a crash
    failed_at = unit.log().count("nothing recorded")
    filler.unlink()
    recorded = len(unit.printed_seqs())
    wait_until(lambda: len(unit.printed_seqs()) > recorded + 5, timeout=60, what="records again")
    wait_until(
        lambda: (
            not any(
                "cannot store events" in f
                for f in cluster.server.api("GET", "/api/devices/boitron-01", cluster.token)[1][
                    "faults"
                ]
            )
        ),
        timeout=30,
        what="the fault to clear on the server",
    )
    unit.kill(signal.SIGTERM)
    unit.start(exits(1), drain_s=60)
    assert unit.wait(timeout=90) == 0, unit.log()[-3000:]
    cluster.converge()
    verdict = cluster.verdict()
    assert unit.outbox().integrity == "ok"
    report(
        f"unit disk full: fault {faults[0]!r}; {failed_at}+ presses not recorded while full; "
        f"{verdict.summary()}"
    )
    assert verdict.ok, verdict.details()
