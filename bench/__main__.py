"""``make bench``: badge-to-door latency and server ingest rate, each against a floor.

Every figure is printed with the floor measured in the same run on the same machine, and
their ratio, so results from different machines compare. Traffic stays on 127.0.0.1, in
bounded loops.
"""

from __future__ import annotations

import secrets
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
from gpiozero import DigitalOutputDevice
from gpiozero.pins.mock import MockFactory

from edge import config as edge_config
from edge.agent import EdgeAgent
from edge.hardware.build import build
from protocol import topics
from protocol.badges import badge_hash
from protocol.messages import AccessList, BadgeGrant, Event, encode
from protocol.mqtt import make_client
from server.broker import LocalBroker
from server.settings import Settings
from server.store import Store

BADGES = 300
EVENTS = 5000


def subscribed_client(
    port: int, name: str, topic: str, on_message: Callable[..., object]
) -> mqtt.Client:
    """A TCP_NODELAY client, returned once its subscription to ``topic`` is acknowledged."""
    client, props = make_client(name, session_expiry_s=0)
    ready = threading.Event()
    client.on_message = on_message
    client.on_connect = lambda c, *a: c.subscribe(topic, 1)
    client.on_subscribe = lambda *a: ready.set()
    client.connect("127.0.0.1", port, clean_start=True, properties=props)
    client.loop_start()
    if not ready.wait(5):
        raise RuntimeError(f"{name} could not subscribe to {topic}")
    return client


def close(*clients: mqtt.Client) -> None:
    for client in clients:
        client.loop_stop()
        client.disconnect()


def percentile(values: list[float], p: float) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * p))]


def unit_config(
    workdir: Path, port: int, key_file: Path, device_id: str = "bench-01"
) -> edge_config.EdgeConfig:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "unit.toml"
    path.write_text(f"""
schema = 1
device_id = "{device_id}"
centre = "bench"
badge_key_file = "{key_file}"
data_dir = "{workdir / "unit"}"
pin_factory = "mock"
[mqtt]
port = {port}
[[doors]]
id = "entree"
relay_pin = 17
unlock_seconds = 0.5
[doors.reader]
kind = "fake"
""")
    return edge_config.load(path)


def bench_badge(workdir: Path, broker: LocalBroker, key_file: Path) -> None:
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

    cfg = unit_config(workdir, broker.port, key_file)
    agent = EdgeAgent(cfg, build(cfg, pin_factory=factory))
    key = bytes.fromhex(key_file.read_text())
    uids = [i.to_bytes(4, "big") for i in range(BADGES)]
    grants = [BadgeGrant(badge_hash(key, u), i + 1) for i, u in enumerate(uids)]
    agent.access.replace(AccessList(1, time.time(), "bench", grants))
    lock = agent.hardware.locks["entree"]
    opened_at: list[float] = []
    unlock = lock.unlock

    def timed_unlock() -> None:
        unlock()
        opened_at.append(time.perf_counter())

    lock.unlock = timed_unlock  # type: ignore[method-assign]
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


def bench_ingest(workdir: Path, broker: LocalBroker, key_file: Path) -> None:
    """Events from one unit → server committed and acknowledged, vs a bare QoS1 echo."""
    from server.mqtt.bridge import Bridge

    payloads = [
        encode(
            Event(
                event_id=secrets.token_hex(16),
                device_id="bench-01",
                seq=i + 1,
                kind="access",
                ts=time.time(),
                clock_synced=True,
                door="entree",
                badge_hash="ab" * 32,
                granted=True,
                reason="granted",
                direction="in",
                member_id=1,
            )
        )
        for i in range(EVENTS)
    ]

    def pump(topic_in: str, topic_back: str, acks: bool) -> float:
        """Seconds until every payload sent on topic_in came back (an ack lists many seqs)."""
        count = 0
        done = threading.Event()

        def on_message(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
            nonlocal count
            count += msg.payload.count(b",") + 1 if acks else 1
            if count >= EVENTS:
                done.set()

        client = subscribed_client(broker.port, f"bench-pump-{acks}", topic_back, on_message)
        t0 = time.perf_counter()
        for p in payloads:
            client.publish(topic_in, p, qos=1)
        done.wait(120)
        elapsed = time.perf_counter() - t0
        close(client)
        return elapsed

    # Floor: an echo client that republishes each message at once, no decoding, no disk.
    echo = subscribed_client(
        broker.port,
        "bench-echo",
        "bench/echo/in",
        lambda c, u, m: c.publish("bench/echo/out", m.payload, qos=1),
    )
    floor = pump("bench/echo/in", "bench/echo/out", acks=False)
    close(echo)

    settings = Settings(
        data_dir=workdir / "server",
        badge_key_file=key_file,
        mqtt_port=broker.port,
        mqtt_client_id="bench-server",
    )
    store = Store(settings.db_path)
    bridge = Bridge(settings, store)
    bridge.start()
    bridge.connected.wait(5)
    try:
        elapsed = pump(
            topics.topic(topics.EVENT, "bench-01"), topics.topic(topics.ACK, "bench-01"), acks=True
        )
        stored = store.event_count()
    finally:
        bridge.stop()
        store.close()
    rate, floor_rate = EVENTS / elapsed, EVENTS / floor
    writer = store.writer_stats
    batch = writer["items"] / max(1, writer["batches"])
    print(
        f"server ingest (decode, idempotent insert, commit, ack): {rate:,.0f} events/s "
        f"({stored} stored, mean batch {batch:.0f})"
    )
    print(
        f"  floor: bare QoS1 echo through the same broker: {floor_rate:,.0f} msg/s; "
        f"ratio {floor_rate / rate:.2f}x slower"
    )


ONLINE = 100


def bench_online(workdir: Path, broker: LocalBroker, key_file: Path) -> None:
    """A card the list does not know: unit → server → unit round trip, until the relay."""
    from server.mqtt.bridge import Bridge

    # Floor: a bare QoS1 request answered by an echo client, both with TCP_NODELAY.
    echo = subscribed_client(
        broker.port,
        "bench-rt-echo",
        "bench/rt/in",
        lambda c, u, m: c.publish("bench/rt/out", m.payload, qos=1),
    )
    answered = threading.Event()
    asker = subscribed_client(
        broker.port, "bench-rt-ask", "bench/rt/out", lambda *a: answered.set()
    )
    floor = []
    for _ in range(ONLINE):
        answered.clear()
        t0 = time.perf_counter()
        asker.publish("bench/rt/in", b"x" * 200, qos=1)
        answered.wait(5)
        floor.append(time.perf_counter() - t0)
    close(echo, asker)

    settings = Settings(
        data_dir=workdir / "online",
        badge_key_file=key_file,
        mqtt_port=broker.port,
        mqtt_client_id="bench-online",
    )
    store = Store(settings.db_path)
    store.create_centre("bench", "Bench")
    store.assign_device("bench-02", "bench")
    bridge = Bridge(settings, store)
    bridge.start()
    bridge.connected.wait(5)
    bridge.lists.stop()  # no list: every card must be asked of the server
    key = bytes.fromhex(key_file.read_text())
    uids = [(1_000_000 + i).to_bytes(4, "big") for i in range(ONLINE)]
    for uid in uids:
        member = store.create_member({"name": "Bench"})
        store.enrol_badge(member["id"], badge_hash(key, uid))
    cfg = unit_config(workdir / "online-unit", broker.port, key_file, device_id="bench-02")
    agent = EdgeAgent(cfg, build(cfg, pin_factory=MockFactory()))
    agent.start()
    agent.link.connected.wait(5)
    latencies = []
    try:
        for uid in uids:
            t0 = time.perf_counter()
            event = agent.badge("entree", uid)
            latencies.append(time.perf_counter() - t0)
            assert event.granted, event.reason
    finally:
        agent.stop()
        bridge.stop()
        store.close()
    median, floor_median = statistics.median(latencies), statistics.median(floor)
    print(
        f"badge → relay energised (card not on the list, asked online): median "
        f"{median * 1000:.2f} ms, p99 {percentile(latencies, 0.99) * 1000:.2f} ms "
        f"over {ONLINE} badges"
    )
    print(
        f"  floor: bare QoS1 request/echo round trip: median {floor_median * 1000:.2f} ms; "
        f"ratio {median / floor_median:.2f}x"
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="telecentre-bench-") as tmp, LocalBroker() as broker:
        workdir = Path(tmp)
        key_file = workdir / "badge.key"
        key_file.write_text(secrets.token_hex(32))
        bench_badge(workdir, broker, key_file)
        bench_online(workdir, broker, key_file)
        bench_ingest(workdir, broker, key_file)


if __name__ == "__main__":
    main()
