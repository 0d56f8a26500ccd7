"""The broker fails under three units mid-stream: killed (SIGKILL) or frozen (SIGSTOP), with
its persistence on and off. Every decided event reaches the server once, in a contiguous
sequence per unit."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from tests.conftest import wait_until
from tests.reliability.conftest import UNITS, Cluster
from tests.reliability.harness import Size, Stopwatch, UnitProcess, exits, variants

STREAM = variants(
    Size(events=60, pause_s=0.03, fault_s=8.0),
    # 1,000 events from three units; a frozen broker for 60 s.
    Size(events=334, pause_s=0.05, fault_s=60.0),
)


def stream(cluster: Cluster, size: Size) -> list[UnitProcess]:
    cluster.prepare()
    cluster.server.start()
    units = [cluster.unit(device) for device in UNITS]
    for unit in units:
        unit.start(exits(size.events, pause_s=size.pause_s), drain_s=300)
    return units


def some_decided(units: list[UnitProcess], share: float, size: Size) -> None:
    wait_until(
        lambda: all(len(u.printed_seqs()) >= size.events * share for u in units),
        timeout=120,
        what=f"{share:.0%} of each unit's events decided",
    )


def finish(cluster: Cluster, units: list[UnitProcess], report: Callable[[str], None], what: str):
    watch = Stopwatch()
    for unit in units:
        assert unit.wait(timeout=600) == 0, unit.log()[-3000:]
    cluster.converge()
    verdict = cluster.verdict()
    report(f"{what}: {verdict.summary()}; converged {watch():.1f} s after the fault healed")
    assert verdict.ok, verdict.details()
    return verdict


@pytest.mark.parametrize("persistence", [False, True], ids=["no-persistence", "persistence"])
@pytest.mark.parametrize("size", STREAM)
def test_broker_killed_mid_stream_and_restarted(
    cluster_factory: Callable[..., Cluster],
    report: Callable[[str], None],
    persistence: bool,
    size: Size,
) -> None:
    cluster = cluster_factory(persistence=persistence)
    units = stream(cluster, size)
    some_decided(units, 0.3, size)
    cluster.broker.kill()
    decided_at_kill = sum(len(u.printed_seqs()) for u in units)
    # The doors go on deciding while the broker is gone.
    wait_until(
        lambda: sum(len(u.printed_seqs()) for u in units) > decided_at_kill + 3 * len(units),
        what="events decided while the broker is down",
    )
    cluster.broker.start()
    verdict = finish(cluster, units, report, f"broker SIGKILL (persistence {persistence})")
    assert verdict.total("decided") == size.events * len(units)


@pytest.mark.parametrize("size", STREAM)
def test_broker_frozen_mid_stream(
    cluster_factory: Callable[..., Cluster], report: Callable[[str], None], size: Size
) -> None:
    cluster = cluster_factory()
    units = stream(cluster, size)
    some_decided(units, 0.2, size)
    cluster.broker.pause()
    # The fault's length is the test's subject: the broker stays frozen this long.
    threading.Event().wait(size.fault_s)
    cluster.broker.resume()
    verdict = finish(cluster, units, report, f"broker SIGSTOP {size.fault_s:g} s")
    assert verdict.total("decided") == size.events * len(units)
