"""A unit cut from the broker by a TCP proxy the test controls, by a silent drop and by a
reset: the door goes on deciding from its list, revocations made before the cut hold, one
made during the cut applies once the link heals, and the events of the cut arrive in order,
marked historical."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from tests.conftest import wait_until
from tests.reliability.checker import raw_uid_hits, stored_events
from tests.reliability.conftest import Cluster
from tests.reliability.harness import Proxy, Size, Stopwatch, UnitProcess, exits, variants

ALICE, BOB, CAROL = "04a1b2c3", "04b0b0b0", "04cacaca"
DEVICE = "boitron-01"


@pytest.fixture
def proxy_for() -> Iterator[Callable[[int], Proxy]]:
    made: list[Proxy] = []

    def make(port: int) -> Proxy:
        made.append(Proxy(port))
        return made[-1]

    yield make
    for proxy in made:
        proxy.close()


def device(cluster: Cluster) -> dict:
    status, body = cluster.server.api("GET", f"/api/devices/{DEVICE}", cluster.token)
    assert status == 200, body
    assert isinstance(body, dict)
    return body


def run_until(unit: UnitProcess, done: Callable[[], object], what: str) -> None:
    """Run the unit idle until ``done``, then stop it as systemd does (SIGTERM)."""
    import signal

    unit.start(["wait 3600"])
    try:
        wait_until(done, timeout=120, what=what)
    finally:
        unit.kill(signal.SIGTERM)


def decisions(unit: UnitProcess, since: int) -> list[dict[str, str]]:
    """The access events a unit printed after byte ``since`` of its log."""
    out = []
    for line in unit.log()[since:].splitlines():
        if line.startswith("event #") and " access " in line:
            out.append(dict(w.split("=", 1) for w in line.split()[3:] if "=" in w))
    return out


@pytest.mark.parametrize("mode", ["drop", "reset"])
@pytest.mark.parametrize(
    "size",
    variants(
        Size(events=5, pause_s=0, fault_s=10),
        Size(events=50, pause_s=0, fault_s=600),  # ten minutes
    ),
)
def test_a_partitioned_unit_decides_alone_and_catches_up(
    cluster_factory: Callable[..., Cluster],
    proxy_for: Callable[[int], Proxy],
    report: Callable[[str], None],
    mode: str,
    size: Size,
) -> None:
    cluster = cluster_factory()
    cluster.prepare(members={ALICE: "Alice Martin", BOB: "Bob Leroy", CAROL: "Carole Petit"})
    cluster.server.start()
    status, _ = cluster.server.api(
        "POST", f"/api/badges/{cluster.badges[BOB]}/revoke", cluster.token
    )
    assert status == 200
    proxy = proxy_for(cluster.broker.port)
    unit = cluster.unit(DEVICE, mqtt_port=proxy.port)
    run_until(unit, lambda: device(cluster).get("access_list_current"), "the list on the unit")
    version_before = device(cluster)["access_list_version"]

    proxy.cut(mode)
    cut = Stopwatch()
    status, _ = cluster.server.api(
        "POST", f"/api/badges/{cluster.badges[CAROL]}/revoke", cluster.token
    )
    assert status == 200
    mark = len(unit.log())
    taps = [f"tap entree {uid}" for uid in (ALICE, BOB, CAROL)]
    unit.start(taps + exits(size.events), drain_s=1)
    assert unit.wait(timeout=120) == 0, unit.log()[-3000:]
    during = decisions(unit, mark)
    assert [(d["granted"], d.get("reason")) for d in during][:3] == [
        ("true", during[0].get("reason")),
        ("false", "revoked"),
        ("true", during[2].get("reason")),  # Carol's revocation has not reached the unit
    ], during
    cut_seqs = [s for s in unit.printed_seqs() if s > 0][-(3 + size.events) :]
    assert unit.pending() >= len(cut_seqs)
    # The fault's length is the test's subject: the link stays cut this long.
    threading.Event().wait(max(0.0, size.fault_s - cut()))
    outage = cut()
    proxy.heal()

    healed = Stopwatch()
    run_until(
        unit,
        lambda: (
            unit.pending() == 0
            and (d := device(cluster)).get("access_list_current")
            and d["access_list_version"] > version_before
        ),
        "the backlog acked and the new list installed",
    )
    converged = healed()
    mark = len(unit.log())
    unit.start([f"tap entree {CAROL}"], drain_s=30)
    assert unit.wait(timeout=60) == 0
    (after,) = decisions(unit, mark)
    assert (after["granted"], after["reason"]) == ("false", "revoked")

    cluster.converge()
    verdict = cluster.verdict()
    rows = stored_events(cluster.server.db_path, DEVICE)
    by_seq = {seq: historical for seq, _, historical in rows}
    assert all(by_seq[s] == 1 for s in cut_seqs)  # sent late: marked historical
    arrival = [seq for seq, _, _ in rows if seq in set(cut_seqs)]
    assert arrival == sorted(arrival)  # in the order they were decided
    report(
        f"cut ({mode}) {outage:.0f} s, {len(cut_seqs)} events decided alone: "
        f"{verdict.summary()}; backlog and new list in {converged:.1f} s after the heal"
    )
    assert verdict.ok, verdict.details()
    # Nothing the suite's processes wrote holds a raw card UID: the server's database and
    # its WAL, the unit's outbox and list files, every log, the broker's files.
    cluster.close()
    hits = raw_uid_hits(
        [cluster.tmp, cluster.broker.workdir], [ALICE, BOB, CAROL], inputs=("script-",)
    )
    assert hits == []
