"""Several units' events in one write: each unit's result, a failing unit failing alone."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from server.store import IngestResult, Store
from tests.server.support import badge_in


def test_each_unit_gets_its_result_and_a_bad_one_fails_alone(tmp_path: Path) -> None:
    store = Store(tmp_path / "telecentre.db")
    try:
        for centre in ("boitron", "belleme"):
            store.create_centre(centre, centre.title())
            store.assign_device(f"{centre}-01", centre)
        now = time.time()
        good = [badge_in("boitron-01", 1, 1), badge_in("boitron-01", 2, 2)]
        broken = badge_in("belleme-01", 1, 3)
        # What a bug upstream could hand over: the store must fail this unit only.
        broken.ts = "not a time"  # type: ignore[assignment]
        other = [badge_in("belleme-01", 2, 4)]
        results = store.ingest_many(
            [("boitron-01", good, now), ("belleme-01", [broken], now), ("belleme-02", other, now)]
        ).result(timeout=10)
        assert isinstance(results[0], IngestResult) and results[0].seqs == [1, 2]
        assert results[0].new == 2 and results[0].centre_id == "boitron"
        assert isinstance(results[1], Exception)
        assert isinstance(results[2], IngestResult) and results[2].new == 1
        assert store.event_count() == 3
        present = {c["centre_id"]: c["present"] for c in store.occupancy(time.time())}
        assert present["boitron"] == 2  # folded into live state despite the failing unit

        again = store.ingest_many([("boitron-01", good, now)]).result(timeout=10)
        assert again[0].new == 0 and again[0].seqs == [1, 2]  # a resend: stored once
        assert store.event_count() == 3
    finally:
        store.close()


def test_a_unit_whose_outbox_was_reset_has_every_event_kept_and_is_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(tmp_path / "telecentre.db")
    try:
        store.create_centre("boitron", "Boitron")
        store.assign_device("boitron-01", "boitron")
        now = time.time()
        first = [badge_in("boitron-01", seq, seq) for seq in (1, 2, 3)]
        store.ingest_many([("boitron-01", first, now)]).result(timeout=10)
        # A new outbox (a new epoch) counts from 1 again: other events, the same seqs.
        reset = [badge_in("boitron-01", seq, 10 + seq, epoch="f" * 32) for seq in (1, 2, 4)]
        with caplog.at_level(logging.WARNING, logger="server.store.sqlite.events"):
            (result,) = store.ingest_many([("boitron-01", reset, now)]).result(timeout=10)
        assert result.new == 3 and store.event_count() == 6
        warned = [r.getMessage() for r in caplog.records if "reused seq" in r.getMessage()]
        assert warned == [
            "unit boitron-01 reused seq 1: its outbox was reset; event kept",
            "unit boitron-01 reused seq 2: its outbox was reset; event kept",
        ]
    finally:
        store.close()
