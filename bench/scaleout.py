"""Ingest with 1, 2 and 4 server workers on PostgreSQL beside one worker on SQLite.

Each worker is its own process (the real ``Runtime``: bridge, handlers, acker, store),
with its own broker account, in one MQTT v5 shared subscription group; on PostgreSQL they
share a private cluster started for the run (``server.store.postgres.cluster``, fsync on:
a commit is durable, as on SQLite with ``synchronous=FULL``). Units' events are sent by
one client, spread over ``UNITS`` units; the figure is events committed and acked per
second, as a ratio to a bare QoS1 subscriber receiving the same payloads through the same
broker in the same run.

``python -m bench scaleout``; ``QUICK=1`` sends fewer events.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from bench.common import Results, close, connected_client, subscribed_client
from protocol import topics
from protocol.messages import Ack, Event, encode
from protocol.signing import Signer, Verifier
from server.broker import LocalBroker
from server.store import Store

UNITS = 20
EVENTS = 1_500 if os.environ.get("QUICK") else 6_000
CONFIGS = (("sqlite", 1), ("postgresql", 1), ("postgresql", 2), ("postgresql", 4))
GROUP = "bench"
ROOT = Path(__file__).resolve().parents[1]


def payloads(count: int) -> list[tuple[str, bytes]]:
    epoch = secrets.token_hex(16)
    out = []
    for i in range(count):
        unit = f"bench-{i % UNITS:02d}"
        event = Event(
            event_id=str(uuid.uuid4()),
            device_id=unit,
            epoch=epoch,
            seq=i // UNITS + 1,
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
        out.append((topics.topic(topics.EVENT, unit), encode(event)))
    return out


def floor_rate(broker: LocalBroker, messages: list[tuple[str, bytes]]) -> float:
    """A bare QoS1 subscriber's rate through the same broker, same payloads."""
    received = 0
    done = threading.Event()

    def count(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        nonlocal received
        received += 1
        if received >= len(messages):
            done.set()

    sink = subscribed_client(broker, "scaleout-sink", "bench/scaleout", count)
    sender = connected_client(broker, "scaleout-floor-sender")
    t0 = time.perf_counter()
    for _, payload in messages:
        sender.publish("bench/scaleout", payload, qos=1)
    done.wait(120)
    elapsed = time.perf_counter() - t0
    close(sink, sender)
    return len(messages) / elapsed


def start_workers(
    broker: LocalBroker, workdir: Path, location: str | Path, count: int, keys: dict[str, Path]
) -> list[subprocess.Popen[str]]:
    procs = []
    for i in range(count):
        name = f"bench-worker-{i}"
        account = broker.add_server_worker(name)
        env = {
            **os.environ,
            **{f"TELECENTRE_{k.upper()}": str(v) for k, v in account.items()},
            "TELECENTRE_DATA_DIR": str(workdir / name),
            "TELECENTRE_BADGE_KEY_FILE": str(keys["badge"]),
            "TELECENTRE_SIGNING_KEY_FILE": str(keys["signing"]),
            "TELECENTRE_MQTT_SHARE_GROUP": GROUP,
            "TELECENTRE_EVENT_RETENTION_DAYS": "3650",
        }
        if isinstance(location, str):
            env["TELECENTRE_DATABASE_URL"] = location
        else:
            env["TELECENTRE_DATA_DIR"] = str(location.parent)
            env.pop("TELECENTRE_MQTT_SHARE_GROUP")  # one SQLite worker: no group
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "bench.scaleout", "worker"],
                cwd=ROOT,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    for proc in procs:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if line != "ready":
            raise RuntimeError(f"a bench worker did not start: {line!r}")
    return procs


def stop_workers(procs: list[subprocess.Popen[str]]) -> None:
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.close()
    for proc in procs:
        proc.wait(30)


def run_config(
    broker: LocalBroker,
    workdir: Path,
    location: str | Path,
    workers: int,
    keys: dict[str, Path],
    verifier: Verifier,
    messages: list[tuple[str, bytes]],
) -> tuple[float, int]:
    """(events committed and acked per second, events stored)."""
    store = Store(location)
    store.create_centre("scaleout", "Scale-out")
    for i in range(UNITS):
        store.assign_device(f"bench-{i:02d}", "scaleout")
    acked = 0
    lock = threading.Lock()
    done = threading.Event()

    def on_ack(c: mqtt.Client, u: object, msg: mqtt.MQTTMessage) -> None:
        nonlocal acked
        with lock:
            acked += len(verifier.open(Ack, msg.payload).seqs)
            if acked >= len(messages):
                done.set()

    procs = start_workers(broker, workdir, location, workers, keys)
    acks = subscribed_client(broker, "scaleout-acks", "telecentre/+/ack", on_ack)
    sender = connected_client(broker, "scaleout-sender")
    try:
        t0 = time.perf_counter()
        for topic, payload in messages:
            sender.publish(topic, payload, qos=1)
        done.wait(300)
        elapsed = time.perf_counter() - t0
        stored = store.event_count()
    finally:
        close(acks, sender)
        stop_workers(procs)
        store.close()
    return len(messages) / elapsed, stored


def bench_scaleout(
    results: Results, workdir: Path, broker: LocalBroker, key_file: Path, signer: Signer
) -> None:
    from server.store.postgres.cluster import LocalPostgres, PostgresMissing

    signing = workdir / "scaleout-signing.key"
    signer.write(signing)
    keys = {"badge": key_file, "signing": signing}
    verifier = Verifier([signer.public_hex])
    messages = payloads(EVENTS)
    try:
        cluster: Any = LocalPostgres().start()
    except PostgresMissing as exc:
        print(f"scale-out: skipped ({exc})")
        return
    try:
        for engine, workers in CONFIGS:
            floor = floor_rate(broker, messages)
            if engine == "sqlite":
                location: str | Path = workdir / "scaleout-sqlite" / "telecentre.db"
            else:
                location = cluster.database()
            rate, stored = run_config(
                broker, workdir / f"{engine}-{workers}", location, workers, keys, verifier, messages
            )
            name = f"scaleout_{engine}_{workers}_worker{'s' if workers > 1 else ''}"
            print(
                f"ingest, {workers} worker{'s' if workers > 1 else ''} on {engine}: "
                f"{rate:,.0f} events/s ({stored} stored); floor {floor:,.0f} msg/s; "
                f"ratio {rate / floor:.2f}x"
            )
            results.add(
                name,
                events_per_s=rate,
                floor_msg_per_s=floor,
                ratio=rate / floor,
                stored=stored,
                workers=workers,
                engine=engine,
                load=os.getloadavg()[0],
            )
    finally:
        cluster.stop()


def worker() -> int:
    """One server worker (``python -m bench.scaleout worker``): the real runtime from
    TELECENTRE_* variables, until its standard input closes."""
    from server.runtime import Runtime
    from server.settings import Settings

    runtime = Runtime.start(Settings.from_env())
    try:
        if not runtime.bridge.connected.wait(30):
            print(f"not connected: {runtime.bridge.error}", flush=True)
            return 1
        print("ready", flush=True)
        sys.stdin.read()
    finally:
        runtime.stop()
    return 0


if __name__ == "__main__" and sys.argv[1:] == ["worker"]:
    sys.exit(worker())
