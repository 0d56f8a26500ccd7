"""Simulated units publishing events, in a process of their own.

The server under test keeps its process to itself: ``Units`` starts
``python -m bench.units`` with a plan on stdin (accounts, topics, how many events each
unit sends and how fast) and every MQTT client of that process runs on one selector
thread (paho's external loop API), so thousands of units fit. Each unit publishes its
events QoS 1 on its own topic and, when asked, listens to its own ack topic: the process
reports, for each event, the monotonic time it was published and the time its ack came
back (CLOCK_MONOTONIC is the same clock in every process of the machine).

Floors use the same process publishing the same payloads to plain topics, so a bare
subscriber and the server see exactly the same traffic.
"""

from __future__ import annotations

import heapq
import json
import selectors
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import msgspec

from bench.wire import Unit, tls_context, topic_field
from edge.outbox import AckTimer, backoff_s
from protocol.messages import Ack, Event, decode_body, encode, new_event_id
from protocol.signing import Envelope
from server.broker import LocalBroker


@dataclass
class Plan:
    """What the units process does: ``units`` clients, each sending ``per_unit`` events on
    ``topic % device_id``, at ``rate`` events/s in all (0: as fast as paho sends)."""

    port: int
    ca_file: str
    accounts: list[tuple[str, str]]  # (user name, password), one per unit
    devices: list[str]
    topic: str  # e.g. "telecentre/%s/event" or "bench/floor/%s"
    per_unit: int
    rate: float = 0.0
    ack_topic: str | None = None  # "telecentre/%s/ack": wait for the server's acks
    report_published: bool = False  # report every event's publish time too
    epoch: str = field(default_factory=lambda: uuid.uuid4().hex)
    first_seq: int = 1
    # As a unit does (edge.outbox): an event not acked in time is sent again, the wait
    # doubling each time up to 300 s; "in time" is ack_timeout_s, or longer while acks come
    # back later (``AckTimer``). 0: never (the floor has no acks).
    ack_timeout_s: float = 10.0


class Units:
    """The parent's handle: start the process, connect every unit, ``go()``, read results."""

    def __init__(self, broker: LocalBroker, plan_fields: dict[str, Any]) -> None:
        # Each unit connects with its own account, under the real ACL (its own topics).
        accounts = [(device, broker.passwords[device]) for device in plan_fields["devices"]]
        self.plan = Plan(
            port=broker.port, ca_file=str(broker.ca_file), accounts=accounts, **plan_fields
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.units"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(self.plan.__dict__) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.proc.kill()
            raise RuntimeError(f"the units process did not connect its units: {line!r}")

    def go(self) -> float:
        """Start publishing; returns the monotonic time of the start."""
        assert self.proc.stdin is not None
        started = time.monotonic()
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return started

    def result(self, timeout: float) -> dict[str, Any]:
        """Wait for the process's report: published and acked times per event."""
        assert self.proc.stdout is not None
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
            raise RuntimeError("the units process did not finish in time") from None
        return json.loads(out.strip().splitlines()[-1])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Sent(NamedTuple):
    """An event sent and not acknowledged yet."""

    at: float  # its last send
    attempts: int
    due: float  # when it is sent again
    payload: bytes


class Resender:
    """What a unit does about events not acknowledged (``edge.outbox`` and ``edge.agent``),
    for every unit of the process: the resend waits (``AckTimer``, doubling per event up to
    300 s), and what an ack says of where the server is (``Outbox.ack``): the unit's events
    sent after the last one it names that was sent once wait ``floor_s`` more; those sent
    before it and not acknowledged are sent again within ``floor_s``."""

    def __init__(self, n: int, floor_s: float) -> None:
        self.floor_s = floor_s
        self.timers = [AckTimer(floor_s) for _ in range(n)]
        self.pending: list[dict[int, Sent]] = [{} for _ in range(n)]  # unit -> seq -> Sent
        self._heap: list[tuple[float, int, int]] = []  # (due, unit, seq); stale when moved
        self.resent = 0

    def sent(self, i: int, seq: int, payload: bytes, now: float) -> None:
        self.timers[i].sent([seq], [], now)
        self._schedule(i, seq, Sent(now, 1, now + self.timers[i].timeout_s, payload))

    def acked(self, i: int, seqs: list[int], now: float) -> None:
        pending = self.pending[i]
        once = [pending[s].at for s in seqs if s in pending and pending[s].attempts == 1]
        self.timers[i].acked(seqs, now)
        for seq in seqs:
            pending.pop(seq, None)
        if not once:
            return
        reached, until = max(once), now + self.floor_s
        for seq, sent in pending.items():
            behind = sent.at > reached and sent.due < until  # queued behind: wait
            passed = sent.at < reached and sent.due > until  # dropped: send again soon
            if behind or passed:
                self._schedule(i, seq, sent._replace(due=until))

    def due(self, now: float) -> list[tuple[int, bytes]]:
        """(unit, payload) to send again now, each rescheduled with its next, doubled wait."""
        out = []
        while self._heap and self._heap[0][0] <= now:
            when, i, seq = heapq.heappop(self._heap)
            sent = self.pending[i].get(seq)
            if sent is None or sent.due != when:  # acknowledged, or moved since
                continue
            attempts = sent.attempts + 1
            self.timers[i].sent([], [seq], now)
            wait = backoff_s(self.timers[i].timeout_s, attempts)
            self._schedule(i, seq, Sent(now, attempts, now + wait, sent.payload))
            self.resent += 1
            out.append((i, sent.payload))
        return out

    def _schedule(self, i: int, seq: int, sent: Sent) -> None:
        self.pending[i][seq] = sent
        heapq.heappush(self._heap, (sent.due, i, seq))


# -- the units process -------------------------------------------------------------------------


MEMBERS_PER_UNIT = 1000


def _payload(plan: Plan, i: int, seq: int, ts: float) -> bytes:
    return encode(event(plan.devices[i], i, seq, ts, epoch=plan.epoch))


def event(device_id: str, i: int, seq: int, ts: float, *, epoch: str = "e" * 32) -> Event:
    """Unit ``i``'s event ``seq``: members of its own badge in and out in turn (seqs 1, 2
    are one member's visit, 3, 4 the next member's, ...), a month's worth of each."""
    return Event(
        event_id=new_event_id(),
        device_id=device_id,
        epoch=epoch,
        seq=seq,
        kind="access",
        ts=ts,
        clock_synced=True,
        door="entree",
        badge_hash="ab" * 32,
        granted=True,
        reason="granted",
        direction="in" if seq % 2 else "out",
        member_id=1 + i * MEMBERS_PER_UNIT + (seq - 1) // 2 % MEMBERS_PER_UNIT,
    )


def _main() -> None:
    plan = Plan(**json.loads(sys.stdin.readline()))
    n = len(plan.devices)
    selector = selectors.DefaultSelector()
    acked: dict[tuple[int, int], float] = {}
    resending = bool(plan.ack_topic and plan.ack_timeout_s > 0)
    resender = Resender(n, plan.ack_timeout_s)
    # Acks are read, not verified: the units process measures the server, and an Ed25519
    # check per ack would make it the bottleneck at thousands of events a second.
    envelope = msgspec.msgpack.Decoder(Envelope)
    # The units with something left to write once their socket has room.
    writing: set[Unit] = set()

    def receiver(i: int) -> Callable[[str, bytes], None]:
        def on_message(topic: str, payload: bytes) -> None:
            now = time.monotonic()
            ack = decode_body(Ack, envelope.decode(payload).body)
            for seq in ack.seqs:
                acked.setdefault((i, seq), now)
            if resending:
                resender.acked(i, ack.seqs, now)

        return on_message

    def pump(timeout: float) -> None:
        for unit in list(writing):
            if unit.write():
                writing.discard(unit)
        for key, _ in selector.select(timeout):
            key.data.read()

    context = tls_context(plan.ca_file)
    units: list[Unit] = []
    for i in range(n):
        user, password = plan.accounts[i]
        unit = Unit(context, plan.port, user, password, on_writable=writing.add)
        if plan.ack_topic:
            unit.on_message = receiver(i)
        selector.register(unit, selectors.EVENT_READ, unit)
        units.append(unit)
        if i % 50 == 49:  # let the broker keep up with the handshakes
            pump(0)
    deadline = time.monotonic() + 120
    subscribing = [False] * n
    while not all(u.subscribed if plan.ack_topic else u.connected for u in units):
        if time.monotonic() > deadline:
            ready = sum(u.subscribed if plan.ack_topic else u.connected for u in units)
            print(f"only {ready} of {n} units connected", flush=True)
            return
        for i, unit in enumerate(units):
            if plan.ack_topic and unit.connected and not subscribing[i]:
                unit.subscribe(plan.ack_topic % plan.devices[i], 1)
                subscribing[i] = True
        pump(0.005)
    topics = [topic_field(plan.topic % device) for device in plan.devices]
    print("ready", flush=True)
    sys.stdin.readline()  # "go"

    total = n * plan.per_unit
    published: list[list[float]] = [[0.0] * plan.per_unit for _ in range(n)]
    started = time.monotonic()
    sent = 0
    last_ping = started
    while sent < total or (plan.ack_topic and len(acked) < total):
        now = time.monotonic()
        due = total if plan.rate <= 0 else min(total, int((now - started) * plan.rate) + 1)
        while sent < due:  # round robin over the units: unit i sends its k-th event
            i, k = sent % n, sent // n
            published[i][k] = time.monotonic()
            payload = _payload(plan, i, plan.first_seq + k, time.time())
            units[i].publish(topics[i], payload)
            if resending:
                resender.sent(i, plan.first_seq + k, payload, now)
            sent += 1
            if plan.rate > 0 and sent % 200 == 0:
                break  # keep reading acks while a burst goes out
        for i, payload in resender.due(now):
            units[i].publish(topics[i], payload)
        pump(0.001 if plan.rate > 0 else 0.002)
        if now - last_ping > 60:  # keepalive: 120 s
            for unit in units:
                unit.ping()
            last_ping = now
        if now - started > 600:
            break
    # Everything handed to the broker (PUBACKs in) before reporting.
    flush_deadline = time.monotonic() + 30
    while any(u.busy() for u in units) and time.monotonic() < flush_deadline:
        pump(0.005)
    finished = time.monotonic()
    lags = [
        acked[(i, plan.first_seq + k)] - published[i][k]
        for i in range(n)
        for k in range(plan.per_unit)
        if (i, plan.first_seq + k) in acked
    ]
    for unit in units:
        unit.disconnect()
        unit.write()
    print(
        json.dumps(
            {
                "started": started,
                "finished": finished,
                "sent": sent,
                "acked": len(acked),
                "resent": resender.resent,
                "last_ack": max(acked.values()) if acked else None,
                "lags": lags,
                "published": published if plan.report_published else None,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    _main()
