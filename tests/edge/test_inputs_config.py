"""The unit's TOML for inputs and feedback: exit button, tamper switches, exit reader,
lights and buzzer; a wrong one is refused with a message naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import ConfigError, FeedbackConfig, load
from tests.edge.support import unit_toml
from tests.edge.wired import (
    BUZZER_PIN,
    EXIT_PIN,
    GREEN_PIN,
    RED_PIN,
    TAMPER_PIN,
    UNIT_TAMPER_PIN,
    wire,
)


def wired_toml(tmp_path: Path, **kw: object) -> str:
    return wire(
        unit_toml(key_file=tmp_path / "k", data_dir=tmp_path / "d", server_keys=("ab" * 32,)),
        **kw,  # type: ignore[arg-type]
    )


def load_text(tmp_path: Path, text: str) -> object:
    path = tmp_path / "unit.toml"
    path.write_text(text)
    return load(path)


def error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_text(tmp_path, text)
    return str(info.value).split(": ", 1)[1]  # without the file name


def test_every_input_and_output_loads(tmp_path: Path) -> None:
    cfg = load_text(tmp_path, wired_toml(tmp_path, buzzer="tonal"))
    (door,) = cfg.doors  # type: ignore[attr-defined]
    assert cfg.tamper_pin == UNIT_TAMPER_PIN  # type: ignore[attr-defined]
    assert (door.exit_button_pin, door.tamper_pin) == (EXIT_PIN, TAMPER_PIN)
    assert door.direction == "in"  # with an exit reader, the door's reader reads the way in
    assert door.exit_reader is not None and door.exit_reader.kind == "fake"
    assert list(door.readers) == ["entry", "exit"]
    assert door.feedback == FeedbackConfig(GREEN_PIN, RED_PIN, BUZZER_PIN, "tonal")
    assert door.feedback.pins == {"green": GREEN_PIN, "red": RED_PIN, "buzzer": BUZZER_PIN}


def test_everything_is_optional(tmp_path: Path) -> None:
    cfg = load_text(
        tmp_path,
        unit_toml(key_file=tmp_path / "k", data_dir=tmp_path / "d", server_keys=("ab" * 32,)),
    )
    (door,) = cfg.doors  # type: ignore[attr-defined]
    assert (door.exit_button_pin, door.tamper_pin, door.exit_reader) == (None, None, None)
    assert door.feedback.pins == {} and cfg.tamper_pin is None  # type: ignore[attr-defined]
    assert door.direction == "toggle"


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            f"red_pin = {RED_PIN}",
            "red_pin = 17",
            "doors[entree].feedback.red_pin: GPIO 17 is already used by doors[entree].relay_pin",
        ),
        (
            f"exit_button_pin = {EXIT_PIN}",
            "exit_button_pin = 22",
            "rooms[visio].motion_pin: GPIO 22 is already used by doors[entree].exit_button_pin",
        ),
        (
            f"tamper_pin = {UNIT_TAMPER_PIN}",
            f"tamper_pin = {TAMPER_PIN}",
            f"doors[entree].tamper_pin: GPIO {TAMPER_PIN} is already used by tamper_pin",
        ),
        ('buzzer = "active"', 'buzzer = "loud"', "doors[0].feedback.buzzer: expected one of"),
        (f"green_pin = {GREEN_PIN}", "blue_pin = 4", "doors[0].feedback.blue_pin: unknown key"),
        (f"green_pin = {GREEN_PIN}", "green_pin = 99", "doors[0].feedback.green_pin: expected an"),
        (
            f"exit_button_pin = {EXIT_PIN}",
            'exit_button_pin = "5"',
            "doors[0].exit_button_pin: expected an integer, got '5'",
        ),
        (
            f"tamper_pin = {TAMPER_PIN}",
            f'tamper_pin = {TAMPER_PIN}\ndirection = "out"',
            'doors[0].direction: "out" with an exit_reader',
        ),
        (
            '[doors.exit_reader]\nkind = "fake"\npoll_interval_ms = 10\nrepeat_ms',
            '[doors.exit_reader]\nkind = "fake"\npoll_interval_ms = 10\nrepet_ms',
            "doors[0].exit_reader.repet_ms: unknown key",
        ),
    ],
)
def test_a_wrong_input_is_named(tmp_path: Path, old: str, new: str, message: str) -> None:
    text = wired_toml(tmp_path)
    assert old in text
    assert error(tmp_path, text.replace(old, new, 1)).startswith(message)


def test_two_readers_on_one_spi_chip_select_are_refused(tmp_path: Path) -> None:
    text = wired_toml(tmp_path).replace('kind = "fake"', 'kind = "mfrc522"')
    assert error(tmp_path, text).startswith(
        "doors[entree].exit_reader.spi_device: SPI bus 0 device 0 is already the reader of "
        "doors[entree].reader"
    )
    fixed = text.replace(
        '[doors.exit_reader]\nkind = "mfrc522"',
        '[doors.exit_reader]\nkind = "mfrc522"\nspi_device = 1',
    )
    cfg = load_text(tmp_path, fixed)
    assert cfg.doors[0].exit_reader.spi_device == 1  # type: ignore[attr-defined]


def test_the_examples_optional_inputs_load_once_uncommented(tmp_path: Path) -> None:
    example = Path(__file__).parents[2] / "firmware-config" / "unit.example.toml"
    lines = []
    for line in example.read_text().splitlines():
        body = line[2:]
        if line.startswith("# ") and ("=" in body.split("#")[0] or body.startswith("[doors.")):
            line = body
        lines.append(line)
    cfg = load_text(tmp_path, "\n".join(lines))
    (door,) = cfg.doors  # type: ignore[attr-defined]
    assert cfg.tamper_pin is not None and door.exit_button_pin is not None  # type: ignore[attr-defined]
    assert door.exit_reader is not None and door.feedback.pins
