"""The edge agent killed with SIGKILL at random points, again and again: its outbox stays a
sound SQLite file, the relay is relocked by the stop step every time, and every event it
decided reaches the server exactly once."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from tests.conftest import wait_until
from tests.reliability.conftest import Cluster
from tests.reliability.harness import Size, exits, variants

LOCKED = ("output", 1.0)  # active-low relay boards (the default): locked when high


@pytest.mark.parametrize(
    "size",
    variants(
        Size(events=200, pause_s=0.01, fault_s=0, repeats=8),
        Size(events=200, pause_s=0.01, fault_s=0, repeats=100),
    ),
)
def test_agent_killed_at_random_points(
    cluster_factory: Callable[..., Cluster], report: Callable[[str], None], size: Size
) -> None:
    rng = random.Random(12)
    cluster = cluster_factory()
    cluster.prepare()
    cluster.server.start()
    unit = cluster.unit("boitron-01")
    energised_at_kill = 0
    for _ in range(size.repeats):
        before = len(unit.printed_seqs())
        unit.start(exits(size.events, pause_s=size.pause_s), drain_s=60)
        # A random point: from before its first event (still starting) to well into the run.
        target = before + rng.randint(0, 40)
        wait_until(
            lambda t=target: len(unit.printed_seqs()) >= t or not unit.running(),
            timeout=60,
            what="the unit to reach its kill point",
        )
        assert unit.running(), unit.log()[-2000:]
        unit.kill()
        if unit.outbox_path.exists():
            assert unit.outbox().integrity == "ok"
        energised_at_kill += unit.relay() not in (None, LOCKED)
        relock = unit.relock()
        assert relock.returncode == 0, relock.stderr
        assert unit.relay() == LOCKED
    unit.start(exits(1), drain_s=120)
    assert unit.wait(timeout=180) == 0, unit.log()[-3000:]
    seconds = cluster.converge()
    verdict = cluster.verdict()
    report(
        f"{size.repeats} SIGKILLs ({energised_at_kill} with the relay energised, relocked "
        f"every time): {verdict.summary()}; converged {seconds:.1f} s after the last run"
    )
    assert verdict.ok, verdict.details()
    assert energised_at_kill > 0
