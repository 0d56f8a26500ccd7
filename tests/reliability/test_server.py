"""The server fails: killed (SIGKILL) while it ingests, killed again while the units replay
their outboxes, and down for longer than the broker's queue for it holds."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest

from tests.conftest import wait_until
from tests.reliability.checker import stored_events
from tests.reliability.conftest import UNITS, Cluster
from tests.reliability.harness import (
    Size,
    Stopwatch,
    UnitProcess,
    exits,
    read_rows,
    sqlite_ro,
    variants,
)

SIZES = variants(
    Size(events=60, pause_s=0.03, fault_s=0),
    Size(events=334, pause_s=0.05, fault_s=0),
)


def stored(cluster: Cluster) -> int:
    return read_rows(cluster.server.db, "SELECT COUNT(*) FROM events")[0][0]


def on_engine(
    engine: str, cluster_factory: Callable[..., Cluster], request: pytest.FixtureRequest
) -> Cluster:
    """A cluster whose server stores in SQLite, or in a new database of the private
    PostgreSQL cluster."""
    if engine == "sqlite":
        return cluster_factory()
    return cluster_factory(database_url=request.getfixturevalue("postgres_cluster").database())


def check(cluster: Cluster, units: list[UnitProcess], report: Callable[[str], None], what: str):
    watch = Stopwatch()
    for unit in units:
        assert unit.wait(timeout=600) == 0, unit.log()[-3000:]
    cluster.converge()
    verdict = cluster.verdict()
    report(f"{what}: {verdict.summary()}; converged {watch():.1f} s after the restart")
    assert verdict.ok, verdict.details()
    return verdict


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
@pytest.mark.parametrize("size", SIZES)
def test_server_killed_while_ingesting(
    cluster_factory: Callable[..., Cluster],
    report: Callable[[str], None],
    size: Size,
    engine: str,
    request: pytest.FixtureRequest,
) -> None:
    cluster = on_engine(engine, cluster_factory, request)
    cluster.prepare()
    cluster.server.start()
    units = [cluster.unit(device) for device in UNITS]
    for unit in units:
        unit.start(exits(size.events, pause_s=size.pause_s), drain_s=300)
    wait_until(lambda: stored(cluster) >= size.events, timeout=120, what="events stored")
    cluster.server.kill()
    cluster.server.start()
    verdict = check(cluster, units, report, f"server SIGKILL while ingesting ({engine})")
    assert verdict.total("decided") == size.events * len(units)


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
@pytest.mark.parametrize("size", SIZES)
def test_server_killed_during_an_outbox_replay(
    cluster_factory: Callable[..., Cluster],
    report: Callable[[str], None],
    size: Size,
    engine: str,
    request: pytest.FixtureRequest,
) -> None:
    cluster = on_engine(engine, cluster_factory, request)
    cluster.prepare()
    units = [cluster.unit(device) for device in UNITS]
    # The server is down: every event waits in its unit's outbox.
    for unit in units:
        unit.start(exits(size.events * 3), drain_s=600)
    wait_until(
        lambda: all(len(u.printed_seqs()) == size.events * 3 for u in units),
        timeout=120,
        what="every event decided while the server is down",
    )
    backlog = size.events * 3 * len(units)
    cluster.server.start(wait=False)
    # Killed once part of the backlog is stored, before all of it is.
    wait_until(
        lambda: stored(cluster) > 0,  # prepare() made the tables
        timeout=120,
        what="the replay under way",
    )
    at_kill = stored(cluster)
    cluster.server.kill()
    cluster.server.start()
    verdict = check(
        cluster,
        units,
        report,
        f"server SIGKILL during a replay ({engine}, {at_kill} of {backlog} stored)",
    )
    assert verdict.total("decided") == backlog
    assert at_kill < backlog


def outbox_attempts(unit: UnitProcess) -> tuple[int, int]:
    """(events waiting, sends made of them so far) in a unit's outbox."""
    with contextlib.closing(sqlite_ro(unit.outbox_path)) as db:
        row = db.execute("SELECT COUNT(*), COALESCE(SUM(attempts), 0) FROM outbox").fetchone()
    return row[0], row[1]


def min_attempts(unit: UnitProcess) -> int:
    with contextlib.closing(sqlite_ro(unit.outbox_path)) as db:
        return db.execute("SELECT COALESCE(MIN(attempts), 0) FROM outbox").fetchone()[0]


QUEUE = 5
ACK_TIMEOUT_S = 0.5


@pytest.mark.parametrize(
    "size",
    variants(
        Size(events=20, pause_s=0, fault_s=0, repeats=5),
        Size(events=200, pause_s=0, fault_s=0, repeats=8),
    ),
)
def test_server_down_longer_than_the_broker_queue(
    cluster_factory: Callable[..., Cluster], report: Callable[[str], None], size: Size
) -> None:
    cluster = cluster_factory(queue=QUEUE)
    cluster.prepare()
    cluster.server.start()
    units = [cluster.unit(device, ack_timeout_s=ACK_TIMEOUT_S) for device in UNITS]
    cluster.server.kill()  # its broker session stays, and holds QUEUE messages at most
    watch = Stopwatch()
    for unit in units:
        unit.start(exits(size.events), drain_s=600)
    wait_until(
        lambda: all(len(u.printed_seqs()) == size.events for u in units),
        what="every event decided",
    )
    # size.repeats sends of every event: each wait twice the one before.
    wait_until(
        lambda: all(min_attempts(u) >= size.repeats for u in units),
        timeout=600,
        what=f"each event sent {size.repeats} times",
    )
    outage = watch()
    sends = sum(outbox_attempts(u)[1] for u in units)
    events = size.events * len(units)
    without_backoff = events * outage / ACK_TIMEOUT_S
    assert sends < without_backoff / 2, (sends, outage)
    cluster.server.start()
    verdict = check(
        cluster,
        units,
        report,
        f"server down {outage:.1f} s, broker queue {QUEUE}: {sends} sends of {events} events"
        f" (a resend every {ACK_TIMEOUT_S} s would have made {without_backoff:.0f})",
    )
    assert verdict.total("decided") == events
    assert "dropped" in cluster.broker.log_path.read_text()  # the broker did drop some
    for unit in units:
        assert len(stored_events(cluster.server.db_path, unit.device_id)) == size.events
