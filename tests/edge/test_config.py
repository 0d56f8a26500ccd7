"""The unit's TOML file: a good one loads, a bad one fails with a message naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import ConfigError, load

GOOD = """\
schema = 1
device_id = "boitron-01"
centre = "boitron"
badge_key_file = "keys/badge.key"
data_dir = "data"
pin_factory = "mock"
server_public_keys = ["5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a"]

[mqtt]
host = "broker.example"
port = 8883
username = "boitron-01"
password_file = "keys/mqtt.pass"

[[doors]]
id = "entree"
relay_pin = 17
contact_pin = 27
unlock_seconds = 3
[doors.reader]
kind = "fake"
repeat_ms = 1500

[[rooms]]
id = "visio"
name = "Salle visio"
motion_pin = 22
hold_seconds = 120
"""

SECOND_DOOR = """
[[doors]]
id = "arriere"
relay_pin = 5
[doors.reader]
kind = "fake"
"""


def variant(old: str, new: str, base: str = GOOD) -> str:
    assert old in base, f"{old!r} is not in the base config"
    return base.replace(old, new, 1)


def write(tmp_path: Path, text: str, name: str = "unit.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def load_error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    return message


def test_a_good_file_loads_with_its_values_and_defaults(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, GOOD))

    assert cfg.device_id == "boitron-01"
    assert cfg.centre == "boitron"
    assert cfg.pin_factory == "mock"
    assert (cfg.mqtt.host, cfg.mqtt.port, cfg.mqtt.username) == (
        "broker.example",
        8883,
        "boitron-01",
    )
    [door] = cfg.doors
    assert (door.id, door.relay_pin, door.contact_pin) == ("entree", 17, 27)
    assert door.unlock_seconds == 3.0
    assert door.reader.kind == "fake"
    assert door.reader.repeat_ms == 1500
    # Unset keys take the documented defaults: fail-secure active-low relay, 60 s held-open.
    assert door.relay_active_high is False
    assert door.held_open_seconds == 60.0
    assert door.direction == "toggle"
    assert door.reader.poll_interval_ms == 50
    assert cfg.online_deadline_ms == 800
    assert cfg.server_public_keys == ("5a" * 32,)
    assert cfg.max_command_ttl_s == 30
    [room] = cfg.rooms
    assert (room.id, room.name, room.motion_pin, room.hold_seconds) == (
        "visio",
        "Salle visio",
        22,
        120.0,
    )


def test_relative_paths_resolve_against_the_config_files_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    etc = tmp_path / "etc" / "telecentre"
    etc.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # systemd starts the agent from /, not from the config's dir

    cfg = load(write(etc, variant('data_dir = "data"', 'data_dir = "/var/lib/telecentre"')))

    assert cfg.badge_key_file == etc / "keys" / "badge.key"
    assert cfg.mqtt.password_file == etc / "keys" / "mqtt.pass"
    assert cfg.data_dir == Path("/var/lib/telecentre")
    assert cfg.outbox_path == Path("/var/lib/telecentre/outbox.db")


def test_config_hash_follows_the_file_content(tmp_path: Path) -> None:
    first = load(write(tmp_path, GOOD, "a.toml")).config_hash
    same = load(write(tmp_path, GOOD, "b.toml")).config_hash
    changed = load(write(tmp_path, variant("unlock_seconds = 3", "unlock_seconds = 4"))).config_hash

    assert first and first == same
    assert changed != first


def test_missing_device_id_is_named(tmp_path: Path) -> None:
    message = load_error(tmp_path, variant('device_id = "boitron-01"\n', ""))

    assert "device_id: required key missing" in message


@pytest.mark.parametrize("bad", ["Boitron_01", "-boitron", "boitron 01", "x" * 64])
def test_a_device_id_that_cannot_be_a_topic_level_is_refused(tmp_path: Path, bad: str) -> None:
    message = load_error(tmp_path, variant('"boitron-01"', f'"{bad}"'))

    assert ": device_id: " in message
    assert bad in message


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("relay_pin = 17", 'relay_pin = "x"', "doors[0].relay_pin: expected an integer, got 'x'"),
        ("relay_pin = 17", "relay_pin = true", "doors[0].relay_pin: expected an integer"),
        ("relay_pin = 17", "relay_pin = 17.0", "doors[0].relay_pin: expected an integer"),
        (
            "unlock_seconds = 3",
            'unlock_seconds = "3"',
            "doors[0].unlock_seconds: expected a number",
        ),
        ("port = 8883", 'port = "8883"', "mqtt.port: expected an integer"),
        ('kind = "fake"', 'kind = "rc522"', "doors[0].reader.kind: expected one of"),
        (
            "repeat_ms = 1500",
            'repeat_ms = "1500"',
            "doors[0].reader.repeat_ms: expected an integer",
        ),
        ("hold_seconds = 120", "hold_seconds = [120]", "rooms[0].hold_seconds: expected a number"),
        ('centre = "boitron"', "centre = 3", "centre: expected a non-empty string"),
        ("[mqtt]", "mqtt = 1\n[mqtt_old]", "mqtt: expected a table"),
    ],
)
def test_a_value_of_the_wrong_type_is_named(
    tmp_path: Path, old: str, new: str, expected: str
) -> None:
    assert expected in load_error(tmp_path, variant(old, new))


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("relay_pin = 17", "relay_pin = 54", "doors[0].relay_pin"),
        ("relay_pin = 17", "relay_pin = -1", "doors[0].relay_pin"),
        ("contact_pin = 27", "contact_pin = 99", "doors[0].contact_pin"),
        ("motion_pin = 22", "motion_pin = 60", "rooms[0].motion_pin"),
        ("port = 8883", "port = 70000", "mqtt.port"),
        ("unlock_seconds = 3", "unlock_seconds = 0", "doors[0].unlock_seconds"),
    ],
)
def test_a_value_out_of_range_is_named_with_its_range(
    tmp_path: Path, old: str, new: str, key: str
) -> None:
    message = load_error(tmp_path, variant(old, new))

    assert f"{key}: expected " in message
    assert " from " in message  # the allowed range, e.g. "an integer from 0 to 53"


def test_out_of_range_pin_message_gives_the_bcm_range(tmp_path: Path) -> None:
    message = load_error(tmp_path, variant("relay_pin = 17", "relay_pin = 54"))

    assert "doors[0].relay_pin: expected an integer from 0 to 53, got 54" in message


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("unlock_seconds = 3", "unlock_second = 3", "doors[0].unlock_second"),
        ("repeat_ms = 1500", "repeat = 1500", "doors[0].reader.repeat"),
        ('host = "broker.example"', 'hots = "broker.example"', "mqtt.hots"),
        ("hold_seconds = 120", "hold_second = 120", "rooms[0].hold_second"),
        ('pin_factory = "mock"', 'pin_factroy = "mock"', "pin_factroy"),
    ],
)
def test_a_misspelt_key_is_refused_not_defaulted(
    tmp_path: Path, old: str, new: str, key: str
) -> None:
    message = load_error(tmp_path, variant(old, new))

    assert message.endswith(f": {key}: unknown key")


def test_a_door_listed_twice_is_refused(tmp_path: Path) -> None:
    message = load_error(tmp_path, GOOD + variant('id = "arriere"', 'id = "entree"', SECOND_DOOR))

    assert "doors[1].id: door 'entree' is listed twice" in message


def test_a_gpio_used_twice_names_both_users(tmp_path: Path) -> None:
    message = load_error(tmp_path, variant("contact_pin = 27", "contact_pin = 17"))

    assert "doors[entree].contact_pin: GPIO 17 is already used by doors[entree].relay_pin" in (
        message
    )


def test_a_room_sensor_on_another_doors_relay_names_both(tmp_path: Path) -> None:
    message = load_error(tmp_path, variant("motion_pin = 22", "motion_pin = 5") + SECOND_DOOR)

    assert "rooms[visio].motion_pin: GPIO 5 is already used by doors[arriere].relay_pin" in message


def test_a_relay_on_the_readers_reset_gpio_is_refused(tmp_path: Path) -> None:
    text = variant('kind = "fake"', 'kind = "mfrc522"\nreset_pin = 25')
    message = load_error(tmp_path, variant("relay_pin = 17", "relay_pin = 25", text))

    assert "GPIO 25" in message
    assert "reset_pin" in message


def test_a_room_listed_twice_is_refused(tmp_path: Path) -> None:
    other = '\n[[rooms]]\nid = "visio"\nname = "Bureau"\nmotion_pin = 23\n'

    message = load_error(tmp_path, GOOD + other)

    assert "rooms[1].id" in message


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    message = load_error(tmp_path, variant("relay_pin = 17", "relay_pin = = 17"))

    assert "not valid TOML" in message
    assert "unit.toml" in message


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.toml"

    with pytest.raises(ConfigError, match="nowhere.toml: cannot read"):
        load(path)


def test_an_unknown_schema_version_is_refused(tmp_path: Path) -> None:
    message = load_error(tmp_path, variant("schema = 1", "schema = 2"))

    assert "schema: version 2 is not supported (expected 1)" in message


def test_a_unit_without_doors_is_refused(tmp_path: Path) -> None:
    start = GOOD.index("[[doors]]")
    end = GOOD.index("[[rooms]]")

    message = load_error(tmp_path, GOOD[:start] + GOOD[end:])

    assert "doors: at least one [[doors]] table is required" in message


def test_doors_written_as_a_single_table_is_refused(tmp_path: Path) -> None:
    message = load_error(tmp_path, variant("[[doors]]", "[doors]"))

    assert "doors: expected an array of tables ([[doors]])" in message


KEY_LINE = f'server_public_keys = ["{"5a" * 32}"]'


def test_server_public_keys_are_required(tmp_path: Path) -> None:
    message = load_error(tmp_path, variant(KEY_LINE + "\n", ""))
    assert message.endswith("server_public_keys: required key missing")


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ('"' + "5a" * 32 + '"', "server_public_keys: expected a list of 1 to 2 strings"),
        ("[]", "server_public_keys: expected a list of 1 to 2 strings"),
        ("[" + ", ".join([f'"{c * 64}"' for c in "abc"]) + "]", "server_public_keys: expected"),
        ('["' + "5a" * 31 + '"]', "server_public_keys[0]: expected 64 hexadecimal characters"),
        ('["' + "5a" * 32 + '", "' + "zz" * 32 + '"]', "server_public_keys[1]: expected 64 hex"),
        ('["' + "5a" * 32 + '", "' + "5A" * 32 + '"]', "server_public_keys: the same key"),
    ],
)
def test_a_bad_server_public_key_is_named(tmp_path: Path, value: str, named: str) -> None:
    message = load_error(tmp_path, variant(KEY_LINE, f"server_public_keys = {value}"))
    assert named in message, message


def test_two_server_keys_are_accepted_during_a_rotation(tmp_path: Path) -> None:
    two = f'server_public_keys = ["{"5a" * 32}", "{"AB" * 32}"]'
    cfg = load(write(tmp_path, variant(KEY_LINE, two)))
    assert cfg.server_public_keys == ("5a" * 32, "ab" * 32)


def test_keys_given_on_the_command_line_replace_the_files(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, variant(KEY_LINE + "\n", "")), server_public_keys=["cd" * 32])
    assert cfg.server_public_keys == ("cd" * 32,)


@pytest.mark.parametrize("ttl", [0, 301, 2.5, "30"])
def test_max_command_ttl_is_bounded(tmp_path: Path, ttl: object) -> None:
    text = variant(KEY_LINE, f"{KEY_LINE}\nmax_command_ttl_s = {ttl!r}".replace("'", '"'))
    message = load_error(tmp_path, text)
    assert "max_command_ttl_s: expected" in message


def test_max_command_ttl_is_read(tmp_path: Path) -> None:
    cfg = load(write(tmp_path, variant(KEY_LINE, f"{KEY_LINE}\nmax_command_ttl_s = 120")))
    assert cfg.max_command_ttl_s == 120
