"""The unit at national scale: memory, idle CPU and decisions with 250,000 badges.

Each figure is measured in a process of its own (``python -m bench.edge_scale CHILD ...``),
so one figure's garbage does not weigh on the next, against a floor measured in the same
run:
- resident memory of a real agent holding 0, 25,000 and 250,000 badges, installed through
  the real path (signed head and segments handed to the agent), against a bare interpreter
  with the same imports; beside it, the same list held as one dict of entries (the v1 way);
- idle CPU of a real agent started on mock pins with the real mfrc522 library on the
  simulated chip (a reader, a door contact, an exit button, a PIR), connected to the broker,
  over a fixed window, against a bare interpreter with the same imports sleeping as long;
- decision latency with 250,000 badges for a known card, an unknown card and a plan holder
  (day credits read from the outbox), against a dict lookup of the same badges.

``QUICK=1`` uses smaller counts (25,000 badges at most, shorter windows).
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import json
import os
import secrets
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import Results, percentile, unit_config
from protocol.signing import Signer
from server.broker import LocalBroker

QUICK = os.environ.get("QUICK") == "1"
COUNTS = (0, 2_500, 25_000) if QUICK else (0, 25_000, 250_000)
IDLE_WINDOW_S = 3.0 if QUICK else 20.0
DECISIONS = 500 if QUICK else 5_000
CENTRE = "bench"
NOW = 1_780_000_000.0
PLAN_EVERY = 4  # every fourth member holds a day-pass book


def _uid(i: int) -> bytes:
    return (0x20000000 + i).to_bytes(4, "big")


# -- the parent: payloads, children, figures ----------------------------------------------------


def _write_payloads(path: Path, key: bytes, signer: Signer, count: int) -> None:
    """The signed head and segments of a ``count``-badge snapshot, length-prefixed, so a
    child reads them one at a time and holds nothing else."""
    from protocol.badges import badge_hash
    from protocol.lists import cut_snapshot
    from protocol.messages import ListEntry, PlanRule

    entries = []
    for i in range(count):
        plans = [PlanRule(1, credits=10)] if i % PLAN_EVERY == 1 else None
        entries.append(
            ListEntry(bytes.fromhex(badge_hash(key, _uid(i))), i + 1, 0, 1.7e9, 1.9e9, plans)
        )
    entries.sort(key=lambda e: e.badge)  # the server cuts in badge order
    head, segments = cut_snapshot(CENTRE, 1, entries, NOW)
    with path.open("wb") as out:
        for body in (head, *segments):
            raw = signer.sign(body)
            out.write(struct.pack(">I", len(raw)) + raw)


def _child(*args: str, timeout: float = 600) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "bench.edge_scale", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.edge_scale {args[0]} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_edge_scale(
    results: Results, workdir: Path, broker: LocalBroker, key_file: Path, signer: Signer
) -> None:
    workdir = workdir / "edge-scale"
    workdir.mkdir(parents=True, exist_ok=True)
    key = bytes.fromhex(key_file.read_text())

    floor = _child("floor")
    memory: dict[str, Any] = {"floor_rss_mb": floor["rss_mb"]}
    print(f"edge memory: a bare interpreter with the agent's imports: {floor['rss_mb']:.1f} MB")
    decisions: dict[str, Any] = {}
    during: tuple[float, ...] = ()
    index: dict[str, Any] = {}
    for count in COUNTS:
        payloads = workdir / f"list-{count}.bin"
        _write_payloads(payloads, key, signer, count)
        unit = workdir / f"unit-{count}"
        unit_config(unit, broker, key_file, signer.public_hex, centre=CENTRE)
        got = _child("agent", str(unit / "unit.toml"), str(payloads), str(key_file), str(count))
        ratio = got["rss_mb"] / floor["rss_mb"]
        line = (
            f"  agent with {count:,} badges: resident {got['rss_mb']:.1f} MB "
            f"(peak {got['peak_mb']:.1f} MB, install {got['install_s']:.2f} s); "
            f"ratio to the floor {ratio:.2f}x"
        )
        memory[f"agent_{count}_rss_mb"] = got["rss_mb"]
        memory[f"agent_{count}_peak_mb"] = got["peak_mb"]
        memory[f"agent_{count}_install_s"] = got["install_s"]
        memory[f"agent_{count}_ratio"] = ratio
        if count:
            line += (
                f"\n    fetched again while in force: resident {got['reinstall_rss_mb']:.1f} MB "
                f"(peak {got['reinstall_peak_mb']:.1f} MB)"
            )
            memory[f"agent_{count}_reinstall_peak_mb"] = got["reinstall_peak_mb"]
            boot = _child("boot", str(unit / "unit.toml"), str(count))
            line += (
                f"; restarted from the saved list: resident {boot['rss_mb']:.1f} MB "
                f"(peak {boot['peak_mb']:.1f} MB, verified and loaded in {boot['load_s']:.2f} s)"
            )
            memory[f"agent_{count}_boot_rss_mb"] = boot["rss_mb"]
            memory[f"agent_{count}_boot_peak_mb"] = boot["peak_mb"]
            memory[f"agent_{count}_boot_load_s"] = boot["load_s"]
            as_dict = _child("dict", str(payloads))
            line += f"; as one dict of entries: {as_dict['rss_mb']:.1f} MB"
            memory[f"dict_{count}_rss_mb"] = as_dict["rss_mb"]
        print(line)
        if count == COUNTS[-1]:
            decisions = got["decisions"]
            index = _child(
                "sqlite", str(payloads), str(key_file), str(count), str(workdir / "index.db")
            )
            during = got["during_install"]
        payloads.unlink()
    memory["target_rss_mb_at_250k"] = 100.0
    results.add("edge_memory", **memory)

    floor_p99 = decisions.pop("floor_p99_ms")
    floor_p50 = decisions.pop("floor_p50_ms")
    figures: dict[str, Any] = {
        "badges": COUNTS[-1],
        "floor_p50_ms": floor_p50,
        "floor_p99_ms": floor_p99,
    }
    print(f"edge decisions with {COUNTS[-1]:,} badges (access.decide, outbox credit days):")
    for what, (p50, p99) in decisions.items():
        print(
            f"  {what}: p50 {p50 * 1000:.1f} µs, p99 {p99 * 1000:.1f} µs; "
            f"ratio to a dict lookup p99 {p99 / floor_p99:.1f}x"
        )
        figures[f"{what}_p50_ms"] = p50
        figures[f"{what}_p99_ms"] = p99
        figures[f"{what}_ratio_p99"] = p99 / floor_p99
    print(f"  floor: a dict lookup of the same badges: p99 {floor_p99 * 1000:.2f} µs")
    print(
        f"  the other design, an on-disk SQLite index of the same list: lookup (no policy) "
        f"p50 {index['p50_ms'] * 1000:.1f} µs, p99 {index['p99_ms'] * 1000:.1f} µs; resident "
        f"{index['rss_mb']:.1f} MB; built in {index['build_s']:.2f} s"
    )
    figures["sqlite_index_lookup_p50_ms"] = index["p50_ms"]
    figures["sqlite_index_lookup_p99_ms"] = index["p99_ms"]
    figures["sqlite_index_rss_mb"] = index["rss_mb"]
    figures["sqlite_index_build_s"] = index["build_s"]
    print(
        f"  a card every millisecond while the list is fetched again and swapped: "
        f"p50 {during[0]:.2f} ms, p99 {during[1]:.2f} ms over {during[2]} cards "
        f"(target ≤ 5 ms)"
    )
    print(
        f"  floor: the same while this process runs pure Python as long: p50 "
        f"{during[3]:.2f} ms, p99 {during[4]:.2f} ms; ratio p99 {during[1] / during[4]:.2f}x"
    )
    figures["during_install_p50_ms"] = during[0]
    figures["during_install_p99_ms"] = during[1]
    figures["during_install_cards"] = during[2]
    figures["floor_busy_p50_ms"] = during[3]
    figures["floor_busy_p99_ms"] = during[4]
    figures["during_install_ratio_p99"] = during[1] / during[4]
    figures["target_p99_ms"] = 5.0
    results.add("edge_decision", **figures)

    unit_config(workdir / "idle", broker, key_file, signer.public_hex, centre=CENTRE)
    _idle_config(workdir / "idle" / "unit.toml")
    idle = _child("idle", str(workdir / "idle" / "unit.toml"), str(IDLE_WINDOW_S))
    idle_floor = _child("idle-floor", str(IDLE_WINDOW_S))
    print(
        f"edge idle CPU over {IDLE_WINDOW_S:.0f} s (agent started: mfrc522 on the simulated "
        f"chip, door contact, exit button, PIR, connected): {idle['cpu_pct']:.2f} % of one core "
        f"(target ≤ 2 %)"
    )
    print(
        f"  floor: a bare interpreter with the same imports, asleep as long: "
        f"{idle_floor['cpu_pct']:.3f} %; the agent's threads woke {idle['wakeups_per_s']:.0f} "
        "times a second"
    )
    print(f"  by thread (% of one core): {idle['threads']}")
    results.add(
        "edge_idle_cpu",
        window_s=IDLE_WINDOW_S,
        cpu_pct=idle["cpu_pct"],
        floor_cpu_pct=idle_floor["cpu_pct"],
        above_floor_pct=idle["cpu_pct"] - idle_floor["cpu_pct"],
        wakeups_per_s=idle["wakeups_per_s"],
        target_pct=2.0,
    )


def _idle_config(path: Path) -> None:
    """The bench unit with the real reader, a door contact, an exit button and a PIR."""
    text = path.read_text().replace('kind = "fake"', 'kind = "mfrc522"')
    text = text.replace(
        "unlock_seconds = 0.5\n", "unlock_seconds = 0.5\ncontact_pin = 27\nexit_button_pin = 23\n"
    )
    text += '\n[[rooms]]\nid = "visio"\nname = "Salle visio"\nmotion_pin = 22\n'
    path.write_text(text)


# -- the children --------------------------------------------------------------------------------


def _imports() -> None:
    """What the agent imports, for the floors too."""
    import gpiozero.pins.mock  # noqa: F401

    import edge.agent  # noqa: F401
    import edge.hardware.build  # noqa: F401


def _rss_mb() -> tuple[float, float]:
    """(resident, peak resident) of this process in MB, from /proc."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def _read_payloads(path: Path):  # type: ignore[no-untyped-def]
    with path.open("rb") as source:
        while header := source.read(4):
            yield source.read(struct.unpack(">I", header)[0])


def _timed(call, items: list[Any]) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(p50, p99) in ms of ``call(item)`` over ``items``."""
    took = []
    for item in items:
        t0 = time.perf_counter()
        call(item)
        took.append(time.perf_counter() - t0)
    took.sort()
    return took[len(took) // 2] * 1000, percentile(took, 0.99) * 1000


def _sampled(decide, work) -> tuple[float, float, int]:  # type: ignore[no-untyped-def]
    """(p50 ms, p99 ms, count) of a card decided every millisecond while ``work()`` runs
    on this thread; a card's latency counts from when it was due, so a decision kept
    waiting (for the interpreter lock, or a core) shows."""
    lateness: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        due = time.perf_counter()
        while not stop.is_set():
            decide()
            done = time.perf_counter()
            lateness.append(done - due)
            due = max(due + 0.001, done)
            stop.wait(max(0.0, due - time.perf_counter()))

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        work()
    finally:
        stop.set()
        sampler.join()
    lateness.sort()
    return lateness[len(lateness) // 2] * 1000, percentile(lateness, 0.99) * 1000, len(lateness)


def child_floor() -> dict[str, Any]:
    _imports()
    gc.collect()
    return {"rss_mb": _rss_mb()[0]}


def child_agent(config: str, payloads: str, key_file: str, count: str) -> dict[str, Any]:
    from gpiozero.pins.mock import MockFactory

    from edge import config as edge_config
    from edge.agent import EdgeAgent, tune_for_latency
    from edge.hardware.build import build
    from protocol import topics
    from protocol.badges import badge_hash

    cfg = edge_config.load(Path(config))
    agent = EdgeAgent(cfg, build(cfg, pin_factory=MockFactory()))
    agent.lists._subscribe = agent.lists._unsubscribe = lambda topic: None  # type: ignore[method-assign]
    leaves = iter(_read_payloads(Path(payloads)))
    t0 = time.perf_counter()
    agent.handle(topics.parse(topics.topic(topics.LIST_HEAD, CENTRE)), next(leaves))
    for i, raw in enumerate(leaves):
        agent.handle(topics.parse(topics.topic(topics.LIST_SEGMENT, CENTRE, i)), raw)
    install_s = time.perf_counter() - t0
    n = int(count)
    if len(agent.access) != n or agent.access.version != 1:
        raise RuntimeError(f"installed {len(agent.access)} badges, not {n}")
    gc.collect()
    rss, peak = _rss_mb()
    out: dict[str, Any] = {"rss_mb": rss, "peak_mb": peak, "install_s": install_s}
    if n:
        # The same snapshot fetched again (by command) while the first is in force: both
        # are alive until the swap. A card is decided every millisecond meanwhile; its
        # latency counts from when it was due, so a decision kept waiting shows.
        tune_for_latency()
        key = bytes.fromhex(Path(key_file).read_text())
        cards = [bytes.fromhex(badge_hash(key, _uid(i - i % PLAN_EVERY))) for i in range(0, n, 997)]

        def install_again() -> None:
            agent.lists.refetch()
            leaves = iter(_read_payloads(Path(payloads)))
            agent.handle(topics.parse(topics.topic(topics.LIST_HEAD, CENTRE)), next(leaves))
            for i, raw in enumerate(leaves):
                agent.handle(topics.parse(topics.topic(topics.LIST_SEGMENT, CENTRE, i)), raw)

        def decide() -> None:
            agent.access.decide(next(card), time.time())

        card = itertools.cycle(cards)
        t0 = time.perf_counter()
        lateness = _sampled(decide, install_again)
        took = time.perf_counter() - t0
        if agent.lists.fetching is not None or len(agent.access) != n:
            raise RuntimeError("the snapshot was not installed again")

        def busy() -> None:  # pure Python as long as the install took: the floor
            end = time.perf_counter() + took
            while time.perf_counter() < end:
                sum(range(200))

        floor_lateness = _sampled(decide, busy)
        out["during_install"] = (*lateness, *floor_lateness)
        gc.collect()
        out["reinstall_rss_mb"], out["reinstall_peak_mb"] = _rss_mb()
        key = bytes.fromhex(Path(key_file).read_text())
        picks = [i * 7919 % n for i in range(DECISIONS)]

        def hashed(i: int) -> bytes:
            return bytes.fromhex(badge_hash(key, _uid(i)))

        known = [hashed(i - i % PLAN_EVERY) for i in picks]  # i % 4 == 0: no plan
        plan = [hashed(i - i % PLAN_EVERY + 1) for i in picks if i - i % PLAN_EVERY + 1 < n]
        unknown = [hashlib.sha256(secrets.token_bytes(8)).digest() for _ in range(DECISIONS)]
        now = time.time()
        credit_days = agent.outbox.credit_days
        for badge, want in ((known[0], "granted"), (plan[0], "granted"), (unknown[0], None)):
            got = agent.access.decide(badge, now, credit_days).reason
            if got != (want or "unknown_card"):
                raise RuntimeError(f"decision {got!r}, expected {want or 'unknown_card'!r}")
        floor_index = {b: b for b in known}
        floor = _timed(floor_index.get, known)
        out["decisions"] = {
            "known": _timed(lambda b: agent.access.decide(b, now, credit_days), known),
            "unknown": _timed(lambda b: agent.access.decide(b, now, credit_days), unknown),
            "plan_holder": _timed(lambda b: agent.access.decide(b, now, credit_days), plan),
            "floor_p50_ms": floor[0],
            "floor_p99_ms": floor[1],
        }
    agent.stop()
    return out


def child_sqlite(payloads: str, key_file: str, count: str, db_path: str) -> dict[str, Any]:
    """The other design: the list as an on-disk SQLite index (badge -> packed entry), built
    from the same signed segments; its resident memory and lookup time."""
    import sqlite3

    import msgspec

    _imports()
    from protocol.badges import badge_hash
    from protocol.messages import ListEntry, ListSegment, decode_body
    from protocol.signing import Envelope

    envelope = msgspec.msgpack.Decoder(Envelope)
    encode = msgspec.msgpack.Encoder().encode
    db = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE entry (badge BLOB PRIMARY KEY, packed BLOB NOT NULL) WITHOUT ROWID")
    leaves = iter(_read_payloads(Path(payloads)))
    next(leaves)
    t0 = time.perf_counter()
    db.execute("BEGIN")
    for raw in leaves:
        segment = decode_body(ListSegment, envelope.decode(raw).body)
        db.executemany(
            "INSERT OR REPLACE INTO entry VALUES (?, ?)",
            [(e.badge, encode(e)) for e in segment.entries],
        )
    db.execute("COMMIT")
    build_s = time.perf_counter() - t0
    gc.collect()
    rss, _ = _rss_mb()
    decoder = msgspec.msgpack.Decoder(ListEntry)
    n = int(count)
    key = bytes.fromhex(Path(key_file).read_text())
    cards = [
        bytes.fromhex(badge_hash(key, _uid(i * 7919 % n - i * 7919 % n % PLAN_EVERY)))
        for i in range(DECISIONS)
    ]

    def lookup(badge: bytes) -> ListEntry | None:
        row = db.execute("SELECT packed FROM entry WHERE badge = ?", (badge,)).fetchone()
        return decoder.decode(row[0]) if row else None

    if lookup(cards[0]) is None:
        raise RuntimeError("the SQLite index lost a badge")
    p50, p99 = _timed(lookup, cards)
    db.close()
    return {"rss_mb": rss, "build_s": build_s, "p50_ms": p50, "p99_ms": p99}


def child_boot(config: str, count: str) -> dict[str, Any]:
    """A unit restarting with the list the ``agent`` child saved: verified and packed again."""
    from gpiozero.pins.mock import MockFactory

    from edge import config as edge_config
    from edge.agent import EdgeAgent
    from edge.hardware.build import build

    cfg = edge_config.load(Path(config))
    t0 = time.perf_counter()
    agent = EdgeAgent(cfg, build(cfg, pin_factory=MockFactory()))
    load_s = time.perf_counter() - t0
    if len(agent.access) != int(count):
        raise RuntimeError(f"loaded {len(agent.access)} badges, not {count}")
    gc.collect()
    rss, peak = _rss_mb()
    agent.stop()
    return {"rss_mb": rss, "peak_mb": peak, "load_s": load_s}


def child_dict(payloads: str) -> dict[str, Any]:
    """The same list as one dict of decoded entries (the v1 unit), for comparison."""
    _imports()
    import msgspec

    from protocol.messages import ListSegment, decode_body
    from protocol.signing import Envelope

    envelope = msgspec.msgpack.Decoder(Envelope)
    leaves = iter(_read_payloads(Path(payloads)))
    next(leaves)
    index = {}
    for raw in leaves:
        for entry in decode_body(ListSegment, envelope.decode(raw).body).entries:
            index[entry.badge] = entry
    gc.collect()
    return {"rss_mb": _rss_mb()[0], "entries": len(index)}


def child_idle(config: str, window: str) -> dict[str, Any]:
    from gpiozero.pins.mock import MockFactory

    from edge import config as edge_config
    from edge.hardware.simchip import SimulatedMfrc522, install

    _imports()
    from edge.agent import EdgeAgent
    from edge.hardware.build import build

    cfg = edge_config.load(Path(config))
    with install(SimulatedMfrc522()):
        agent = EdgeAgent(cfg, build(cfg, pin_factory=MockFactory()))
        agent.start()
        try:
            if not agent.link.connected.wait(20):
                raise RuntimeError("the agent did not connect to the broker")
            settle = threading.Event()
            settle.wait(1.0)  # birth message, retained topics
            switches0, threads0 = _context_switches(), _thread_cpu()
            cpu0, wall0 = time.process_time(), time.perf_counter()
            settle.wait(float(window))
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            switches, threads = _context_switches() - switches0, _thread_cpu()
        finally:
            agent.stop()
    busiest = {
        name: round(100 * (ticks - threads0.get(name, 0)) / wall, 3)
        for name, ticks in sorted(threads.items(), key=lambda kv: threads0.get(kv[0], 0) - kv[1])
    }
    return {"cpu_pct": 100 * cpu / wall, "wakeups_per_s": switches / wall, "threads": busiest}


def _thread_cpu() -> dict[str, float]:
    """CPU seconds of each Python thread of this process, by thread name."""
    tick = os.sysconf("SC_CLK_TCK")
    names = {t.native_id: t.name for t in threading.enumerate()}
    used: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        fields = (task / "stat").read_text().rpartition(")")[2].split()
        name = names.get(int(task.name), f"native-{task.name}")
        used[name] = used.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return used


def _context_switches() -> int:
    """Voluntary context switches of every thread of this process (each is a wake-up)."""
    total = 0
    for task in Path("/proc/self/task").iterdir():
        for line in (task / "status").read_text().splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                total += int(line.split()[1])
    return total


def child_idle_floor(window: str) -> dict[str, Any]:
    _imports()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    threading.Event().wait(float(window))
    return {"cpu_pct": 100 * (time.process_time() - cpu0) / (time.perf_counter() - wall0)}


CHILDREN = {
    "floor": child_floor,
    "agent": child_agent,
    "dict": child_dict,
    "boot": child_boot,
    "sqlite": child_sqlite,
    "idle": child_idle,
    "idle-floor": child_idle_floor,
}

if __name__ == "__main__":
    print(json.dumps(CHILDREN[sys.argv[1]](*sys.argv[2:])))
