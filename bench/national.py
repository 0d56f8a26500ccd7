"""National scale: 3,500 units connected (every tiers-lieu in France), 5,000 events/s for
60 s; event → stored (the signed ack back at the unit) lag, nothing lost, nothing twice.

The units run in a process of their own (``bench.units``), each with its own account
under the real ACL, spread over 350 centres, publishing at a steady total rate in turn.
The server (bridge, handlers, writer, acker, list publisher) has this process. Afterwards
the store must hold every event exactly once: as many rows as events sent, one per
(unit, seq). The units send again what is not acked in time, as units do (the broker
drops what it cannot queue for a server far behind). Floor: the same units publishing the
same schedule to a bare QoS 1 subscriber (publish → received). Target: p99 ≤ 1 s. The
full run also measures the same units at ``SUSTAINED_RATES``: what one server sustains.
"""

from __future__ import annotations

import threading
import time

import msgspec
import paho.mqtt.client as mqtt

from bench.common import (
    Context,
    CpuMeter,
    close,
    forget_server_session,
    percentile,
    subscribed_client,
    unit_id,
)
from bench.ingest import cpu_figures, print_cpu, receiver_pids, start_server
from bench.units import Units
from protocol import topics
from protocol.messages import EventHeader

TARGET_S = 1.0


# Besides the target's rate, what one server sustains: the same units at lower rates.
SUSTAINED_RATES = (2_000, 1_000)


def run(ctx: Context) -> None:
    n = ctx.scale(3_500, 600)
    seconds = ctx.scale(60, 5)
    national(ctx, "national_scale", n, ctx.scale(5_000, 1_000), seconds)
    if not ctx.quick:
        for rate in SUSTAINED_RATES:
            national(ctx, f"national_scale_{rate}", n, rate, seconds)


def national(ctx: Context, name: str, n: int, rate: int, seconds: int) -> None:
    """``n`` units publishing ``rate`` events/s in all for ``seconds``, into one server."""
    per_unit = rate * seconds // n
    plan = {
        "devices": [unit_id(i) for i in range(n)],
        "topic": "telecentre/%s/event",
        "per_unit": per_unit,
        "rate": rate,
    }
    total = n * per_unit
    floor, floor_cpu = _floor(ctx, plan, total)
    store, bridge, _ = start_server(ctx, name, n)
    try:
        t0 = time.perf_counter()
        units = Units(ctx.broker, plan | {"ack_topic": "telecentre/%s/ack"})
        connected_s = time.perf_counter() - t0
        try:
            meter = CpuMeter(receiver_pids(bridge))
            units.go()
            report = units.result(seconds * 10 + 120)
            cpu = meter.read(report["sent"])
        finally:
            units.close()
        rows, distinct = store.db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT device_id || ':' || seq) FROM events"
        ).fetchone()
    finally:
        bridge.stop()
        store.close()
    lags = report["lags"]
    p50, p99 = percentile(lags, 0.5), percentile(lags, 0.99)
    lost, twice = report["sent"] - distinct, rows - distinct
    print(
        f"national scale: {n:,} units connected (in {connected_s:.0f} s), {rate:,} events/s "
        f"for {seconds} s ({report['sent']:,} events): event → stored and acked p50 "
        f"{p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms (target ≤ {TARGET_S:.0f} s); "
        f"{report['acked']:,} acked, {rows:,} rows, lost {lost}, twice {twice}; "
        f"{report['resent']:,} sent again by units not acked in time"
    )
    print(
        f"  floor: a bare QoS1 subscriber, same units and schedule: p99 "
        f"{floor * 1000:.0f} ms; ratio {p99 / floor:.1f}x"
    )
    print_cpu(cpu, floor_cpu)
    ctx.results.add(
        name,
        units=n,
        events_per_s=rate,
        seconds=seconds,
        sent=report["sent"],
        acked=report["acked"],
        resent=report["resent"],
        rows=rows,
        lost=lost,
        twice=twice,
        p50_s=p50,
        p99_s=p99,
        floor=floor,
        floor_what="publish → bare QoS1 subscriber p99 s",
        ratio=p99 / floor,
        target_s=TARGET_S,
        **cpu_figures(cpu, floor_cpu),
    )


def _floor(ctx: Context, plan: dict, total: int) -> tuple[float, dict[str, float]]:
    """p99 of publish → received at a bare QoS 1 subscriber, same units, same schedule, and
    the CPU it took (``CpuMeter``)."""
    received: dict[tuple[str, int], float] = {}
    done = threading.Event()
    header = msgspec.json.Decoder(EventHeader)

    def count(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        received[(msg.topic.split("/")[1], header.decode(msg.payload).seq)] = now
        if len(received) >= total:
            done.set()

    forget_server_session(ctx.broker)
    sink = subscribed_client(ctx.broker, "bench-sink", topics.subscription(topics.EVENT), count)
    units = Units(ctx.broker, plan | {"report_published": True})
    try:
        meter = CpuMeter()
        units.go()
        report = units.result(600)
        done.wait(60)
        cpu = meter.read(total)
    finally:
        units.close()
        close(sink)
    devices = plan["devices"]
    lags = [
        received[(devices[i], k + 1)] - at
        for i, times in enumerate(report["published"])
        for k, at in enumerate(times)
        if (devices[i], k + 1) in received
    ]
    if len(lags) < total:
        print(f"  (the floor's subscriber received {len(lags):,} of {total:,})")
    return percentile(lags, 0.99), cpu
