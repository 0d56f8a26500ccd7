"""``telecentre-edge relock``: every door's strike relay driven to its locked level, now.

systemd runs it after the agent stops, whatever stopped it (``ExecStopPost=`` in
``systemd/telecentre-edge.service``): the kernel keeps a released GPIO output at the last
level driven, so an agent killed by SIGKILL, the OOM killer, the watchdog or a crash while
a door was open would leave its strike energised until a new agent started.

Each relay pin is driven through the pin layer of the unit's gpiozero factory, not through
a gpiozero device (closing a device turns its pin back into a floating input): high on an
active-low board (``relay_active_high = false``), low on an active-high one. The level is
read back, and the line is left driven when the command exits. The config is read as far
as it can be: a file edited while the agent ran, that no longer passes every check, still
names its relays, and they are relocked.
"""

from __future__ import annotations

import logging
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge import config as edge_config
from edge.hardware import HardwareError
from protocol.errors import TelecentreError

log = logging.getLogger(__name__)

FACTORIES = ("default", "lgpio", "rpigpio", "mock")


@dataclass(frozen=True)
class Relay:
    door: str
    pin: int
    active_high: bool

    @property
    def locked_level(self) -> int:
        """The pin level that leaves the relay de-energised (the strike locked)."""
        return 0 if self.active_high else 1


class RelockError(TelecentreError, ValueError):
    """Not even the relays' pins can be read from the config file."""


def relays_of(path: Path) -> tuple[str, list[Relay], str | None]:
    """(pin factory name, relays, what was wrong with the file or None)."""
    try:
        cfg = edge_config.load(path)
    except edge_config.ConfigError as exc:
        problem = str(exc)
    else:
        relays = [Relay(d.id, d.relay_pin, d.relay_active_high) for d in cfg.doors]
        return cfg.pin_factory, relays, None
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise RelockError(f"{path}: cannot read the relays' pins ({exc})") from None
    factory = data.get("pin_factory", "default")
    relays = []
    doors = data.get("doors", [])
    for i, door in enumerate(doors if isinstance(doors, list) else []):
        if not isinstance(door, dict):
            continue
        pin = door.get("relay_pin")
        active_high = door.get("relay_active_high", False)
        if isinstance(pin, int) and not isinstance(pin, bool) and 0 <= pin <= 53:
            name = door.get("id") if isinstance(door.get("id"), str) else f"doors[{i}]"
            relays.append(Relay(name, pin, active_high is True))
    if not relays:
        raise RelockError(f"{problem}; and no door names a relay_pin")
    return (factory if factory in FACTORIES else "default"), relays, problem


def drive_locked(factory: Any, relay: Relay) -> str:
    """Drive one relay pin to its locked level and read it back; returns what was done."""
    level = relay.locked_level
    try:
        pin = factory.pin(relay.pin)
        pin.output_with_state(bool(level))
        seen = int(bool(pin.state))
    except Exception as exc:
        raise HardwareError(f"door {relay.door}: relay on GPIO {relay.pin}: {exc}") from exc
    if seen != level:
        raise HardwareError(
            f"door {relay.door}: relay on GPIO {relay.pin} reads {seen} after driving {level}"
        )
    board = "active-high" if relay.active_high else "active-low"
    return (
        f"door {relay.door}: relay on GPIO {relay.pin} driven {'high' if level else 'low'} "
        f"(locked, {board} board)"
    )


def run(path: Path) -> int:
    """The command: 0 when every relay reads back locked, 1 when one does not, 2 when the
    config names no relay, 3 when the GPIO chip cannot be opened."""
    from edge.hardware.gpio import make_pin_factory

    try:
        factory_name, relays, problem = relays_of(path)
    except RelockError as exc:
        print(f"telecentre-edge relock: {exc}", file=sys.stderr)
        return 2
    if problem is not None:
        print(
            f"telecentre-edge relock: {problem}; relocking the relays the file names",
            file=sys.stderr,
        )
    try:
        factory = make_pin_factory(factory_name)
    except HardwareError as exc:
        print(f"telecentre-edge relock: {exc}", file=sys.stderr)
        return 3
    failed = 0
    for relay in relays:
        try:
            print(drive_locked(factory, relay), flush=True)
        except HardwareError as exc:
            failed += 1
            print(f"telecentre-edge relock: {exc}", file=sys.stderr)
    # The factory is not closed: closing it would make the relay pins floating inputs.
    return 1 if failed else 0
