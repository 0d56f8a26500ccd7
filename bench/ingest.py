"""Server ingest: events from 1, 100 and 500 units, committed and acknowledged, against a
bare QoS 1 subscriber receiving the same payloads through the same broker.

The units run in a process of their own (``bench.units``) with their real accounts and
ACL; the server (bridge, handlers, writer, acker) has this process to itself. The floor
is one paho client subscribed QoS 1 to ``telecentre/+/event`` that only counts, fed by the
same units process publishing the same payloads. Ingest is measured from the first publish
to the last ack back at the units; the floor from the first publish to the last message
received. Target: ingest ≥ 0.6× the floor. A full run measures each number of units in
``ROUNDS`` rounds of the floor then a new server, and keeps the median round.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt

from bench.common import (
    Context,
    CpuMeter,
    close,
    forget_server_session,
    register_units,
    subscribed_client,
    unit_id,
    wait_for,
)
from bench.units import Units, event
from protocol import topics
from protocol.messages import Event
from protocol.workers import freeze_startup_objects
from server.metrics import ServerMetrics
from server.mqtt.bridge import Bridge
from server.settings import Settings
from server.store import Store
from server.store.sqlite.writer import connect

TARGET = 0.6
ROUNDS = 3  # floor and server, one after the other, in a full run


def run(ctx: Context) -> None:
    events = ctx.scale(12_000, 3_000)
    for n in (1, 100, 500):
        bench_ingest(ctx, n, events)
    store_alone(ctx, 100, ctx.scale(30_000, 3_000))


BATCH = 250  # events per write in ``store_alone``: what the handler hands over under load


def store_alone(ctx: Context, n: int, events: int) -> None:
    """The store's share of ingest, without MQTT: ``Store.ingest_many`` of ``n`` units'
    events, ``BATCH`` per write, against the floor of the same rows inserted as they are
    into a table of the same columns and unique event id, one durable commit per batch."""
    batches = [_batch(n, k, BATCH) for k in range(0, events, BATCH)]
    store = Store(ctx.workdir / "store-alone" / "telecentre.db")
    try:
        register_units(store, n)
        started = time.perf_counter()
        for items in batches:
            store.ingest_many(items).result(timeout=60)
        elapsed = time.perf_counter() - started
        settle_started = time.perf_counter()
        store.settle()  # what the recount chore has left: part of the cost
        settle_s = time.perf_counter() - settle_started
    finally:
        store.close()
    floor = _bare_inserts(ctx.workdir / "store-alone" / "bare.db", batches)
    rate = events / (elapsed + settle_s)
    print(
        f"store alone, {n} units, {BATCH} events per write (idempotent insert, presence, "
        f"visits, recounts, durable commit): {rate:,.0f} events/s "
        f"({(elapsed + settle_s) / events * 1e6:.0f} µs an event; "
        f"the last recount {settle_s * 1000:.0f} ms)"
    )
    print(
        f"  floor: the same rows inserted as they are, same commits: {floor:,.0f} rows/s; "
        f"ratio {rate / floor:.2f}x"
    )
    ctx.results.add(
        "store_ingest",
        units=n,
        events=events,
        batch=BATCH,
        events_per_s=rate,
        floor=floor,
        floor_what="plain INSERT of the same rows, same durable commits, rows/s",
        ratio=rate / floor,
        higher_is_better=True,
    )


def _batch(n: int, first: int, size: int) -> list[tuple[str, list[Event], float]]:
    """Events ``first`` to ``first + size`` of the units' round robin, as the handler groups
    them: each unit's events of the batch together (what ``bench.units`` sends)."""
    by_unit: dict[str, list[Event]] = {}
    now = time.time()
    for k in range(first, first + size):
        i, seq = k % n, k // n + 1
        by_unit.setdefault(unit_id(i), []).append(event(unit_id(i), i, seq, now))
    return [(device, events, now) for device, events in by_unit.items()]


def _bare_inserts(path: Path, batches: list[list[tuple[str, list[Event], float]]]) -> float:
    """Rows/s of a plain INSERT of the same events, one durable commit per batch."""
    db = connect(path, synchronous="FULL")
    try:
        db.execute(
            "CREATE TABLE events (id INTEGER PRIMARY KEY, event_id TEXT NOT NULL UNIQUE,"
            " device_id TEXT, seq INTEGER, kind TEXT, ts REAL, granted INTEGER, reason TEXT,"
            " direction TEXT, member_id INTEGER, badge_hash TEXT)"
        )
        started = time.perf_counter()
        rows = 0
        for items in batches:
            with db.conn:
                for device, events, _ in items:
                    db.conn.executemany(
                        "INSERT INTO events (event_id, device_id, seq, kind, ts, granted, reason,"
                        " direction, member_id, badge_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        [
                            (
                                e.event_id,
                                device,
                                e.seq,
                                e.kind,
                                e.ts,
                                e.granted,
                                e.reason,
                                e.direction,
                                e.member_id,
                                e.badge_hash,
                            )
                            for e in events
                        ],
                    )
                    rows += len(events)
        return rows / (time.perf_counter() - started)
    finally:
        db.close()


def floor_rate(ctx: Context, n: int, events: int) -> tuple[float, dict[str, float]]:
    """Messages/s a bare QoS 1 subscriber receives from ``n`` units sending ``events``, and
    the CPU it took (``CpuMeter``)."""
    received = 0
    last = 0.0
    done = threading.Event()

    def count(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        nonlocal received, last
        received += 1
        if received >= events:
            last = time.monotonic()
            done.set()

    forget_server_session(ctx.broker)
    sink = subscribed_client(ctx.broker, "bench-sink", topics.subscription(topics.EVENT), count)
    units = Units(ctx.broker, _plan(n, events))
    try:
        meter = CpuMeter()
        started = units.go()
        if not done.wait(300):
            raise RuntimeError(f"the floor received {received} of {events} messages")
        cpu = meter.read(events)
        units.result(60)
    finally:
        units.close()
        close(sink)
    return events / (last - started), cpu


def _plan(n: int, events: int) -> dict:
    return {
        "devices": [unit_id(i) for i in range(n)],
        "topic": "telecentre/%s/event",
        "per_unit": events // n,
    }


def start_server(ctx: Context, name: str, units: int) -> tuple[Store, Bridge, Settings]:
    settings = Settings(
        data_dir=ctx.workdir / name,
        badge_key_file=ctx.key_file,
        **ctx.broker.server_settings(),  # type: ignore[arg-type]
        mqtt_client_id=f"server-{name}",
    )
    store = Store(settings.db_path)
    register_units(store, units)
    metrics = ServerMetrics()  # fed as in production (server.runtime)
    store.observe_commits(metrics.batch_committed)
    bridge = Bridge(settings, store, ctx.signer, metrics=metrics)
    freeze_startup_objects()  # as ``telecentre-server serve`` does before it starts
    bridge.start()
    if not bridge.connected.wait(10):
        raise RuntimeError(f"the server could not connect: {bridge.error}")
    wait_for(bridge.receiving, 10, "the server's events receiver")
    # Steady state: the first access lists of every centre are out before the figure.
    centres = len(store.centres())
    wait_for(lambda: bridge.lists.snapshots >= centres, 120, "the first access lists")
    return store, bridge, settings


def bench_ingest(ctx: Context, n: int, events: int) -> None:
    """``ROUNDS`` rounds (one in a quick run), each the floor then a server of its own on
    the same units; the round with the median ratio is the figure, the others its spread.
    Two runs one after the other on this machine gave 4,029 and 5,898 events/s at 500
    units: one round says little on a machine that shares its cores."""
    events = events // n * n
    rounds = sorted(
        (_ingest_round(ctx, n, events, k) for k in range(ctx.scale(ROUNDS, 1))),
        key=lambda r: r.ratio,
    )
    figure = rounds[len(rounds) // 2]
    spread = ", ".join(f"{r.ratio:.2f}x" for r in rounds)
    print(
        f"server ingest, {n} unit{'s' * (n > 1)} (decode, idempotent insert, live state, "
        f"durable commit, signed ack): {figure.rate:,.0f} events/s "
        f"({figure.stored:,} stored, {figure.commits:,} commits in all)"
    )
    print(
        f"  floor: a bare QoS1 subscriber, same units, same broker: {figure.floor:,.0f} "
        f"msg/s; ratio {figure.ratio:.2f}x of the floor (target ≥ {TARGET}x)"
        + (f"; the median of {len(rounds)} rounds ({spread})" if len(rounds) > 1 else "")
    )
    print_cpu(figure.cpu, figure.floor_cpu)
    ctx.results.add(
        f"server_ingest_{n}_units",
        units=n,
        events=events,
        events_per_s=figure.rate,
        floor=figure.floor,
        floor_what="bare QoS1 subscriber msg/s",
        ratio=figure.ratio,
        target=TARGET,
        higher_is_better=True,
        rounds=len(rounds),
        ratio_min=rounds[0].ratio,
        ratio_max=rounds[-1].ratio,
        stored=figure.stored,
        commits=figure.commits,
        **cpu_figures(figure.cpu, figure.floor_cpu),
    )


@dataclass(frozen=True)
class _Round:
    """One round of ``bench_ingest``: the server's rate, its floor's, and what each cost."""

    rate: float
    floor: float
    cpu: dict[str, float]
    floor_cpu: dict[str, float]
    stored: int
    commits: int

    @property
    def ratio(self) -> float:
        return self.rate / self.floor


def _ingest_round(ctx: Context, n: int, events: int, k: int) -> _Round:
    """The floor, then ingest by a new server (a database of its own) of the same load."""
    floor, floor_cpu = floor_rate(ctx, n, events)
    store, bridge, _ = start_server(ctx, f"ingest-{n}-{k}", n)
    plan = _plan(n, events) | {"ack_topic": "telecentre/%s/ack"}
    try:
        units = Units(ctx.broker, plan)
        try:
            meter = CpuMeter(receiver_pids(bridge))
            started = units.go()
            report = units.result(300)
            cpu = meter.read(events)
        finally:
            units.close()
        stored = store.event_count()
        commits = store.writer_stats["batches"]
    finally:
        bridge.stop()
        store.close()
    if report["acked"] < events:
        raise RuntimeError(f"ingest of {n} units: {report['acked']} of {events} events acked")
    rate = events / (report["last_ack"] - started)
    return _Round(rate, floor, cpu, floor_cpu, stored, commits)


def receiver_pids(bridge: Bridge) -> tuple[int, ...]:
    """The server's events receiver, whose CPU is the server's too."""
    pid = bridge.receiver.pid if bridge.receiver is not None else None
    return (pid,) if pid is not None else ()


def cpu_figures(cpu: dict[str, float], floor: dict[str, float]) -> dict[str, float]:
    """The CPU figures of a run and its floor, as ``bench/results.json`` records them."""
    return {
        "server_cpu_us": cpu["process_cpu_us"],
        "machine_cpu_us": cpu["machine_cpu_us"],
        "cores_busy": cpu["cores_busy"],
        "floor_machine_cpu_us": floor["machine_cpu_us"],
        "floor_subscriber_cpu_us": floor["process_cpu_us"],
        "floor_cores_busy": floor["cores_busy"],
    }


def print_cpu(cpu: dict[str, float], floor: dict[str, float]) -> None:
    """What an event cost the server and the whole machine, beside the floor's cost."""
    print(
        f"  CPU an event: the server {cpu['process_cpu_us']:.0f} µs, the whole machine "
        f"{cpu['machine_cpu_us']:.0f} µs ({cpu['cores_busy']:.1f} of {os.cpu_count()} cores "
        f"busy); with the floor the machine {floor['machine_cpu_us']:.0f} µs a message, "
        f"{floor['process_cpu_us']:.0f} of them the bare subscriber's "
        f"({floor['cores_busy']:.1f} cores busy)"
    )
