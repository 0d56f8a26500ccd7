"""The pilot centres' unit configs load, and their pins are the wiring table's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge import config as edge_config
from tests.deploy.support import CENTRES, FIRMWARE

WIRING = (FIRMWARE / "WIRING.md").read_text()
PIN_KEY = re.compile(r"^#?\s*(\w+_pin)\s*=\s*(\d+)", re.MULTILINE)


def wiring_table() -> dict[str, int]:
    """``relay_pin`` -> 17, ``doors[1].relay_pin`` -> 26, ... from the config key column."""
    table: dict[str, int] = {}
    for row in WIRING.splitlines():
        cells = [c.strip() for c in row.strip("|").split("|")]
        if len(cells) != 5:
            continue
        match = re.fullmatch(r"`([\w\[\]*.]+_pin) = (\d+)`", cells[4])
        gpio = re.match(r"GPIO(\d+)", cells[2])
        if match and gpio:
            assert int(match.group(2)) == int(gpio.group(1)), row
            table[match.group(1)] = int(match.group(2))
    return table


def test_the_three_pilot_centres_have_a_config_each() -> None:
    assert [p.name for p in CENTRES] == ["belleme-01.toml", "boitron-01.toml", "camembert-01.toml"]


@pytest.mark.parametrize("path", CENTRES, ids=lambda p: p.stem)
def test_each_pilot_config_loads_with_the_agents_loader(path: Path) -> None:
    cfg = edge_config.load(path)
    assert cfg.device_id == path.stem
    assert cfg.device_id.startswith(cfg.centre + "-")
    assert cfg.mqtt.username == cfg.device_id and cfg.mqtt.tls
    assert cfg.pin_factory == "default"
    assert all(d.reader.kind == "mfrc522" for d in cfg.doors)
    assert str(cfg.data_dir) == "/var/lib/telecentre"


@pytest.mark.parametrize("path", [*CENTRES, FIRMWARE / "unit.example.toml"], ids=lambda p: p.stem)
def test_every_pin_of_a_config_is_where_the_wiring_table_says(path: Path) -> None:
    """Keys written out and keys commented out alike (inputs and feedback wait for the
    agents that read them, on the same pins)."""
    table = wiring_table()
    edge_config.load(path)
    tables = {"doors": -1, "rooms": -1}
    for line in path.read_text().splitlines():
        for name in tables:
            if line.startswith(f"[[{name}]]"):
                tables[name] += 1
        match = PIN_KEY.match(line)
        if match is None:
            continue
        key, pin = match.group(1), int(match.group(2))
        door, room = tables["doors"], tables["rooms"]
        if key == "motion_pin":
            candidates = [f"rooms[{room}].motion_pin"]
        elif key in ("green_pin", "red_pin", "buzzer_pin"):
            candidates = [f"doors[{door}].feedback.{key}"]
        elif key == "reset_pin":
            candidates = ["doors[*].reader.reset_pin"]
        elif door >= 0:
            candidates = [f"doors[{door}].{key}"]
        else:
            candidates = [key]
        found = [table[c] for c in candidates if c in table]
        assert found == [pin], f"{path.name}: {line.strip()!r} is not what WIRING.md says"


def test_the_active_high_board_is_in_a_pilot_config() -> None:
    boards = {
        (cfg.device_id, d.id): d.relay_active_high
        for cfg in map(edge_config.load, CENTRES)
        for d in cfg.doors
    }
    assert boards[("belleme-01", "salle-reunion")] is True
    assert boards[("boitron-01", "entree")] is False
