"""Ingest with 1, 2 and 4 server workers on PostgreSQL beside one worker on SQLite.

Each worker is its own process (the real ``Runtime``: bridge, handlers, acker, store),
with its own broker account, in one MQTT v5 shared subscription group; on PostgreSQL they
share a private cluster started for the run (``server.store.postgres.cluster``, fsync on:
a commit is durable, as on SQLite with ``synchronous=FULL``). ``UNITS`` units in as many
centres send their events from a process of their own (``bench.units``, real accounts);
the figure is events committed and acked per second, from the first publish to the last
ack back at the units, as a ratio to a bare QoS1 subscriber receiving the same payloads
through the same broker in the same run (``bench.ingest.floor_rate``), measured just before
each configuration (a quick run measures it once, before the first).

``python -m bench scaleout`` (``--quick``: fewer events).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.common import Context, register_units, unit_id, wait_for
from bench.ingest import floor_rate
from bench.units import Units
from server.broker import LocalBroker
from server.store import Store

UNITS = 20  # in 20 centres (bench.common.centre_of)
CONFIGS = (("sqlite", 1), ("postgresql", 1), ("postgresql", 2), ("postgresql", 4))
GROUP = "bench"
ROOT = Path(__file__).resolve().parents[1]


def start_workers(
    broker: LocalBroker, workdir: Path, location: str | Path, count: int, keys: dict[str, Path]
) -> list[subprocess.Popen[str]]:
    procs = []
    for i in range(count):
        name = f"bench-{workdir.name}-w{i}"  # a fresh account: no session from a past run
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
    ctx: Context, location: str | Path, workers: int, keys: dict[str, Path], events: int
) -> tuple[float, int]:
    """(events committed and acked per second, events stored)."""
    store = Store(location)
    register_units(store, UNITS)
    name = f"{'pg' if isinstance(location, str) else 'sqlite'}-{workers}"
    procs = start_workers(ctx.broker, ctx.workdir / name, location, workers, keys)
    plan = {
        "devices": [unit_id(i) for i in range(UNITS)],
        "topic": "telecentre/%s/event",
        "per_unit": events // UNITS,
        "ack_topic": "telecentre/%s/ack",
    }
    try:
        units = Units(ctx.broker, plan)
        try:
            started = units.go()
            report = units.result(600)
        finally:
            units.close()
        stored = store.event_count()
    finally:
        stop_workers(procs)
        store.close()
    if report["acked"] < events:
        raise RuntimeError(f"scale-out, {name}: {report['acked']} of {events} events acked")
    return events / (report["last_ack"] - started), stored


def run(ctx: Context) -> None:
    from server.store.postgres.cluster import LocalPostgres, PostgresMissing

    events = ctx.scale(6_000, 1_000) // UNITS * UNITS
    signing = ctx.workdir / "scaleout-signing.key"
    ctx.signer.write(signing)
    keys = {"badge": ctx.key_file, "signing": signing}
    try:
        cluster: Any = LocalPostgres().start()
    except PostgresMissing as exc:
        print(f"scale-out: skipped ({exc})")
        return
    try:
        floor = 0.0
        for engine, workers in CONFIGS:
            if not floor or not ctx.quick:  # a quick run measures it once for all four
                floor, _ = floor_rate(ctx, UNITS, events)
            location: str | Path = (
                cluster.database()
                if engine == "postgresql"
                else ctx.workdir / "scaleout-sqlite" / "telecentre.db"
            )
            rate, stored = run_config(ctx, location, workers, keys, events)
            plural = "s" * (workers > 1)
            print(
                f"ingest, {workers} worker{plural} on {engine} ({UNITS} units, committed and "
                f"acked): {rate:,.0f} events/s ({stored:,} stored)"
            )
            print(
                f"  floor: a bare QoS1 subscriber, same units, same broker: {floor:,.0f} msg/s; "
                f"ratio {rate / floor:.2f}x of the floor"
            )
            ctx.results.add(
                f"scaleout_{engine}_{workers}_worker{plural}",
                engine=engine,
                workers=workers,
                units=UNITS,
                events=events,
                events_per_s=rate,
                floor=floor,
                floor_what="bare QoS1 subscriber msg/s",
                ratio=rate / floor,
                higher_is_better=True,
                stored=stored,
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
        bridge = runtime.bridge
        if not bridge.connected.wait(30):
            print(f"not connected: {bridge.error}", flush=True)
            return 1
        try:
            wait_for(bridge.receiving, 30, "the worker's events receiver")
        except RuntimeError as exc:
            print(f"not receiving: {exc}", flush=True)
            return 1
        print("ready", flush=True)
        sys.stdin.read()
    finally:
        runtime.stop()
    return 0


if __name__ == "__main__" and sys.argv[1:] == ["worker"]:
    sys.exit(worker())
