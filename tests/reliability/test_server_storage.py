"""The server's disk fills up while units send: it acknowledges nothing it could not commit,
keeps running, and stores everything once there is room again."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from tests.reliability.conftest import UNITS, Cluster
from tests.reliability.harness import Stopwatch, exits, fill, sqlite_ro


def test_a_full_disk_on_the_server_holds_the_acks_and_loses_nothing(
    cluster_factory: Callable[..., Cluster],
    small_disk: Callable[[Path, int], Path],
    report: Callable[[str], None],
) -> None:
    cluster = cluster_factory()
    small_disk(cluster.settings.data_dir, 16 * 1024)
    cluster.prepare()
    cluster.server.start()
    units = [cluster.unit(device) for device in UNITS]
    for unit in units:
        unit.start(exits(10), drain_s=60)
    for unit in units:
        assert unit.wait(timeout=90) == 0, unit.log()[-3000:]
    cluster.converge()

    filler = fill(cluster.settings.data_dir)
    with contextlib.closing(sqlite_ro(cluster.server.db_path)) as db:
        before = db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    for unit in units:
        unit.start(exits(40), drain_s=3)
    for unit in units:
        assert unit.wait(timeout=90) == 0
    # Acknowledged is committed: what a unit no longer holds is in the database (a commit
    # may still fit in room SQLite already has), and the rest waits on the units (a commit
    # whose ack came after a unit stopped is counted on both sides).
    held = [unit.pending() for unit in units]
    with contextlib.closing(sqlite_ro(cluster.server.db_path)) as db:
        stored = db.execute("SELECT COUNT(*) FROM events").fetchone()[0] - before
    assert sum(held) + stored >= 40 * len(units), (held, stored)
    assert sum(held) > 0  # the full disk did stop commits
    assert cluster.server.healthy()  # still running, still answering
    log = cluster.server.tail(200_000)
    assert "disk is full" in log or "database or disk is full" in log

    watch = Stopwatch()
    filler.unlink()
    for unit in units:
        unit.start(exits(1), drain_s=300)
    for unit in units:
        assert unit.wait(timeout=400) == 0, unit.log()[-3000:]
    cluster.converge()
    verdict = cluster.verdict()
    report(
        f"server disk full: {sum(held)} events held by the units ({stored} committed and "
        f"acked while full, {before} stored before); {verdict.summary()}; converged "
        f"{watch():.1f} s after room was made"
    )
    assert verdict.ok, verdict.details()
