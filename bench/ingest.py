"""Events from one unit → committed by the server and acknowledged, vs a bare subscriber."""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt

from bench.common import Results, close, connected_client, subscribed_client
from protocol import topics
from protocol.messages import Ack, Event, encode
from protocol.signing import Signer, Verifier
from server.broker import LocalBroker
from server.settings import Settings
from server.store import Store

EVENTS = 5000


def bench_ingest(
    results: Results, workdir: Path, broker: LocalBroker, key_file: Path, signer: Signer
) -> None:
    from server.mqtt.bridge import Bridge

    epoch = secrets.token_hex(16)
    payloads = [
        encode(
            Event(
                event_id=str(uuid.uuid4()),
                device_id="bench-01",
                epoch=epoch,
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

    # Floor: a bare QoS1 subscriber receiving the same payloads through the same broker.
    received = 0
    floor_done = threading.Event()

    def count(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        nonlocal received
        received += 1
        if received >= EVENTS:
            floor_done.set()

    sink = subscribed_client(broker, "bench-sink", "bench/sink", count)
    sender = connected_client(broker, "bench-sender")
    t0 = time.perf_counter()
    for p in payloads:
        sender.publish("bench/sink", p, qos=1)
    floor_done.wait(120)
    floor = time.perf_counter() - t0
    close(sink)

    settings = Settings(
        data_dir=workdir / "server",
        badge_key_file=key_file,
        **broker.server_settings(),  # type: ignore[arg-type]
        mqtt_client_id="bench-server",
    )
    store = Store(settings.db_path)
    store.create_centre("ingest", "Ingest")
    store.assign_device("bench-01", "ingest")
    bridge = Bridge(settings, store, signer)
    bridge.start()
    bridge.connected.wait(5)
    verifier = Verifier([signer.public_hex])
    acked = 0
    done = threading.Event()

    def on_ack(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        nonlocal acked
        acked += len(verifier.open(Ack, msg.payload).seqs)
        if acked >= EVENTS:
            done.set()

    acks = subscribed_client(broker, "bench-acks", topics.topic(topics.ACK, "bench-01"), on_ack)
    try:
        t0 = time.perf_counter()
        for p in payloads:
            sender.publish(topics.topic(topics.EVENT, "bench-01"), p, qos=1)
        done.wait(120)
        elapsed = time.perf_counter() - t0
        stored = store.event_count()
    finally:
        close(acks, sender)
        bridge.stop()
        store.close()
    rate, floor_rate = EVENTS / elapsed, EVENTS / floor
    writer = store.writer_stats
    batch = writer["items"] / max(1, writer["batches"])
    print(
        f"server ingest (decode, idempotent insert, durable commit, signed ack): "
        f"{rate:,.0f} events/s ({stored} stored, mean batch {batch:.0f})"
    )
    print(
        f"  floor: bare QoS1 subscriber through the same broker: {floor_rate:,.0f} msg/s; "
        f"ratio {rate / floor_rate:.2f}x of the floor"
    )
    results.add(
        "server_ingest",
        events_per_s=rate,
        floor_msg_per_s=floor_rate,
        ratio=rate / floor_rate,
        stored=stored,
    )
