"""At the door: a known card from the local list, and a card asked of the server."""

from __future__ import annotations

import sqlite3
import statistics
import threading
import time
from pathlib import Path

from gpiozero import DigitalOutputDevice
from gpiozero.pins.mock import MockFactory

from bench.common import (
    Context,
    Results,
    close,
    percentile,
    subscribed_client,
    unit_config,
)
from edge.agent import EdgeAgent
from edge.hardware.build import build
from protocol.badges import badge_hash
from protocol.messages import ListEntry
from protocol.signing import Signer
from server.broker import LocalBroker
from server.settings import Settings
from server.store import Store

BADGES = 300
ONLINE = 100


def run(ctx: Context) -> None:
    global BADGES, ONLINE
    BADGES, ONLINE = ctx.scale(300, 100), ctx.scale(200, 60)
    bench_badge(ctx.results, ctx.workdir, ctx.broker, ctx.key_file, ctx.signer)
    bench_online(ctx.results, ctx.workdir, ctx.broker, ctx.key_file, ctx.signer)


def timed_lock(agent: EdgeAgent) -> list[float]:
    """Record the perf_counter time of every relay energising at door ``entree``."""
    lock = agent.hardware.locks["entree"]
    opened_at: list[float] = []
    unlock = lock.unlock

    def timed_unlock() -> None:
        unlock()
        opened_at.append(time.perf_counter())

    lock.unlock = timed_unlock  # type: ignore[method-assign]
    return opened_at


def bench_badge(
    results: Results, workdir: Path, broker: LocalBroker, key_file: Path, signer: Signer
) -> None:
    """A known card: badge() until the relay is energised (decision, outbox fsync, GPIO).

    Floor: what no design that keeps every event can avoid, one durable SQLite commit of a
    row (WAL, synchronous=FULL) on the same disk, plus a bare gpiozero relay on().
    """
    factory = MockFactory()
    floor_relay = DigitalOutputDevice(5, active_high=False, pin_factory=factory)
    db = sqlite3.connect(workdir / "floor.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, payload TEXT)")
    floor = []
    for i in range(BADGES):
        t0 = time.perf_counter()
        db.execute("INSERT INTO t VALUES (?, ?)", (i, "x" * 300))
        floor_relay.on()
        floor.append(time.perf_counter() - t0)
        floor_relay.off()
    db.close()

    cfg = unit_config(workdir / "badge", broker, key_file, signer.public_hex)
    agent = EdgeAgent(cfg, build(cfg, pin_factory=factory))
    key = bytes.fromhex(key_file.read_text())
    uids = [i.to_bytes(4, "big") for i in range(BADGES)]
    index = {
        bytes.fromhex(badge_hash(key, u)): ListEntry(bytes.fromhex(badge_hash(key, u)), i + 1)
        for i, u in enumerate(uids)
    }
    agent.access.install(1, index)
    opened_at = timed_lock(agent)
    latencies = []
    try:
        for uid in uids:
            t0 = time.perf_counter()
            agent.badge("entree", uid)
            latencies.append(opened_at[-1] - t0)
    finally:
        agent.stop()
    median, p99 = statistics.median(latencies), percentile(latencies, 0.99)
    floor_median = statistics.median(floor)
    print(
        f"badge → relay energised (known card, offline list, outbox fsync): "
        f"median {median * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms over {BADGES} badges"
    )
    print(
        f"  floor: one durable SQLite commit + relay on(): median "
        f"{floor_median * 1000:.2f} ms; ratio {median / floor_median:.2f}x"
    )
    results.add(
        "badge_known_card",
        median_ms=median * 1000,
        p99_ms=p99 * 1000,
        floor_median_ms=floor_median * 1000,
        floor=floor_median * 1000,
        ratio=median / floor_median,
    )


def bench_online(
    results: Results, workdir: Path, broker: LocalBroker, key_file: Path, signer: Signer
) -> None:
    """A card the list does not know: unit → server → unit round trip, until the relay."""
    from server.mqtt.bridge import Bridge

    # Floor: a bare QoS1 request answered by an echo client, both with TCP_NODELAY.
    echo = subscribed_client(
        broker,
        "bench-rt-echo",
        "bench/rt/in",
        lambda c, u, m: c.publish("bench/rt/out", m.payload, qos=1),
    )
    answered = threading.Event()
    asker = subscribed_client(broker, "bench-rt-ask", "bench/rt/out", lambda *a: answered.set())
    floor = []
    for _ in range(ONLINE):
        answered.clear()
        pause = threading.Event()
        pause.wait(0.02)  # taps 20 ms apart, as at a door
        t0 = time.perf_counter()
        asker.publish("bench/rt/in", b"x" * 200, qos=1)
        answered.wait(5)
        floor.append(time.perf_counter() - t0)
    close(echo, asker)

    settings = Settings(
        data_dir=workdir / "online",
        badge_key_file=key_file,
        **broker.server_settings(),  # type: ignore[arg-type]
        mqtt_client_id="bench-online",
    )
    store = Store(settings.db_path)
    store.create_centre("online", "Online")
    store.assign_device("bench-02", "online")
    key = bytes.fromhex(key_file.read_text())
    uids = [(1_000_000 + i).to_bytes(4, "big") for i in range(ONLINE)]
    bridge = Bridge(settings, store, signer)
    bridge.start()
    bridge.connected.wait(5)
    bridge.lists.stop()  # no list: every card must be asked of the server
    for uid in uids:
        member = store.create_member({"name": "Bench"})
        store.enrol_badge(member["id"], badge_hash(key, uid))
    cfg = unit_config(
        workdir / "online-unit",
        broker,
        key_file,
        signer.public_hex,
        device_id="bench-02",
        centre="online",
    )
    agent = EdgeAgent(cfg, build(cfg, pin_factory=MockFactory()))
    agent.start()
    agent.link.connected.wait(5)
    latencies = []
    try:
        for uid in uids:
            pause = threading.Event()
            pause.wait(0.02)
            t0 = time.perf_counter()
            event = agent.badge("entree", uid)
            latencies.append(time.perf_counter() - t0)
            assert event.granted, event.reason
    finally:
        agent.stop()
        bridge.stop()
        store.close()
    median, floor_median = statistics.median(latencies), statistics.median(floor)
    p99, floor_p99 = percentile(latencies, 0.99), percentile(floor, 0.99)
    print(
        f"badge → relay energised (card not on the list, asked online): median "
        f"{median * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms over {ONLINE} badges 20 ms apart"
    )
    print(
        f"  floor: bare QoS1 request/echo round trip: median {floor_median * 1000:.2f} ms, "
        f"p99 {floor_p99 * 1000:.2f} ms; ratio {median / floor_median:.2f}x (p99 "
        f"{p99 / floor_p99:.2f}x)"
    )
    results.add(
        "badge_online",
        median_ms=median * 1000,
        p99_ms=p99 * 1000,
        floor_median_ms=floor_median * 1000,
        floor_p99_ms=floor_p99 * 1000,
        floor=floor_median * 1000,
        floor_what="bare QoS1 request/echo round trip, median ms",
        ratio=median / floor_median,
        ratio_p99=p99 / floor_p99,
        target=1.5,
        target_p99=2.0,
    )
