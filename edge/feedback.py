"""What a door's lights and buzzer say: one pattern per outcome, played off the badge path.

A member refused at the door learns why without a screen: a granted card, a card the unit
does not know, a rule (no credit left, outside the hours) and a refused badge (revoked,
suspended, expired...) each look and sound different. Between cards, the lights show the
unit's state: locked down, a reader fault, or the link to the server down.

Patterns are data: ``Track(output, on_s, off_s, n, tone, start_s)`` switches one output
(``green``, ``red`` or ``buzzer``) on for ``on_s`` and off for ``off_s``, ``n`` times,
from ``start_s``; ``tone`` is the buzzer's frequency in Hz (an active buzzer only hears
on/off). One-shot patterns (``PATTERNS``) play once, the newest cutting the current one
short; state patterns (``STATE_PATTERNS``) loop while their state holds, the first of
``STATE_PRIORITY`` that holds winning, and give way to any one-shot pattern.

One worker plays every door's outputs: ``play`` and ``set_state`` only take a lock and
wake it, so the badge path never waits for a light. Every step of a pattern is applied in
order even when the worker runs late, so what the pins did is exactly the pattern.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from edge.hardware import Signal
from protocol.workers import Worker

GREEN, RED, BUZZER = "green", "red", "buzzer"
# Tones within a TonalBuzzer's default range (A3 to A5).
HIGH, MID, LOW, LOWEST = 880.0, 659.0, 330.0, 220.0


@dataclass(frozen=True)
class Track:
    """One output switched on ``n`` times for ``on_s``, off ``off_s`` in between."""

    output: str
    on_s: float
    off_s: float
    n: int
    tone: float = 1.0
    start_s: float = 0.0


@dataclass(frozen=True)
class Pattern:
    """Tracks played together; a looping pattern starts again every ``period_s``."""

    tracks: tuple[Track, ...]
    period_s: float | None = None

    @property
    def duration_s(self) -> float:
        ends = [t.start_s + t.n * (t.on_s + t.off_s) for t in self.tracks]
        return max([self.period_s or 0.0, *ends])

    def steps(self) -> list[tuple[float, str, float]]:
        """(time from the start, output, value) in order; at one instant offs come first,
        so a tone that follows another on the same output is not cut by its end."""
        steps = []
        for t in self.tracks:
            for i in range(t.n):
                at = t.start_s + i * (t.on_s + t.off_s)
                steps += [(at, t.output, t.tone), (at + t.on_s, t.output, 0.0)]
        return sorted(steps, key=lambda s: (s[0], s[2] != 0.0))


PATTERNS: dict[str, Pattern] = {
    # Come in: green, one short high beep.
    "granted": Pattern((Track(GREEN, 1.5, 0, 1), Track(BUZZER, 0.1, 0, 1, HIGH))),
    # Opened from inside by the exit button: green, silent.
    "exit": Pattern((Track(GREEN, 1.0, 0, 1),)),
    # A refused badge (revoked, suspended, expired, another centre, plan over...): red, one
    # long low tone.
    "denied": Pattern((Track(RED, 1.5, 0, 1), Track(BUZZER, 0.6, 0, 1, LOWEST))),
    # No day credit left: red twice, two low beeps.
    "no_credit": Pattern((Track(RED, 0.4, 0.2, 2), Track(BUZZER, 0.3, 0.3, 2, LOW))),
    # Outside the hours, or the centre closed today: red three times, a falling two-tone.
    "closed": Pattern(
        (
            Track(RED, 0.2, 0.2, 3),
            Track(BUZZER, 0.25, 0, 1, MID),
            Track(BUZZER, 0.25, 0, 1, LOW, start_s=0.25),
        )
    ),
    # A card the unit does not know (or the server did not answer for): red flicker,
    # three quick high beeps.
    "unknown_card": Pattern((Track(RED, 0.1, 0.1, 4), Track(BUZZER, 0.08, 0.08, 3, HIGH))),
    # Refused because the unit is locked down: red flicker, one long lowest tone.
    "lockdown_denied": Pattern((Track(RED, 0.1, 0.1, 6), Track(BUZZER, 1.2, 0, 1, LOWEST))),
}

STATE_PATTERNS: dict[str, Pattern] = {
    # Locked down: red blinking slowly, on and off alike.
    "lockdown": Pattern((Track(RED, 0.5, 0.5, 1),)),
    # A reader does not answer: both lights flash twice together, every 2 s.
    "reader_fault": Pattern((Track(RED, 0.1, 0.2, 2), Track(GREEN, 0.1, 0.2, 2)), 2.0),
    # The server is out of reach (cards still work): a brief red flash every 3 s.
    "offline": Pattern((Track(RED, 0.05, 0, 1),), 3.0),
}
STATE_PRIORITY = ("lockdown", "reader_fault", "offline")

# Refusals that have a pattern of their own; any other refusal is "denied".
REASON_PATTERNS = {
    "no_credit": "no_credit",
    "outside_hours": "closed",
    "centre_closed": "closed",
    "unknown_card": "unknown_card",
    "server_timeout": "unknown_card",
    "lockdown": "lockdown_denied",
}


def for_access(granted: bool, reason: str) -> str:
    """The pattern that tells a member at the door how their card was decided."""
    return "granted" if granted else REASON_PATTERNS.get(reason, "denied")


class _Playing:
    def __init__(self, name: str, pattern: Pattern, start: float) -> None:
        self.name = name
        self.pattern = pattern
        self.steps = pattern.steps()
        self.start = start
        self.index = 0


class _Door:
    """One door's outputs, its pattern under way, and the states that hold there."""

    def __init__(self, outputs: dict[str, Signal]) -> None:
        self.outputs = outputs
        self.levels = dict.fromkeys(outputs, 0.0)
        self.states: set[str] = set()
        self.once: _Playing | None = None
        self.loop: _Playing | None = None

    def set(self, output: str, value: float) -> None:
        if output in self.outputs and self.levels[output] != value:
            self.outputs[output].set(value)
            self.levels[output] = value

    def dark(self) -> None:
        for output in self.outputs:
            self.set(output, 0.0)

    def wanted_state(self) -> str | None:
        return next((s for s in STATE_PRIORITY if s in self.states), None)


class Feedback(Worker):
    """Plays patterns on the lights and buzzers of every door that has some.

    ``scale`` multiplies every duration (tests play patterns faster); ``finished`` keeps
    the last one-shot patterns played to their end, as (door, pattern).
    """

    def __init__(
        self,
        signals: dict[str, dict[str, Signal]],
        *,
        scale: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__("feedback", self._step)
        self.scale = scale
        self._monotonic = monotonic
        self._doors = {door: _Door(outputs) for door, outputs in signals.items() if outputs}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self.finished: deque[tuple[str, str]] = deque(maxlen=100)

    @property
    def fitted(self) -> bool:
        """Whether any door has a light or a buzzer."""
        return bool(self._doors)

    def play(self, door: str, name: str) -> None:
        """Start one-shot pattern ``name`` at ``door`` now (cutting short what plays)."""
        pattern = PATTERNS[name]
        with self._lock:
            d = self._doors.get(door)
            if d is None:
                return
            d.dark()
            d.loop = None
            d.once = _Playing(name, pattern, self._monotonic())
        self._wake.set()

    def set_state(self, name: str, on: bool, doors: Iterable[str] | None = None) -> None:
        """State ``name`` holds (or no longer) at ``doors`` (None: every door)."""
        if name not in STATE_PATTERNS:
            raise KeyError(name)
        with self._lock:
            for door_id, d in self._doors.items():
                if doors is not None and door_id not in doors:
                    continue
                if on:
                    d.states.add(name)
                else:
                    d.states.discard(name)
                if d.loop is not None and d.loop.name != d.wanted_state():
                    d.dark()
                    d.loop = None
        self._wake.set()

    def states(self, door: str) -> set[str]:
        with self._lock:
            d = self._doors.get(door)
            return set(d.states) if d is not None else set()

    def stop(self, timeout: float = 5.0) -> None:
        self.stopping.set()
        self._wake.set()
        super().stop(timeout)

    def close(self) -> None:
        """Stop playing and leave every output off."""
        self.stop(timeout=2)
        with self._lock:
            for d in self._doors.values():
                d.once = d.loop = None
                d.dark()

    # -- the worker ----------------------------------------------------------------------------

    def _step(self) -> None:
        with self._lock:
            now = self._monotonic()
            due = [t for d in self._doors.values() if (t := self._advance(d, now)) is not None]
        self._wake.wait(min(max(min(due) - self._monotonic(), 0.0), 1.0) if due else 1.0)
        self._wake.clear()

    def _advance(self, d: _Door, now: float) -> float | None:
        """Apply every step of ``d`` that is due; the time of its next step, if any."""
        while True:
            playing = d.once or d.loop
            if playing is None:
                state = d.wanted_state()
                if state is None:
                    return None
                d.loop = playing = _Playing(state, STATE_PATTERNS[state], now)
            if playing.index == len(playing.steps):
                end = playing.start + playing.pattern.duration_s * self.scale
                if end > now:
                    return end
                d.dark()
                if playing is d.once:
                    self.finished.append((self._door_id(d), playing.name))
                    d.once = None
                else:  # again, in step with the period
                    playing.start, playing.index = max(end, now - self.scale), 0
                continue
            at, output, value = playing.steps[playing.index]
            when = playing.start + at * self.scale
            if when > now:
                return when
            d.set(output, value)
            playing.index += 1

    def _door_id(self, d: _Door) -> str:
        return next(door for door, other in self._doors.items() if other is d)
