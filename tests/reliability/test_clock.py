"""A unit whose clock is wrong: it boots in 1970 before time synchronisation, then its clock
jumps an hour forward and an hour back. Every event it decides reaches the server once, in
seq order, with the time the unit had and whether that time was synchronised."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from gpiozero.pins.mock import MockFactory

from edge import config as edge_config
from edge.agent import EdgeAgent
from edge.hardware.build import build
from tests.reliability.conftest import Cluster
from tests.reliability.harness import CONTACT_PIN, OutboxState, sqlite_ro, unit_config

DEVICE = "boitron-01"
HOUR = 3600.0


class ClockedUnit:
    """A real agent in this process whose wall clock the test sets (as the checker sees a
    unit: its device id, its outbox and the seqs it decided)."""

    def __init__(self, cluster: Cluster, workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        conf = workdir / "unit.toml"
        self.outbox_path = workdir / "data" / "outbox.db"
        conf.write_text(
            unit_config(
                device_id=DEVICE,
                centre="boitron",
                broker=cluster.broker,
                key_file=cluster.key_file,
                server_key=cluster.server_key,
                data_dir=workdir / "data",
            )
        )
        self.device_id = DEVICE
        self.wall: Callable[[], float] = lambda: 86_400.0 + time.monotonic() % 1000  # 1970
        self.synced = False
        factory = MockFactory()
        factory.pin(CONTACT_PIN).drive_low()
        cfg = edge_config.load(conf)
        self.agent = EdgeAgent(
            cfg,
            build(cfg, pin_factory=factory),
            clock=lambda: self.wall(),
            synced=lambda: self.synced,
        )
        self.decided: list[int] = []

    def press(self, count: int) -> list[int]:
        seqs = [e.seq for e in (self.agent.exit_pressed("entree") for _ in range(count)) if e]
        self.decided += seqs
        return seqs

    def printed_seqs(self) -> list[int]:
        return self.decided

    def pending(self) -> int:
        return self.agent.outbox.pending_count()

    def outbox(self) -> OutboxState:
        with contextlib.closing(sqlite_ro(self.outbox_path)) as db:
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall())
            pending = db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        return OutboxState(meta["epoch"], int(meta.get("last_seq", 0)), pending, integrity)


def test_a_clock_from_1970_then_jumping_an_hour_each_way(
    cluster_factory: Callable[..., Cluster], report: Callable[[str], None]
) -> None:
    cluster = cluster_factory()
    cluster.prepare()
    cluster.server.start()
    unit = ClockedUnit(cluster, cluster.tmp / DEVICE)
    unit.agent.start()
    try:
        phases: dict[str, list[int]] = {}
        phases["1970, unsynchronised"] = unit.press(5)
        unit.wall, unit.synced = time.time, True  # NTP answers
        phases["synchronised"] = unit.press(5)
        unit.wall = lambda: time.time() + HOUR
        phases["an hour ahead"] = unit.press(5)
        unit.wall = lambda: time.time() - HOUR
        phases["an hour behind"] = unit.press(5)
        unit.wall = time.time
        phases["right again"] = unit.press(5)
        seconds = cluster.converge([unit])  # type: ignore[list-item]
        verdict = cluster.verdict([unit])  # type: ignore[list-item]
    finally:
        unit.agent.stop()
    assert verdict.ok, verdict.details()
    with contextlib.closing(sqlite_ro(cluster.server.db_path)) as db:
        rows = {
            seq: (ts, synced, suspect)
            for seq, ts, synced, suspect in db.execute(
                "SELECT seq, ts, clock_synced, time_suspect FROM events WHERE device_id = ?",
                (DEVICE,),
            )
        }
    now = time.time()
    for seq in phases["1970, unsynchronised"]:
        ts, synced, _ = rows[seq]
        assert ts < 10 * 86_400 and synced == 0  # kept as the unit said, marked unsynchronised
    for seq in phases["an hour ahead"]:
        ts, synced, suspect = rows[seq]
        assert ts > now and synced == 1 and suspect == 1  # ahead of its arrival
    for seq in phases["an hour behind"]:
        ts, _, _ = rows[seq]
        assert ts < now - HOUR + 600
    report(
        f"clock from 1970 then +1 h / -1 h ({len(rows)} events): {verdict.summary()}; "
        f"converged in {seconds:.1f} s"
    )
