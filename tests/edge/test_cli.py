"""``telecentre-edge run`` and its config errors as a technician meets them (the self-test:
tests/integration/test_selftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.cli import main
from protocol.signing import Signer
from server.broker import free_port
from tests.edge.support import unit_toml

SERVER_KEY = Signer.generate().public_hex


def write_unit(tmp_path: Path, *, port: int, key_file: Path, keys: tuple[str, ...] = ()) -> Path:
    path = tmp_path / "unit.toml"
    path.write_text(
        unit_toml(
            port=port,
            key_file=key_file,
            data_dir=tmp_path / "data",
            server_keys=keys or (SERVER_KEY,),
        )
    )
    return path


def output_lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().out.splitlines()


def test_run_with_a_misspelt_key_exits_2_naming_the_key(
    tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_unit(tmp_path, port=free_port(), key_file=key_file)
    config.write_text(config.read_text().replace("unlock_seconds = 0.5", "unlock_second = 0.5"))

    code = main(["run", "--config", str(config)])
    captured = capsys.readouterr()

    assert code == 2
    assert "configuration error" in captured.err
    assert f"{config}: doors[0].unlock_second: unknown key" in captured.err
    assert captured.out == ""


def test_run_with_a_missing_config_file_exits_2_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "unit.toml"

    code = main(["run", "--config", str(missing)])

    assert code == 2
    assert f"{missing}: cannot read" in capsys.readouterr().err


def test_a_missing_mqtt_password_file_is_named_at_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = tmp_path / "badge.key"
    key.write_text("ab" * 32)
    conf = tmp_path / "unit.toml"
    conf.write_text(f"""
device_id = "boitron-01"
centre = "boitron"
badge_key_file = "{key}"
data_dir = "{tmp_path / "data"}"
pin_factory = "mock"
server_public_keys = ["{SERVER_KEY}"]
[mqtt]
username = "boitron-01"
password_file = "{tmp_path / "nope"}"
[[doors]]
id = "entree"
relay_pin = 17
[doors.reader]
kind = "fake"
""")
    assert main(["run", "--config", str(conf)]) == 2
    assert "mqtt.password_file: cannot read" in capsys.readouterr().err


def test_simulate_takes_the_server_key_from_the_command_line(
    tmp_path: Path, key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_unit(tmp_path, port=free_port(), key_file=key_file)
    text = "\n".join(
        line for line in config.read_text().splitlines() if "server_public_keys" not in line
    )
    config.write_text(text)
    members = tmp_path / "members.json"
    members.write_text("[]")

    assert main(["selftest", "--config", str(config)]) == 2
    assert "server_public_keys: required key missing" in capsys.readouterr().err
    bad = ["simulate", "-c", str(config), "--members", str(members), "--server-key", "nope"]
    assert main(bad) == 2
    assert "server_public_keys[0]: expected 64 hexadecimal" in capsys.readouterr().err
