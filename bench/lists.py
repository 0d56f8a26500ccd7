"""Access lists v2 at scale: 250,000 badges on a unit, and a revocation reaching 2,000 units.

Figures, each against a floor measured in the same run:
- encoding of the list: JSON against MessagePack (size and decode time);
- full sync of a unit: server snapshot published → unit installed, against a bare
  subscriber receiving the same retained segments;
- the badge path while a new snapshot installs, against the same path at rest;
- a revocation through the API → the signed delta at each of 2,000 connected units (and the
  real unit denying the card as ``revoked``), against a bare publish of the same bytes to the
  same 2,000 clients.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from pathlib import Path

import msgspec
import paho.mqtt.client as mqtt
from fastapi.testclient import TestClient
from gpiozero.pins.mock import MockFactory

from bench.common import (
    Results,
    close,
    connected_client,
    percentile,
    subscribed_client,
    unit_config,
    wait_for,
)
from bench.fleet import Fleet
from edge.agent import EdgeAgent
from edge.hardware.build import build
from protocol import topics
from protocol.badges import badge_hash
from protocol.lists import cut_snapshot
from protocol.messages import REVOKED, ListDelta, ListEntry, ListSegment
from protocol.signing import Signer, Verifier
from server.broker import LocalBroker
from server.settings import Settings

BADGES = 250_000
UNITS = 2_000
CENTRE = "bench"


def _uid(i: int) -> bytes:
    return (0x10000000 + i).to_bytes(4, "big")


def bench_encoding(results: Results, signer: Signer) -> None:
    """The same 250,000 entries as JSON (hex hashes) and as signed MessagePack segments."""
    entries = [
        ListEntry(os.urandom(32), i + 1, 0, 1.7e9, 1.8e9 if i % 2 else None) for i in range(BADGES)
    ]
    as_json = msgspec.json.encode(
        [[e.badge.hex(), e.member_id, e.state, e.valid_from, e.valid_until] for e in entries]
    )
    t0 = time.perf_counter()
    msgspec.json.decode(as_json)
    json_decode = time.perf_counter() - t0
    _, segments = cut_snapshot(CENTRE, 1, entries, time.time())
    payloads = [signer.sign(s) for s in segments]
    verifier = Verifier([signer.public_hex])
    t0 = time.perf_counter()
    index = {}
    for p in payloads:
        for e in verifier.open(ListSegment, p).entries:
            index[e.badge] = e
    packed_decode = time.perf_counter() - t0
    packed = sum(map(len, payloads))
    print(
        f"list encoding, {BADGES:,} badges: MessagePack signed {packed / 1e6:.1f} MB "
        f"({packed / BADGES:.0f} B/badge) verified+decoded+indexed in {packed_decode:.2f} s"
    )
    print(
        f"  floor: the same entries as JSON {len(as_json) / 1e6:.1f} MB "
        f"({len(as_json) / BADGES:.0f} B/badge), decode alone {json_decode:.2f} s; "
        f"size ratio {packed / len(as_json):.2f}x, time ratio {packed_decode / json_decode:.2f}x"
    )
    results.add(
        "list_encoding",
        badges=BADGES,
        msgpack_bytes=packed,
        json_bytes=len(as_json),
        msgpack_install_s=packed_decode,
        json_decode_s=json_decode,
        size_ratio=packed / len(as_json),
        time_ratio=packed_decode / json_decode,
    )


def _settings(workdir: Path, broker: LocalBroker, key_file: Path, signing: Path) -> Settings:
    return Settings(
        data_dir=workdir / "lists-server",
        badge_key_file=key_file,
        signing_key_file=signing,
        mqtt_port=broker.port,
        mqtt_client_id="bench-lists",
    )


def bench_scale(
    results: Results, workdir: Path, broker: LocalBroker, key_file: Path, signer: Signer
) -> None:
    from server.app import create_app

    signing = workdir / "lists-signing.key"
    signer.write(signing)
    key = bytes.fromhex(key_file.read_text())
    settings = _settings(workdir, broker, key_file, signing)
    verifier = Verifier([signer.public_hex])
    with TestClient(create_app(settings)) as api:
        runtime = api.app.state.runtime  # type: ignore[attr-defined]
        wait_for(runtime.bridge.connected.is_set, 10, "the server's broker connection")
        api.post("/api/centres", json={"id": CENTRE, "name": "Bench"})
        api.put(f"/api/devices/{CENTRE}-01", json={"centre_id": CENTRE})
        t0 = time.perf_counter()
        runtime.store.import_members(
            {"name": f"Membre {i}", "centres": [CENTRE], "badge_hash": badge_hash(key, _uid(i))}
            for i in range(BADGES)
        )
        imported = time.perf_counter() - t0
        head_seen = threading.Event()
        heads: list[float] = []

        def on_head(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
            if msg.payload:
                heads.append(time.perf_counter())
                head_seen.set()

        watcher = subscribed_client(
            broker.port, "bench-head", topics.topic(topics.LIST_HEAD, CENTRE), on_head
        )
        head_seen.clear()
        heads.clear()
        t0 = time.perf_counter()
        runtime.access_changed([CENTRE])
        wait_for(lambda: heads and time.perf_counter() - heads[-1] > 0, 120, "the snapshot")
        published = heads[-1] - t0
        close(watcher)
        print(
            f"server: {BADGES:,} badges imported in {imported:.1f} s; snapshot compiled, "
            f"signed and published in {published:.2f} s"
        )

        # Floor: a bare subscriber receiving the same retained segments from the broker.
        segments_seen: list[int] = []
        all_segments = threading.Event()
        expected = -(-BADGES // 10_000)

        def on_segment(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
            if msg.payload:
                segments_seen.append(len(msg.payload))
                if len(segments_seen) >= expected:
                    all_segments.set()

        t0 = time.perf_counter()
        bare = subscribed_client(
            broker.port, "bench-bare", topics.segment_subscription(CENTRE), on_segment
        )
        all_segments.wait(60)
        floor_sync = time.perf_counter() - t0
        close(bare)

        cfg = unit_config(
            workdir / "lists-unit",
            broker.port,
            key_file,
            signer.public_hex,
            device_id=f"{CENTRE}-01",
            centre=CENTRE,
        )
        agent = EdgeAgent(cfg, build(cfg, pin_factory=MockFactory()))
        t0 = time.perf_counter()
        agent.start()
        wait_for(lambda: len(agent.access) >= BADGES, 120, "the unit's full sync")
        full_sync = time.perf_counter() - t0
        print(
            f"unit full sync of {BADGES:,} badges (connect, fetch, verify, install): "
            f"{full_sync:.2f} s"
        )
        print(
            f"  floor: a bare subscriber receiving the same {sum(segments_seen) / 1e6:.1f} MB of "
            f"retained segments: {floor_sync:.2f} s; ratio {full_sync / floor_sync:.2f}x"
        )
        results.add(
            "list_full_sync",
            badges=BADGES,
            server_publish_s=published,
            unit_sync_s=full_sync,
            floor_s=floor_sync,
            ratio=full_sync / floor_sync,
            target_s=5.0,
        )

        # The badge path at rest, then while a new snapshot installs.
        known = [_uid(i) for i in range(0, BADGES, 997)]

        def badge_latencies(stop: threading.Event | None, count: int) -> list[float]:
            out = []
            for n in range(count):
                if stop is not None and stop.is_set() and n > 20:
                    break
                t1 = time.perf_counter()
                event = agent.badge("entree", known[n % len(known)])
                out.append(time.perf_counter() - t1)
                assert event.granted, event.reason
            return out

        at_rest = badge_latencies(None, 200)
        version = agent.access.snapshot_version
        runtime.store.import_members(
            {
                "name": f"Nouveau {i}",
                "centres": [CENTRE],
                "badge_hash": badge_hash(key, _uid(BADGES + i)),
            }
            for i in range(3_000)
        )
        installed = threading.Event()
        during: list[float] = []
        runtime.access_changed([CENTRE])

        def watch() -> None:
            wait_for(lambda: agent.access.snapshot_version != version, 120, "the new snapshot")
            installed.set()

        watcher_thread = threading.Thread(target=watch)
        watcher_thread.start()
        while not installed.is_set():
            during += badge_latencies(installed, 50)
        watcher_thread.join()
        rest_p99, during_p99 = percentile(at_rest, 0.99), percentile(during, 0.99)
        print(
            f"badge path while a {BADGES + 3000:,}-badge snapshot installs: p99 "
            f"{during_p99 * 1000:.2f} ms, median {statistics.median(during) * 1000:.2f} ms "
            f"over {len(during)} badges (target p99 ≤ 5 ms)"
        )
        print(
            f"  floor: the same path at rest: p99 {rest_p99 * 1000:.2f} ms; ratio "
            f"{during_p99 / rest_p99:.2f}x"
        )
        results.add(
            "badge_during_install",
            p99_ms=during_p99 * 1000,
            median_ms=statistics.median(during) * 1000,
            badges=len(during),
            floor_p99_ms=rest_p99 * 1000,
            ratio=during_p99 / rest_p99,
            target_p99_ms=5.0,
        )

        # A revocation through the API reaching 2,000 connected units.
        victim = _uid(12_345)
        victim_hash = bytes.fromhex(badge_hash(key, victim))
        member = runtime.store.member_by_badge_hash(victim_hash.hex())
        badge_id = next(b["id"] for b in member["badges"] if b["badge_hash"] == victim_hash.hex())
        delta_topic = topics.topic(topics.LIST_DELTA, CENTRE)
        floor_topic = "bench/floor"
        arrivals: dict[int, float] = {}
        floor_arrivals: dict[int, float] = {}
        payloads: dict[int, bytes] = {}

        def on_fleet(index: int, msg: mqtt.MQTTMessage) -> None:
            if msg.retain or not msg.payload:
                return  # the retained delta every subscriber gets at once
            if msg.topic == floor_topic:
                floor_arrivals.setdefault(index, time.perf_counter())
            else:
                arrivals.setdefault(index, time.perf_counter())
                payloads[index] = msg.payload

        publisher = connected_client(broker.port, "bench-floor-pub")
        fleet = Fleet(broker.port, UNITS, lambda i: [delta_topic, floor_topic], on_fleet)
        try:
            if not fleet.all_subscribed.wait(120):
                raise RuntimeError("the fleet did not subscribe")
            t0 = time.perf_counter()
            assert api.post(f"/api/badges/{badge_id}/revoke").status_code == 200
            wait_for(lambda: len(arrivals) >= UNITS, 60, "the revocation at every unit")
            wait_for(
                lambda: agent.access.decide(victim_hash, time.time()).reason == "revoked",
                60,
                "the real unit denying the card",
            )
            real_unit = time.perf_counter() - t0
            latencies = sorted(t - t0 for t in arrivals.values())
            size = len(next(iter(payloads.values())))
            # Every unit checks the signature and sees the card revoked (off the clock).
            for raw in payloads.values():
                delta = verifier.open(ListDelta, raw)
                assert any(e.badge == victim_hash and e.state == REVOKED for e in delta.upsert)
            t0 = time.perf_counter()
            publisher.publish(floor_topic, b"x" * size, qos=1)
            wait_for(lambda: len(floor_arrivals) >= UNITS, 60, "the floor publish at every unit")
            floor_lat = sorted(t - t0 for t in floor_arrivals.values())
        finally:
            fleet.close()
            close(publisher)
            agent.stop()
        p99, floor_p99 = percentile(latencies, 0.99), percentile(floor_lat, 0.99)
        print(
            f"revocation (API call → signed delta at each of {UNITS:,} units): p50 "
            f"{statistics.median(latencies) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, "
            f"max {latencies[-1] * 1000:.0f} ms; the real unit with {BADGES:,} badges denies "
            f"after {real_unit * 1000:.0f} ms (target p99 ≤ 1 s)"
        )
        print(
            f"  floor: a bare publish of the same {size} bytes to the same {UNITS:,} clients: "
            f"p99 {floor_p99 * 1000:.0f} ms; ratio {p99 / floor_p99:.2f}x"
        )
        results.add(
            "revocation_fanout",
            units=UNITS,
            p50_ms=statistics.median(latencies) * 1000,
            p99_ms=p99 * 1000,
            real_unit_ms=real_unit * 1000,
            delta_bytes=size,
            floor_p99_ms=floor_p99 * 1000,
            ratio=p99 / floor_p99,
            target_p99_ms=1000.0,
        )
