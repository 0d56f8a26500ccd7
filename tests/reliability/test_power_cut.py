"""A power cut: broker, server and every unit killed at the same moment mid-stream, then
started again. Nothing decided is lost or stored twice; every outbox is sound."""

from __future__ import annotations

import signal
from collections.abc import Callable

import pytest

from tests.reliability.conftest import UNITS, Cluster
from tests.reliability.harness import Size, Stopwatch, exits, variants
from tests.reliability.test_broker import some_decided

LOCKED = ("output", 1.0)


@pytest.mark.parametrize(
    "size",
    variants(Size(events=60, pause_s=0.03, fault_s=0), Size(events=334, pause_s=0.05, fault_s=0)),
)
def test_everything_killed_at_once_and_restarted(
    cluster_factory: Callable[..., Cluster], report: Callable[[str], None], size: Size
) -> None:
    cluster = cluster_factory(persistence=True)
    cluster.prepare()
    cluster.server.start()
    units = [cluster.unit(device) for device in UNITS]
    for unit in units:
        unit.start(exits(size.events, pause_s=size.pause_s), drain_s=300)
    some_decided(units, 0.4, size)

    for unit in units:  # the same instant, as far as signals go
        unit.kill(signal.SIGKILL)
    cluster.server.kill()
    cluster.broker.kill()

    for unit in units:
        assert unit.outbox().integrity == "ok"
        assert unit.relock().returncode == 0  # what systemd runs when the unit boots again
        assert unit.relay() == LOCKED
    watch = Stopwatch()
    cluster.broker.start()
    cluster.server.start()
    for unit in units:
        unit.start(exits(1), drain_s=120)
    for unit in units:
        assert unit.wait(timeout=180) == 0, unit.log()[-3000:]
    cluster.converge()
    verdict = cluster.verdict()
    report(f"power cut: {verdict.summary()}; converged {watch():.1f} s after power came back")
    assert verdict.ok, verdict.details()
