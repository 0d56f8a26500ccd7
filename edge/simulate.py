"""A simulated centre: the real agent on MockFactory pins and a fake reader, with people.

Members arrive and leave through a compressed day (08:00-19:00 in ``day_seconds`` of real
time), badge at the door, open it, and move in the rooms; now and then a stranger's card
is tried. Only the world is simulated: decisions, outbox, MQTT are the real agent's.

Or a script plays a given story, step by step (``ScriptRunner``, ``SCRIPT_HELP``): tap a
card at a door, motion in a room, open the door, press the exit button, tamper... on the
mock pins, the fake readers and simulated MFRC522 chips, for demos and tests.
"""

from __future__ import annotations

import heapq
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from edge.agent import EdgeAgent
from edge.config import EdgeConfig
from edge.hardware.fakes import FakeCardReader
from protocol.messages import Event

log = logging.getLogger(__name__)

OPEN_H, CLOSE_H = 8.0, 19.0
CARD_HOLD_S = 0.3


@dataclass(order=True)
class _Action:
    at: float
    run: Callable[[], None] = field(compare=False)


class Scenario(threading.Thread):
    """Drives the pins and the reader of one agent, day after compressed day."""

    def __init__(
        self,
        agent: EdgeAgent,
        members: list[bytes],
        *,
        day_seconds: float = 300.0,
        attendance: float = 0.7,
        stranger_every: int = 12,
        seed: int | None = None,
    ) -> None:
        super().__init__(name="scenario", daemon=True)
        self.agent = agent
        self.members = members
        self.day_seconds = day_seconds
        self.attendance = attendance
        self.stranger_every = stranger_every
        self.rng = random.Random(seed)
        self.halt = threading.Event()
        self._queue: list[_Action] = []
        self._door = agent.config.doors[0]
        reader = agent.hardware.readers[self._door.id]
        if not isinstance(reader, FakeCardReader):
            raise ValueError('simulation needs doors[0].reader.kind = "fake"')
        self.reader = reader
        self._factory = agent.hardware.pin_factory
        self._badges = 0
        if self._door.contact_pin is not None:
            self._factory.pin(self._door.contact_pin).drive_low()  # door shut

    def stop(self) -> None:
        self.halt.set()

    def _at_hour(self, day_start: float, hour: float) -> float:
        return day_start + (hour - OPEN_H) / (CLOSE_H - OPEN_H) * self.day_seconds

    def _plan_day(self, day_start: float) -> None:
        for uid in self.members:
            if self.rng.random() > self.attendance:
                continue
            arrive = self.rng.uniform(OPEN_H, 11.5)
            leave = self.rng.uniform(max(arrive + 1, 14.0), CLOSE_H - 0.1)
            self._push(self._at_hour(day_start, arrive), lambda u=uid: self._badge(u))
            self._push(self._at_hour(day_start, leave), lambda u=uid: self._badge(u))
            for room in self.agent.config.rooms:
                if self.rng.random() < 0.5:
                    start = self.rng.uniform(arrive, leave - 0.5)
                    stop = min(start + self.rng.uniform(0.5, 2.5), leave)
                    self._push(
                        self._at_hour(day_start, start),
                        lambda r=room.motion_pin: self._motion(r, True),
                    )
                    self._push(
                        self._at_hour(day_start, stop),
                        lambda r=room.motion_pin: self._motion(r, False),
                    )
        self._push(day_start + self.day_seconds, lambda: self._plan_day(time.monotonic()))

    def _push(self, at: float, run: Callable[[], None]) -> None:
        heapq.heappush(self._queue, _Action(at, run))

    def run(self) -> None:
        self._plan_day(time.monotonic())
        while not self.halt.is_set() and self._queue:
            action = self._queue[0]
            delay = action.at - time.monotonic()
            if delay > 0:
                self.halt.wait(min(delay, 1.0))
                continue
            heapq.heappop(self._queue)
            try:
                action.run()
            except Exception:
                log.exception("scenario step failed")

    # -- acting out the world -------------------------------------------------------------------

    def _badge(self, uid: bytes) -> None:
        self._badges += 1
        if self.stranger_every and self._badges % self.stranger_every == 0:
            self._present(bytes(self.rng.randrange(256) for _ in range(4)))
        self._present(uid)

    def _present(self, uid: bytes) -> None:
        lock = self.agent.hardware.locks[self._door.id]
        self.reader.present(uid)
        self.halt.wait(CARD_HOLD_S)
        self.reader.remove()
        deadline = time.monotonic() + 2
        while not lock.is_unlocked and time.monotonic() < deadline and not self.halt.is_set():
            self.halt.wait(0.05)
        if lock.is_unlocked and self._door.contact_pin is not None:
            pin = self._factory.pin(self._door.contact_pin)
            pin.drive_high()  # door opens
            self.halt.wait(1.0)
            pin.drive_low()
        # the repeat-card debounce must pass before the same card can count again
        self.halt.wait(self._door.reader.repeat_ms / 1000)

    def _motion(self, pin: int, active: bool) -> None:
        mock = self._factory.pin(pin)
        if active:
            mock.drive_high()
        else:
            mock.drive_low()


# -- scripted simulation -------------------------------------------------------------------------

SCRIPT_HELP = """\
One step a line; '#' starts a comment. DOOR and ROOM are ids from the unit's config, UID
a card's UID in hex (04a1b2c3 or 04:A1:B2:C3).
  tap DOOR UID          present a card at the door's reader, until the unit decides
  tap-out DOOR UID      the same at the door's exit reader (its cards go out)
  exit DOOR             press and release the door's request-to-exit button
  open DOOR             the door opens (its contact)
  close DOOR            the door closes
  motion ROOM [on|off]  motion in the room (no argument: a pulse, on then off)
  tamper [DOOR]         the tamper switch of the door's reader (none: the unit's) opens
  tamper-clear [DOOR]   ... and closes again
  reader-fault DOOR     the door's reader stops answering
  reader-ok DOOR        ... and answers again
  wait SECONDS          let time pass (hold times, relock, the server's answers)"""

# verb -> (argument names, how many are optional at the end)
_VERBS: dict[str, tuple[tuple[str, ...], int]] = {
    "tap": (("door", "uid"), 0),
    "tap-out": (("door", "uid"), 0),
    "exit": (("door",), 0),
    "open": (("door",), 0),
    "close": (("door",), 0),
    "motion": (("room", "state"), 1),
    "tamper": (("door",), 1),
    "tamper-clear": (("door",), 1),
    "reader-fault": (("door",), 0),
    "reader-ok": (("door",), 0),
    "wait": (("seconds",), 0),
}
# How long a step waits for the unit to decide a card it was shown (or see a motion).
DECISION_WAIT_S = 5.0
# The fields of an event a script prints.
_TOLD = ("door", "granted", "reason", "direction", "member_id", "room", "room_state")


class ScriptError(ValueError):
    """A script line the simulation cannot run; the message names the line."""


@dataclass(frozen=True)
class Step:
    line: int
    verb: str
    args: tuple[str, ...]

    def __str__(self) -> str:
        return " ".join((self.verb, *self.args))


def parse_script(
    text: str, config: EdgeConfig, *, label: str = "line", first_line: int = 1
) -> list[Step]:
    """Check every line against the unit's config before anything runs; errors name the
    line (``label`` and its number, counted from ``first_line``)."""
    from protocol.badges import parse_uid

    doors = {d.id: d for d in config.doors}
    rooms = {r.id for r in config.rooms}
    steps = []
    for number, raw in enumerate(text.splitlines(), first_line):
        words = raw.split("#", 1)[0].split()
        if not words:
            continue
        verb, args = words[0].lower(), tuple(words[1:])

        def fail(message: str, line: int = number, text: str = raw.strip()) -> ScriptError:
            return ScriptError(f"{label} {line}: {message} in {text!r}")

        if verb not in _VERBS:
            raise fail(f"unknown step {verb!r} (steps: {', '.join(_VERBS)})")
        names, optional = _VERBS[verb]
        if not len(names) - optional <= len(args) <= len(names):
            raise fail(f"{verb} takes {' '.join(n.upper() for n in names)}")
        for name, value in zip(names, args, strict=False):
            if name == "door" and value not in doors:
                raise fail(f"no door {value!r} (doors: {', '.join(doors)})")
            if name == "room" and value not in rooms:
                raise fail(f"no room {value!r} (rooms: {', '.join(sorted(rooms)) or 'none'})")
            if name == "state" and value not in ("on", "off"):
                raise fail(f"motion is 'on' or 'off', not {value!r}")
            if name == "seconds":
                try:
                    seconds = float(value)
                except ValueError:
                    seconds = -1.0
                if not 0 <= seconds <= 86_400:
                    raise fail(f"wait takes seconds from 0 to 86400, not {value!r}")
            if name == "uid":
                try:
                    parse_uid(value)
                except ValueError as exc:
                    raise fail(f"bad UID {value!r}: {exc}") from None
        door = doors.get(args[0]) if args else None
        needs = {
            "tap-out": ("exit_reader", "exit reader"),
            "exit": ("exit_button_pin", "exit button"),
            "open": ("contact_pin", "door contact"),
            "close": ("contact_pin", "door contact"),
        }
        if door is not None and verb in needs and getattr(door, needs[verb][0]) is None:
            raise fail(f"door {door.id!r} has no {needs[verb][1]}")
        if verb.startswith("tamper"):
            pin = door.tamper_pin if door is not None else config.tamper_pin
            if pin is None:
                where = f"door {door.id!r}" if door is not None else "the unit"
                raise fail(f"{where} has no tamper switch (tamper_pin)")
        steps.append(Step(number, verb, args))
    return steps


class _Field:
    """The field of one reader: a fake reader's, or a simulated MFRC522 chip's."""

    def __init__(self, reader: Any, chip: Any = None) -> None:
        self.reader = reader
        self.chip = chip

    def present(self, uid: bytes) -> None:
        if self.chip is not None:
            self.chip.present_card(uid)
        else:
            self.reader.present(uid)

    def remove(self) -> None:
        if self.chip is not None:
            self.chip.remove_card()
        else:
            self.reader.remove()

    def fail(self, failing: bool) -> None:
        if self.chip is not None:
            self.chip.responsive = not failing
        else:
            self.reader.failing = failing


class ScriptRunner:
    """Acts a script out on the agent's mock pins and readers, and reports what it did.

    Build it before ``agent.start()``: it shuts the doors and the tamper switches first,
    as they are on a unit at rest. ``chips`` are the simulated MFRC522 chips of readers of
    kind ``mfrc522``, by (SPI bus, device); ``out`` gets one line per step and per event.
    """

    def __init__(
        self,
        agent: EdgeAgent,
        steps: list[Step],
        *,
        chips: dict[tuple[int, int], Any] | None = None,
        out: Callable[[str], None] = print,
    ) -> None:
        self.agent = agent
        self.steps = steps
        self.out = out
        self.events: list[Event] = []
        self._seen = threading.Condition()
        self._factory = agent.hardware.pin_factory
        self._doors = {d.id: d for d in agent.config.doors}
        self._fields: dict[tuple[str, str], _Field] = {}
        self._last_tap: dict[tuple[str, str], tuple[bytes, float]] = {}
        chips = chips or {}
        for door in agent.config.doors:
            hw = agent.hardware
            for way, reader in door.readers.items():
                device = hw.exit_readers[door.id] if way == "exit" else hw.readers[door.id]
                chip = chips.get((reader.spi_bus, reader.spi_device))
                if reader.kind == "mfrc522" and chip is None:
                    raise ValueError(f"door {door.id}: no simulated chip for its {way} reader")
                self._fields[door.id, way] = _Field(device, chip if reader.kind != "fake" else None)
            for pin in (door.contact_pin, door.tamper_pin):
                if pin is not None:
                    self._factory.pin(pin).drive_low()  # shut, intact
        if agent.config.tamper_pin is not None:
            self._factory.pin(agent.config.tamper_pin).drive_low()
        agent.observers.append(self._on_event)

    def _on_event(self, event: Event) -> None:
        told = " ".join(
            f"{k}={str(v).lower() if isinstance(v, bool) else v}"
            for k, v in msgspec.structs.asdict(event).items()
            if v is not None and k in _TOLD
        )
        self.out(f"event #{event.seq} {event.kind} {told}".rstrip())
        with self._seen:
            self.events.append(event)
            self._seen.notify_all()

    def run(self, halt: threading.Event | None = None) -> None:
        halt = halt or threading.Event()
        for step in self.steps:
            if halt.is_set():
                return
            self.out(f"> {step}")
            getattr(self, "_" + step.verb.replace("-", "_"))(halt, *step.args)

    def drain(self, timeout: float) -> int:
        """Wait up to ``timeout`` s for the server to acknowledge every event; how many are
        still pending."""
        deadline = time.monotonic() + timeout
        pause = threading.Event()
        while (pending := self.agent.outbox.pending_count()) and time.monotonic() < deadline:
            pause.wait(0.05)
        return pending

    # -- the steps --------------------------------------------------------------------------------

    def _tap(self, halt: threading.Event, door: str, uid: str, way: str = "entry") -> None:
        from protocol.badges import parse_uid

        card = parse_uid(uid)
        reader = self._doors[door].readers[way]
        last = self._last_tap.get((door, way))
        if last is not None and last[0] == card:  # the reader's repeat-card debounce
            halt.wait(max(0.0, last[1] + reader.repeat_ms / 1000 - time.monotonic()))
        field = self._fields[door, way]
        with self._seen:
            before = len(self.events)
        field.present(card)
        try:
            with self._seen:
                decided = self._seen.wait_for(
                    lambda: any(
                        e.kind == "access" and e.door == door for e in self.events[before:]
                    ),
                    DECISION_WAIT_S,
                )
        finally:
            field.remove()
            self._last_tap[door, way] = (card, time.monotonic())
        if not decided:
            self.out(f"! no decision at door {door} within {DECISION_WAIT_S:g} s")

    def _tap_out(self, halt: threading.Event, door: str, uid: str) -> None:
        self._tap(halt, door, uid, "exit")

    def _exit(self, halt: threading.Event, door: str) -> None:
        pin = self._factory.pin(self._doors[door].exit_button_pin)
        pin.drive_low()  # pressed (to ground)
        pin.drive_high()

    def _open(self, halt: threading.Event, door: str) -> None:
        self._factory.pin(self._doors[door].contact_pin).drive_high()

    def _close(self, halt: threading.Event, door: str) -> None:
        self._factory.pin(self._doors[door].contact_pin).drive_low()

    def _motion(self, halt: threading.Event, room: str, state: str | None = None) -> None:
        (config,) = [r for r in self.agent.config.rooms if r.id == room]
        pin = self._factory.pin(config.motion_pin)
        if state in (None, "on"):
            pin.drive_high()
            if state is None:  # the sensor samples in its own thread: let it see the motion
                self._until(halt, lambda: self.agent.rooms[room].state == "occupied")
        if state in (None, "off"):
            pin.drive_low()

    def _until(self, halt: threading.Event, done: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + DECISION_WAIT_S
        while not done():
            if halt.is_set() or time.monotonic() > deadline:
                return False
            halt.wait(0.01)
        return True

    def _tamper_pin(self, door: str | None) -> Any:
        pin = self._doors[door].tamper_pin if door else self.agent.config.tamper_pin
        return self._factory.pin(pin)

    def _tamper(self, halt: threading.Event, door: str | None = None) -> None:
        self._tamper_pin(door).drive_high()  # the switch opens

    def _tamper_clear(self, halt: threading.Event, door: str | None = None) -> None:
        self._tamper_pin(door).drive_low()

    def _reader_fault(self, halt: threading.Event, door: str) -> None:
        self._fields[door, "entry"].fail(True)

    def _reader_ok(self, halt: threading.Event, door: str) -> None:
        self._fields[door, "entry"].fail(False)

    def _wait(self, halt: threading.Event, seconds: str) -> None:
        halt.wait(float(seconds))
