"""A test unit wired with everything a door can have: exit button, tamper switches, an exit
reader, lights and a buzzer, on MockFactory pins (PWM-capable, for a tonal buzzer).

``Wired(tmp_path, key_file, signer, fake_time).make()`` builds an agent (not started) like
``make_agent`` does: its link never connects, its publishes are recorded, and the same
``data`` name again is a restart on the same outbox.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpiozero.pins.mock import MockFactory, MockPWMPin

from edge import config as edge_config
from edge.agent import EdgeAgent
from edge.hardware.build import build
from protocol.badges import badge_hash
from protocol.messages import ListEntry
from protocol.signing import Signer
from tests.edge.support import CONTACT_PIN, FakeTime, Published, unit_toml

EXIT_PIN = 5
TAMPER_PIN = 6
UNIT_TAMPER_PIN = 13
GREEN_PIN = 23
RED_PIN = 24
BUZZER_PIN = 12

ALICE = bytes.fromhex("04a1b2c3")  # listed
BOB = bytes.fromhex("04b0b0b0")  # listed, lockdown-exempt
STRANGER = bytes.fromhex("0badcafe")  # not listed


def wire(toml: str, *, buzzer: str = "active", exit_reader: bool = True) -> str:
    """The test unit's TOML with every input and output fitted."""
    door = f"exit_button_pin = {EXIT_PIN}\ntamper_pin = {TAMPER_PIN}\n"
    assert 'direction = "toggle"\n' in toml
    toml = toml.replace('direction = "toggle"\n', door)  # "in" with an exit reader
    tables = f"""
[doors.feedback]
green_pin = {GREEN_PIN}
red_pin = {RED_PIN}
buzzer_pin = {BUZZER_PIN}
buzzer = "{buzzer}"
"""
    if exit_reader:
        tables += '\n[doors.exit_reader]\nkind = "fake"\npoll_interval_ms = 10\nrepeat_ms = 200\n'
    assert "\n[[rooms]]" in toml
    toml = toml.replace("\n[[rooms]]", tables + "\n[[rooms]]", 1)
    return toml.replace(
        'pin_factory = "mock"\n', f'pin_factory = "mock"\ntamper_pin = {UNIT_TAMPER_PIN}\n'
    )


class Wired:
    def __init__(self, tmp_path: Path, key_file: Path, signer: Signer, fake_time: FakeTime):
        self.tmp_path = tmp_path
        self.key_file = key_file
        self.signer = signer
        self.fake_time = fake_time
        self.agents: list[EdgeAgent] = []

    def make(
        self,
        *,
        data: str = "unit",
        buzzer: str = "active",
        exit_reader: bool = True,
        tampered: bool = False,
        **toml: Any,
    ) -> EdgeAgent:
        conf = self.tmp_path / f"{data}-{len(self.agents)}.toml"
        text = unit_toml(
            key_file=self.key_file,
            data_dir=self.tmp_path / data,
            server_keys=(self.signer.public_hex,),
            **toml,
        )
        conf.write_text(wire(text, buzzer=buzzer, exit_reader=exit_reader))
        cfg = edge_config.load(conf)
        factory = MockFactory(pin_class=MockPWMPin)
        hardware = build(cfg, pin_factory=factory)
        # Pulled up at set-up: shut the door and the tamper switches, as at rest.
        for pin in (CONTACT_PIN, TAMPER_PIN, UNIT_TAMPER_PIN):
            factory.pin(pin).drive_low()
        if tampered:
            factory.pin(UNIT_TAMPER_PIN).drive_high()
        agent = EdgeAgent(
            cfg,
            hardware,
            clock=self.fake_time.time,
            synced=self.fake_time.synced,
            monotonic=self.fake_time.monotonic,
        )
        agent.feedback.scale = 0.001  # patterns play a thousand times faster
        published = Published()
        agent.link.publish = published  # type: ignore[method-assign]
        agent.published = published  # type: ignore[attr-defined]
        self.agents.append(agent)
        return agent

    def close(self) -> None:
        for agent in self.agents:
            agent.stop()


def install_list(agent: EdgeAgent, key: bytes, *, version: int = 1) -> None:
    """Alice and Bob (lockdown-exempt) in the unit's list, no plans."""
    entries = [
        ListEntry(bytes.fromhex(badge_hash(key, ALICE)), 11),
        ListEntry(bytes.fromhex(badge_hash(key, BOB)), 12, exempt=True),
    ]
    agent.access.install(version, {e.badge: e for e in entries})


def pin_levels(agent: EdgeAgent, pin: int) -> list[bool]:
    """Whether the pin was high, at each change since it was set up (repeats merged)."""
    levels: list[bool] = []
    for state in agent.hardware.pin_factory.pin(pin).states:
        level = bool(state.state)
        if not levels or levels[-1] != level:
            levels.append(level)
    return levels
